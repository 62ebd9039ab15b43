"""Export then import gives back the same definition, for every process of the library."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from engine.definition.graph import compile_graph
from engine.definition.library import ProcessLibrary
from engine.definition.loader import load_text
from engine.definition.model import ProcessDefinition
from interop.bpmn_check import check_bpmn
from interop.bpmn_export import export_bpmn
from interop.bpmn_import import import_bpmn
from interop.bpmn_names import BPMN, SYSTEM_LANE_ELEMENT, q

LIBRARY = ProcessLibrary.from_dir()


@pytest.mark.parametrize("process", LIBRARY.process_ids())
def test_export_then_import_gives_the_same_definition(process: str) -> None:
    original = LIBRARY.get(process).definition
    result = import_bpmn(export_bpmn(LIBRARY.get(process)), f"{process}.bpmn")
    assert result.findings == []
    assert ProcessDefinition.model_validate(result.raw) == original


def test_the_round_trip_keeps_ladders_clocks_and_slas_of_complaint_handling() -> None:
    original = LIBRARY.get("complaint_handling").definition
    back = ProcessDefinition.model_validate(import_bpmn(export_bpmn(LIBRARY.get("complaint_handling"))).raw)
    assert back.ladders == original.ladders and back.ladders
    assert back.clocks == original.clocks and back.clocks
    assert back.node("handle") == original.node("handle")
    assert [e.kind for e in back.edges].count("escalation") == 1


FIXTURE_LIBRARY = ProcessLibrary.from_dir(Path(__file__).parent / "fixtures" / "valid")


@pytest.mark.parametrize("process", FIXTURE_LIBRARY.process_ids())
def test_the_fixture_that_uses_every_construct_round_trips_too(process: str) -> None:
    original = FIXTURE_LIBRARY.get(process).definition
    result = import_bpmn(export_bpmn(FIXTURE_LIBRARY.get(process)), f"{process}.bpmn")
    assert result.findings == []
    assert ProcessDefinition.model_validate(result.raw) == original


def test_a_process_without_lanes_is_drawn_in_a_system_lane_and_comes_back_without_one() -> None:
    graph = compile_graph(load_text(
        "id: nightly_sync\nversion: 1\nname: {zh: 夜间同步, en: Nightly sync}\nlanes: []\nnodes:\n"
        "  - {id: start, kind: start}\n  - {id: sync, kind: auto, handler: crm.lookup}\n  - {id: end, kind: end}\n"
        "edges:\n  - {from: start, to: sync}\n  - {from: sync, to: end}\n", "nightly_sync.yaml"))
    exported = export_bpmn(graph)
    lanes = [lane.get("id") for lane in etree.fromstring(exported).iter(q(BPMN, "lane"))]
    assert lanes == [SYSTEM_LANE_ELEMENT] and check_bpmn(exported) == []
    result = import_bpmn(exported, "nightly_sync.bpmn")
    assert result.findings == [] and ProcessDefinition.model_validate(result.raw) == graph.definition

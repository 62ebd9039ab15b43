"""Export then import gives back the same definition, for every process of the library."""

from __future__ import annotations

import pytest

from engine.definition.library import ProcessLibrary
from engine.definition.model import ProcessDefinition
from interop.bpmn_export import export_bpmn
from interop.bpmn_import import import_bpmn

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

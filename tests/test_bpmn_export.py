"""BPMN 2.0 export: valid against the OMG schema, readable by another engine, a diagram for everything."""

from __future__ import annotations

import pytest
from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser, BpmnValidator

from engine.definition.library import ProcessLibrary
from interop.bpmn_check import check_bpmn
from interop.bpmn_export import export_bpmn
from interop.bpmn_names import BPMN, CEL_LANGUAGE, q
from tests.bpmn_fixtures import FIXTURES

LIBRARY = ProcessLibrary.from_dir()
PROCESSES = LIBRARY.process_ids()


@pytest.fixture(scope="module")
def exported() -> dict[str, bytes]:
    return {process: export_bpmn(LIBRARY.get(process)) for process in PROCESSES}


def test_the_library_has_eight_processes_to_export() -> None:
    assert len(PROCESSES) == 8


@pytest.mark.parametrize("process", PROCESSES)
def test_export_is_valid_against_the_omg_bpmn_20_schema(process: str, exported: dict[str, bytes]) -> None:
    validator = BpmnValidator()  # the OMG BPMN20/BPMNDI/DC/DI XSDs shipped with SpiffWorkflow
    ok = validator.validator.validate(etree.fromstring(exported[process]))
    assert ok, [str(e) for e in validator.validator.error_log][:5]


@pytest.mark.parametrize("process", PROCESSES)
def test_every_flow_node_lane_and_flow_has_its_diagram_element(process: str, exported: dict[str, bytes]) -> None:
    assert check_bpmn(exported[process]) == []


@pytest.mark.parametrize("process", PROCESSES)
def test_another_bpmn_engine_parses_the_export(process: str, exported: dict[str, bytes]) -> None:
    parser = BpmnParser()
    parser.add_bpmn_xml(etree.ElementTree(etree.fromstring(exported[process])), filename=f"{process}.bpmn")
    spec = parser.get_spec(process)
    node_ids = {node.id for node in LIBRARY.get(process).definition.nodes}
    assert node_ids <= set(spec.task_specs)


def test_conditions_are_kept_in_cel_with_the_language_set(exported: dict[str, bytes]) -> None:
    root = etree.fromstring(exported["complaint_handling"])
    conditions = {f.get("id"): c for f in root.iter(q(BPMN, "sequenceFlow"))
                  if (c := f.find(q(BPMN, "conditionExpression"))) is not None}
    definition = LIBRARY.get("complaint_handling").definition
    expected = [e.when for e in definition.edges if e.when]
    assert sorted(c.text or "" for c in conditions.values()) == sorted(expected)
    assert {c.get("language") for c in conditions.values()} == {CEL_LANGUAGE}


def test_an_escalation_edge_becomes_an_interrupting_escalation_boundary_event(exported: dict[str, bytes]) -> None:
    root = etree.fromstring(exported["complaint_handling"])
    events = list(root.iter(q(BPMN, "boundaryEvent")))
    assert [(e.get("attachedToRef"), e.get("cancelActivity")) for e in events] == [("handle", "true")]
    assert events[0].find(q(BPMN, "escalationEventDefinition")) is not None


def test_lanes_hold_the_human_steps_of_their_role(exported: dict[str, bytes]) -> None:
    root = etree.fromstring(exported["complaint_handling"])
    lane = next(x for x in root.iter(q(BPMN, "lane")) if x.get("id") == "Lane_front_desk")
    assert "register" in [ref.text for ref in lane.iter(q(BPMN, "flowNodeRef"))]
    assert (lane.get("name"), lane.get("{https://svcflow.dev/schema/bpmn/1}nameEn")) == ("前台受理", "Front desk")


def test_the_structure_check_finds_flows_without_a_diagram_edge() -> None:
    problems = check_bpmn(FIXTURES["camunda_unsupported"].read_bytes())
    assert "sequenceFlow 'F2' has no diagram edge" in " ".join(problems)


@pytest.mark.parametrize("process", PROCESSES)
def test_every_step_is_drawn_inside_its_lane_and_every_lane_inside_the_pool(process: str) -> None:
    from interop.bpmn_layout import drawn_lanes, layout

    graph = LIBRARY.get(process)
    places = layout(graph)
    for node_id, lane_id in drawn_lanes(graph).items():
        lane, (x, y) = places.lanes[lane_id], places.nodes[node_id].centre
        assert lane.x <= x <= lane.x + lane.width and lane.y <= y <= lane.y + lane.height, node_id
    assert all(0 <= lane.y and lane.y + lane.height <= places.pool.height for lane in places.lanes.values())


@pytest.mark.parametrize("process", PROCESSES)
def test_every_flow_is_drawn_from_its_source_shape_to_its_target_shape(process: str, exported: dict[str, bytes]) -> None:
    from interop.bpmn_names import BPMNDI, DC, DI

    root = etree.fromstring(exported[process])
    bounds = {shape.get("bpmnElement"): [float(shape.find(q(DC, "Bounds")).get(k, "")) for k in ("x", "y", "width", "height")]
              for shape in root.iter(q(BPMNDI, "BPMNShape"))}
    flows = {flow.get("id"): flow for flow in root.iter(q(BPMN, "sequenceFlow"))}

    def on(element_id: str, point: tuple[float, float], slack: float = 3.0) -> bool:
        x, y, width, height = bounds[element_id]
        return x - slack <= point[0] <= x + width + slack and y - slack <= point[1] <= y + height + slack

    off = []
    for edge in root.iter(q(BPMNDI, "BPMNEdge")):
        flow = flows[edge.get("bpmnElement")]
        points = [(float(p.get("x", "")), float(p.get("y", ""))) for p in edge.iter(q(DI, "waypoint"))]
        if not (on(flow.get("sourceRef", ""), points[0]) and on(flow.get("targetRef", ""), points[-1])):
            off.append(flow.get("id"))
    assert len(flows) > 5 and off == []

"""Importing modeler files: translated where svcflow can run it, refused element by element where not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from engine.definition.validation import validate_paths
from engine.errors import DefinitionError
from engine.run.handlers import default_registry
from interop.bpmn_import import ImportResult, import_file
from interop.feel import FeelError, to_cel
from tests.bpmn_fixtures import FIXTURES


def _written(result: ImportResult, tmp_path: Path) -> Path:
    target = tmp_path / f"{result.raw['id']}.yaml"
    target.write_text(result.yaml(), encoding="utf-8")
    return target


def _node(result: ImportResult, node_id: str) -> dict:
    return next(n for n in result.raw["nodes"] if n["id"] == node_id)


def test_a_camunda_intake_file_imports_to_a_valid_definition(tmp_path: Path) -> None:
    result = import_file(FIXTURES["camunda_complaint_intake"])
    assert result.refused == []
    assert validate_paths([_written(result, tmp_path)], default_registry()) == []


def test_lanes_become_roles_and_delegate_expressions_handlers() -> None:
    result = import_file(FIXTURES["camunda_complaint_intake"])
    assert [lane["id"] for lane in result.raw["lanes"]] == ["front_desk", "team_supervisor"]
    assert _node(result, "activity_register")["lane"] == "front_desk"
    assert _node(result, "activity_detect_major")["handler"] == "complaints.detect_major"


def test_an_interrupting_boundary_timer_becomes_an_sla_that_routes_along_an_escalation_edge() -> None:
    result = import_file(FIXTURES["camunda_complaint_intake"])
    sla = _node(result, "activity_handle")["sla"]
    assert sla["target"] == "4h"
    assert sla["escalation"] == [{"at": 100, "notify": ["team_supervisor"], "route": "activity_handle_timeout"}]
    edge = next(e for e in result.raw["edges"] if e.get("kind") == "escalation")
    assert (edge["id"], edge["from"], edge["to"]) == ("activity_handle_timeout", "activity_handle",
                                                      "activity_supervisor_review")


def test_juel_conditions_are_translated_to_cel() -> None:
    result = import_file(FIXTURES["camunda_complaint_intake"])
    conditions = [e["when"] for e in result.raw["edges"] if "when" in e]
    assert conditions == ["data.is_major == true || data.claimed_amount >= 10000"]


def test_a_non_interrupting_timer_cycle_becomes_reminders_and_its_path_is_reported() -> None:
    result = import_file(FIXTURES["camunda_reminders"])
    assert _node(result, "visit")["sla"] == {"target": "1h", "escalation": [
        {"at": 100, "notify": ["return_visit_agent"]}, {"at": 200, "notify": ["return_visit_agent"]},
        {"at": 300, "notify": ["return_visit_agent"]}]}
    assert [(p.code, p.line) for p in result.refused] == [("bpmn.refused.flow", 49)]


def test_feel_conditions_and_message_and_timer_events_are_carried_over() -> None:
    result = import_file(FIXTURES["camunda_reminders"])
    assert [e["when"] for e in result.raw["edges"] if "when" in e] == [
        "data.score >= 4 && !(data.complaint_reopened)"]
    assert _node(result, "reply")["message"] == "customer_reply"
    assert _node(result, "wait_1")["duration"] == "1d"


def test_elements_svcflow_cannot_run_are_refused_one_by_one_with_their_lines() -> None:
    result = import_file(FIXTURES["camunda_unsupported"])
    refused = {(p.message.split("'")[1], p.line) for p in result.refused}
    assert refused == {("Classify", 19), ("Warranty", 26), ("Quote", 38), ("WaitRecall", 41), ("Cancelled", 35),
                       ("F_warranty", 48), ("F4", 53), ("F5", 54), ("F_w_end", 55)}
    assert all(p.file and p.file.endswith("camunda_unsupported.bpmn") and p.hint for p in result.refused)


def test_the_report_says_why_a_partly_imported_definition_is_invalid(tmp_path: Path) -> None:
    result = import_file(FIXTURES["camunda_unsupported"])
    problems = validate_paths([_written(result, tmp_path)], default_registry())
    assert any(p.node == "quote" and "no handler named 'quote'" in p.message for p in problems)


def test_a_file_that_is_not_xml_is_refused_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bpmn"
    broken.write_text('<?xml version="1.0"?>\n<bpmn:definitions xmlns:bpmn="x">\n<oops>\n', encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        import_file(broken)
    assert caught.value.problems[0].line is not None and "not well-formed" in caught.value.problems[0].message


def test_conditions_with_function_calls_are_refused_with_the_column() -> None:
    with pytest.raises(FeelError, match="column 3"):
        to_cel("${execution.getVariable('x')}")


def test_an_embedded_sub_process_is_flattened_into_a_valid_process(tmp_path: Path) -> None:
    result = import_file(FIXTURES["camunda_embedded_subprocess"])
    assert result.refused == []
    assert [(p.code, p.line) for p in result.findings] == [("bpmn.note.subprocess_flattened", 13)]
    edges = {(e["from"], e["to"]) for e in result.raw["edges"]}
    assert {("start", "diagnose"), ("fix", "report"), ("fixable", "report")} <= edges
    assert _node(result, "fix")["lane"] == "repair_crew"
    assert validate_paths([_written(result, tmp_path)], default_registry()) == []


def _variants(source: bytes) -> Iterator[bytes]:
    """The document with each element dropped, and with each attribute in turn set to garbage."""
    count = sum(1 for e in etree.fromstring(source).iter() if isinstance(e.tag, str))
    for index in range(1, count):
        root = etree.fromstring(source)
        element = [e for e in root.iter() if isinstance(e.tag, str)][index]
        keys = list(element.attrib)
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)
        yield etree.tostring(root)
        for key in keys:
            root = etree.fromstring(source)
            element = [e for e in root.iter() if isinstance(e.tag, str)][index]
            element.set(key, "x y-1")
            yield etree.tostring(root)


@pytest.mark.parametrize("source", ["camunda_complaint_intake", "camunda_reminders", "export:major_complaint"])
def test_a_damaged_file_gives_findings_or_a_located_error_never_a_traceback(source: str) -> None:
    from engine.definition.library import ProcessLibrary
    from interop.bpmn_export import export_bpmn
    from interop.bpmn_import import import_bpmn

    if source.startswith("export:"):
        data = export_bpmn(ProcessLibrary.from_dir().get(source.split(":")[1]))
    else:
        data = FIXTURES[source].read_bytes()
    tried = 0
    for variant in _variants(data):
        tried += 1
        try:
            import_bpmn(variant, "damaged.bpmn")
        except DefinitionError as exc:
            assert all(p.file == "damaged.bpmn" and p.line for p in exc.problems)
    assert tried > 100


_FLOW_NODE_TAGS = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
                   "task", "userTask", "manualTask", "serviceTask", "sendTask", "receiveTask", "scriptTask",
                   "businessRuleTask", "callActivity", "subProcess", "transaction", "adHocSubProcess",
                   "exclusiveGateway", "inclusiveGateway", "parallelGateway", "eventBasedGateway", "complexGateway"}


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_every_flow_node_and_flow_of_a_modeler_file_is_carried_over_or_reported_at_its_line(fixture: str) -> None:
    """Nothing is dropped silently: a flow node becomes a step (a boundary timer: an SLA on its host),
    a sequence flow an edge between the steps of its ends, or either is reported with its own line;
    what sits inside a sub-process that is reported (refused, or noted as flattened) is covered by it."""
    from interop.bpmn_import import IDENT
    from interop.bpmn_names import BPMN, snake

    result = import_file(FIXTURES[fixture])
    root = etree.parse(str(FIXTURES[fixture])).getroot()
    nodes = {n["id"]: n for n in result.raw["nodes"]}
    edges = {(e["from"], e["to"]) for e in result.raw["edges"]}

    def ident(bpmn_id: str) -> str:
        return bpmn_id if IDENT.match(bpmn_id) else snake(bpmn_id)

    def reported(element: etree._Element) -> bool:
        return any(f"'{element.get('id')}'" in p.message and p.line == element.sourceline for p in result.findings)

    def covered(element: etree._Element) -> bool:
        """Reported itself, or inside a reported sub-process."""
        return reported(element) or any(etree.QName(up).localname == "subProcess" and reported(up)
                                        for up in element.iterancestors())

    by_id = {e.get("id"): e for e in root.iter() if isinstance(e.tag, str) and e.get("id")}
    silent = []
    checked = 0
    for process in root.iter(f"{{{BPMN}}}process"):
        for element in process.iter():
            tag = etree.QName(element).localname if isinstance(element.tag, str) else ""
            if tag in _FLOW_NODE_TAGS:
                if tag == "boundaryEvent":
                    host = nodes.get(ident(element.get("attachedToRef", "")))
                    carried = host is not None and "sla" in host
                else:
                    carried = ident(element.get("id", "")) in nodes
            elif tag == "sequenceFlow":
                source, target = by_id[element.get("sourceRef")], by_id[element.get("targetRef")]
                ends = [ident(source.get("attachedToRef", "")) if etree.QName(source).localname == "boundaryEvent"
                        else ident(source.get("id", "")), ident(target.get("id", ""))]
                carried = tuple(ends) in edges or covered(source) or covered(target)
            else:
                continue
            checked += 1
            if not carried and not covered(element):
                silent.append(f"{tag} '{element.get('id')}' (line {element.sourceline})")
    assert checked > 5 and silent == []

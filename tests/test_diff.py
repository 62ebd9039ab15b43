"""The designer's diff: one chart of an edit, and a layout that an edit does not reshuffle."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.definition.graph import ProcessGraph
from engine.definition.library import ProcessLibrary
from engine.definition.loader import load_text
from visualize.diff import ADDED_FILL, CHANGED_FILL, REMOVED_FILL, diff_chart, diff_definitions
from visualize.flowchart import flowchart_dot
from visualize.layout import assign_lanes

LIBRARY = Path(__file__).resolve().parent.parent / "process_defs"
COMPLAINT = (LIBRARY / "complaint_handling.yaml").read_text(encoding="utf-8")

NEW_STEP = """  - id: notify_customer
    kind: human
    name: {zh: 通知客户, en: Notify the customer}
    lane: complaint_handler

"""


def with_step_added(text: str) -> str:
    """A step between close and record_analysis."""
    edited = text.replace("  - {from: close, to: record_analysis}",
                          "  - {from: close, to: notify_customer}\n  - {from: notify_customer, to: record_analysis}")
    edited = edited.replace("  - id: record_analysis\n", NEW_STEP + "  - id: record_analysis\n", 1)
    assert edited != text
    return edited


def with_sla_changed(text: str) -> str:
    edited = text.replace("sla: {target: 4h, escalation: complaint_ladder}", "sla: {target: 6h, escalation: complaint_ladder}")
    assert edited != text
    return edited


def with_step_renamed(text: str) -> str:
    edited = text.replace('name: {zh: "答复客户", en: "Reply to the customer"}',
                          'name: {zh: "书面答复客户并说明依据", en: "Reply to the customer in writing, with reasons"}')
    assert edited != text
    return edited


def with_step_removed(text: str) -> str:
    """inform_status (the front desk telling the customer about a hand-off) and its two edges."""
    edited = text.replace("""  - from: handoff_split
    to: inform_status
    when: data.handoff_technical || data.handoff_billing || data.handoff_logistics || data.handoff_quality
    label: {zh: "转交后告知客户", en: "tell the customer"}
""", "").replace("  - {from: inform_status, to: handoff_join}\n", "")
    start, end = edited.index("  - id: inform_status"), edited.index("  - id: dept_technical")
    edited = edited[:start] + edited[end:]
    assert edited != text
    return edited


def graph_of(text: str) -> ProcessGraph:
    return ProcessLibrary().graph_of(load_text(text))


def lane_orders(graph: ProcessGraph) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Every node's lane, and each lane's nodes left to right as drawn."""
    dot = flowchart_dot(graph)
    lanes = assign_lanes(graph)
    where: dict[str, tuple[float, float]] = {}
    for line in dot.splitlines():
        found = re.match(r'\s*"([a-z_0-9]+)" \[.*pos="([\d.]+),([\d.]+)!"', line)
        if found:
            where[found.group(1)] = (float(found.group(2)), -float(found.group(3)))
    order: dict[str, list[str]] = {}
    for node_id in sorted(lanes, key=lambda n: where[n]):
        order.setdefault(lanes[node_id], []).append(node_id)
    return lanes, order


@pytest.fixture(scope="module")
def before() -> tuple[dict[str, str], dict[str, list[str]]]:
    return lane_orders(graph_of(COMPLAINT))


@pytest.mark.parametrize("edit", [with_step_added, with_sla_changed, with_step_renamed],
                         ids=["step added", "SLA changed", "step renamed"])
def test_a_one_step_edit_keeps_every_other_nodes_lane_and_order(
        edit, before: tuple[dict[str, str], dict[str, list[str]]]) -> None:  # type: ignore[no-untyped-def]
    old_lanes, old_order = before
    new_lanes, new_order = lane_orders(graph_of(edit(COMPLAINT)))
    shared = set(old_lanes) & set(new_lanes)
    assert {n: new_lanes[n] for n in shared} == {n: old_lanes[n] for n in shared}
    for lane, nodes in old_order.items():
        assert [n for n in new_order.get(lane, []) if n in shared] == [n for n in nodes if n in shared], lane


def test_diff_lists_the_added_step_and_its_edges_and_the_removed_edge() -> None:
    diff = diff_definitions(graph_of(COMPLAINT).definition, graph_of(with_step_added(COMPLAINT)).definition)
    assert diff.added_nodes == ["notify_customer"]
    assert diff.removed_nodes == [] and diff.changed_nodes == {}
    assert diff.added_edges == ["close->notify_customer", "notify_customer->record_analysis"]
    assert diff.removed_edges == ["close->record_analysis"]


def test_diff_says_how_an_sla_changed_in_targets() -> None:
    diff = diff_definitions(graph_of(COMPLAINT).definition, graph_of(with_sla_changed(COMPLAINT)).definition)
    assert diff.changed_nodes == {"reply_customer": ["SLA 4h → SLA 6h"]}
    assert not diff.added_nodes and not diff.removed_nodes and not diff.added_edges


def test_diff_of_a_case_clock_is_listed_under_the_title() -> None:
    edited = COMPLAINT.replace("      - {target: 5d}\n    escalation: complaint_ladder", "      - {target: 4d}\n    escalation: complaint_ladder")
    assert edited != COMPLAINT
    graph, overlay, diff = diff_chart(graph_of(COMPLAINT), graph_of(edited))
    assert len(diff.changed_clocks) == 1 and "others 5d" in diff.changed_clocks[0]
    assert "others 4d" in diff.changed_clocks[0]
    assert any("others 4d" in line for line in overlay.subtitle)


def test_the_diff_chart_keeps_a_removed_step_in_place_painted_red_and_paints_added_green() -> None:
    old = graph_of(COMPLAINT)
    new = graph_of(with_step_added(with_step_removed(COMPLAINT)))
    graph, overlay, diff = diff_chart(old, new)
    assert diff.removed_nodes == ["inform_status"] and diff.added_nodes == ["notify_customer"]
    dot = flowchart_dot(graph, overlay)
    removed = next(line for line in dot.splitlines() if line.strip().startswith('"inform_status" ['))
    added = next(line for line in dot.splitlines() if line.strip().startswith('"notify_customer" ['))
    assert REMOVED_FILL in removed and "删除 removed" in removed
    assert ADDED_FILL in added
    assert assign_lanes(graph)["inform_status"] == "front_desk"  # where it was
    removed_edge = next(line for line in dot.splitlines() if line.strip().startswith('"handoff_split" -> "inform_status"'))
    assert 'style="dashed"' in removed_edge


def test_an_unchanged_definition_has_an_empty_diff() -> None:
    graph = graph_of(COMPLAINT)
    assert diff_definitions(graph.definition, graph.definition).empty


def test_cli_diff_draws_one_chart_of_the_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from svcflow.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.yaml").write_text(COMPLAINT, encoding="utf-8")
    (tmp_path / "new.yaml").write_text(with_sla_changed(COMPLAINT), encoding="utf-8")
    result = CliRunner().invoke(app, ["diff", "old.yaml", "new.yaml", "--format", "dot"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "new-diff.dot"
    assert result.stdout.strip() == str(written)
    text = written.read_text(encoding="utf-8")
    assert CHANGED_FILL in text and "SLA 4h → SLA 6h" in text


def test_cli_diff_of_a_missing_file_is_a_message_not_a_traceback(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from svcflow.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.yaml").write_text(COMPLAINT, encoding="utf-8")
    result = CliRunner().invoke(app, ["diff", "old.yaml", "nowhere.yaml"])
    assert result.exit_code == 1
    assert "nowhere.yaml: no such file" in result.output and "Traceback" not in result.output

"""Flowcharts (visualize/): what a designer and an operator see of a process and of one case."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from engine.time.clock import FakeClock
from engine.definition.graph import ProcessGraph
from engine.definition.library import ProcessLibrary
from engine.definition.loader import load_text
from engine.run.runtime import Engine, LogNotifier
from visualize.flowchart import RenderError, flowchart_dot, render
from visualize.fonts import cjk_font, missing_glyphs
from visualize.overlay import CURRENT_FILL, OVERDUE_FILL, VISITED_FILL, VISITED_LINE, Overlay, case_overlay

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_9AM = datetime(2025, 9, 22, 9, 0, tzinfo=SHANGHAI)

EVERY_KIND = """
id: every_kind
version: 1
name: {zh: 全部节点, en: Every kind}
lanes:
  - {id: agent, name: {zh: 坐席, en: Agent}}
  - {id: manager, name: {zh: 经理, en: Manager}}
nodes:
  - {id: begin, kind: start, name: {zh: 开始, en: Begin}}
  - {id: triage, kind: auto, handler: tickets.triage, name: {zh: 分诊, en: Triage}}
  - {id: route, kind: exclusive, name: {zh: "是否紧急?", en: "Urgent?"}}
  - id: work
    kind: human
    lane: agent
    name: {zh: 处理工单, en: Work the ticket}
    sla: {target: 2h}
  - {id: fork, kind: parallel}
  - {id: wait_customer, kind: message, message: customer_reply, name: {zh: 等待客户, en: Wait for the customer}}
  - {id: pause, kind: timer, duration: 1d, name: {zh: 冷静期, en: Cooling-off}}
  - {id: join, kind: parallel}
  - {id: pick, kind: inclusive}
  - {id: child, kind: subprocess, process: other, lane: manager, name: {zh: 子流程, en: Child}}
  - {id: done, kind: end, outcome: closed, name: {zh: 结束, en: Done}}
edges:
  - {from: begin, to: triage}
  - {from: triage, to: route}
  - {from: route, to: child, when: data.urgent}
  - {from: route, to: work, default: true}
  - {from: work, to: fork}
  - {from: fork, to: wait_customer}
  - {from: fork, to: pause}
  - {from: wait_customer, to: join}
  - {from: pause, to: join}
  - {from: join, to: pick}
  - {from: pick, to: done, default: true}
  - {from: child, to: done}
"""

REGISTRATION: dict[str, Any] = {
    "channel": "hotline", "customer_id": "C-1001", "customer_name": "王磊", "tier": "silver",
    "category": "billing", "description": "本月话费多扣了 58 元",
}
NO_HANDOFF = {"handoff_technical": False, "handoff_billing": False, "handoff_logistics": False,
              "handoff_quality": False}


# -- helpers -------------------------------------------------------------------------------------
def inline_graph(text: str) -> ProcessGraph:
    """A drawing of a draft: flowcharts need the schema only, not a definition valid to run."""
    return ProcessLibrary().graph_of(load_text(text))


@pytest.fixture(scope="module")
def complaint() -> ProcessGraph:
    return ProcessLibrary.from_dir().get("complaint_handling")


@pytest.fixture(scope="module")
def complaint_dot(complaint: ProcessGraph) -> str:
    return flowchart_dot(complaint)


def node_line(dot: str, node_id: str) -> str:
    """The DOT statement that declares a node."""
    matches = [line for line in dot.splitlines() if line.strip().startswith(f'"{node_id}" [')]
    assert len(matches) == 1, f"node {node_id} declared {len(matches)} times"
    return matches[0]


def edge_line(dot: str, source: str, target: str) -> str:
    matches = [line for line in dot.splitlines() if line.strip().startswith(f'"{source}" -> "{target}" [')]
    assert len(matches) == 1, f"edge {source}->{target} found {len(matches)} times"
    return matches[0]


def attr(line: str, name: str) -> str | None:
    found = re.search(rf'[\[ ]{name}="((?:[^"\\]|\\.)*)"', line)
    return found.group(1) if found else None


def cluster_of(dot: str, node_id: str) -> str | None:
    """The cluster a node is declared in (None at top level)."""
    current: str | None = None
    for line in dot.splitlines():
        if line.startswith("  subgraph "):
            current = line.split('"')[1]
        elif line == "  }":
            current = None
        elif line.strip().startswith(f'"{node_id}" ['):
            return current
    raise AssertionError(f"node {node_id} not declared")


class Desk:
    """The complaint process on an in-memory engine whose clock only moves when told."""

    def __init__(self) -> None:
        self.clock = FakeClock(MONDAY_9AM)
        self.engine = Engine.in_memory(clock=self.clock, library=ProcessLibrary.from_dir(), notifier=LogNotifier())
        self.case_id = self.engine.start("complaint_handling", {"tier": "silver"}, actor="tester")

    def do(self, node: str, data: dict[str, Any] | None = None) -> None:
        [task] = [t for t in self.engine.open_tasks(self.case_id) if t["node"] == node]
        self.engine.complete(task["id"], actor=f"{task['role']}_user", role=task["role"], data=data or {})

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self.engine.sweep()

    def overlay(self) -> tuple[ProcessGraph, Overlay]:
        view = self.engine.case(self.case_id)
        graph = self.engine.graph_for(view.state)
        return graph, case_overlay(graph, view, self.clock.now())

    def register_and_handle_once(self) -> None:
        """Registered, owner assigned, first contact made, handled, replied, answer refused: back to handling."""
        self.do("register", REGISTRATION)
        self.advance(timedelta(minutes=30))
        self.do("assign_owner", {"owner": "li.na"})
        self.do("first_contact", {"contact_made": True, "acknowledgement": "已致歉"})
        self.advance(timedelta(hours=1))
        self.do("handle", {"handling_notes": "核查计费记录", **NO_HANDOFF})
        self.do("reply_customer", {"reply_summary": "退还多扣费用", "resolution_type": "refund"})
        self.engine.send_message(self.case_id, "customer_reply", {"accepted": False}, actor="customer")


# -- the chart of a definition --------------------------------------------------------------------
def test_the_same_definition_gives_byte_identical_dot_text() -> None:
    first = flowchart_dot(ProcessLibrary.from_dir().get("complaint_handling"))
    second = flowchart_dot(ProcessLibrary.from_dir().get("complaint_handling"))
    assert first == second
    assert not re.search(r"0x[0-9a-f]{6,}", first)  # nothing from memory addresses


@pytest.mark.parametrize(("node_id", "shape", "marker"), [
    ("begin", "circle", None),
    ("done", "circle", None),
    ("triage", "box", "⚙"),
    ("work", "box", None),
    ("route", "diamond", "×"),
    ("fork", "diamond", "+"),
    ("pick", "diamond", "○"),
    ("pause", "doublecircle", "◷"),
    ("wait_customer", "doublecircle", "✉"),
    ("child", "box", "⊞"),
])
def test_each_node_kind_gets_its_bpmn_shape_and_marker(node_id: str, shape: str, marker: str | None) -> None:
    line = node_line(flowchart_dot(inline_graph(EVERY_KIND)), node_id)
    assert attr(line, "shape") == shape
    if marker is not None:
        assert marker in line


def test_start_is_a_thin_circle_and_end_a_thick_one() -> None:
    dot = flowchart_dot(inline_graph(EVERY_KIND))
    assert float(attr(node_line(dot, "begin"), "penwidth") or 0) < 2
    assert float(attr(node_line(dot, "done"), "penwidth") or 0) >= 3


def test_a_subprocess_has_a_double_border_and_names_the_process_it_runs() -> None:
    line = node_line(flowchart_dot(inline_graph(EVERY_KIND)), "child")
    assert attr(line, "peripheries") == "2"
    assert "⊞ other" in line


def test_events_and_gateways_carry_their_bilingual_name_under_the_shape() -> None:
    dot = flowchart_dot(inline_graph(EVERY_KIND))
    shape, caption = node_line(dot, "route"), node_line(dot, "caption:route")
    assert "×" in shape and attr(shape, "fixedsize") == "true"  # edges meet the diamond itself
    assert "是否紧急?" in caption and "Urgent?" in caption
    shape_y = float((attr(shape, "pos") or "").split(",")[1].rstrip("!"))
    caption_y = float((attr(caption, "pos") or "").split(",")[1].rstrip("!"))
    assert caption_y < shape_y  # Graphviz's y grows upwards: the caption hangs under the shape


def test_lanes_are_named_in_chinese_and_english_beside_their_band(complaint_dot: str) -> None:
    header = node_line(complaint_dot, "lane:front_desk")
    assert "前台受理" in header and "Front desk" in header
    assert cluster_of(complaint_dot, "register") == "cluster_front_desk"
    assert cluster_of(complaint_dot, "dept_billing") == "cluster_billing_dept"


def test_steps_without_a_lane_are_drawn_in_the_lane_of_the_step_they_serve_with_no_system_lane() -> None:
    dot = flowchart_dot(inline_graph(EVERY_KIND))
    assert cluster_of(dot, "fork") == "cluster_agent"  # the gateway right after the agent's task
    assert cluster_of(dot, "triage") == "cluster_agent"  # the automatic triage serves the agent's work
    assert "系统" not in dot and "System" not in dot and "cluster_system" not in dot


def test_the_chart_is_drawn_in_the_installed_cjk_font_at_fixed_positions(complaint_dot: str) -> None:
    font = cjk_font()
    assert font.startswith("Noto Sans CJK") or font.startswith("Noto Serif CJK")
    assert 'layout="neato"' in complaint_dot.splitlines()[1]  # placed by us, edges routed by neato -n2
    for kind in ("graph", "node", "edge"):
        assert re.search(rf'^  {kind} \[.*fontname="{re.escape(font)}"', complaint_dot, re.M)
    assert attr(node_line(complaint_dot, "register"), "pos") is not None


def test_the_cjk_font_and_fallbacks_can_draw_every_marker_glyph() -> None:
    assert missing_glyphs("客户投诉处理前台受理", cjk_font()) == []
    assert missing_glyphs("×+○◷✉⊞⚠⚙→⇢↑·…") == []  # drawable by some installed font: no tofu


def label_text(line: str) -> str:
    """The words of a node's or edge's HTML label: markup dropped, wrapped lines joined by a space."""
    start = line.index("label=<") + len("label=")
    depth, end = 0, start
    for end in range(start, len(line)):
        depth += {"<": 1, ">": -1}.get(line[end], 0)
        if depth == 0:
            break
    html = re.sub(r"<BR[^>]*>", " ", line[start + 1:end])
    return " ".join(re.sub(r"<[^>]*>", "", html).split()).replace("/ ", "/")


def test_a_human_task_shows_its_sla_target_per_policy(complaint_dot: str) -> None:
    assert "SLA platinum/gold 1d · others 3d" in label_text(node_line(complaint_dot, "handle"))
    assert "SLA 1h" in label_text(node_line(complaint_dot, "register"))


def test_case_level_sla_clocks_are_listed_under_the_title_with_their_span_in_step_names(complaint_dot: str) -> None:
    title = label_text(node_line(complaint_dot, "chart:title"))
    assert "首次响应时限" in title and "platinum/gold 2h · others 8h" in title
    assert "(开始 start → 首次响应客户, 移交重大投诉处理)" in title  # from receipt to the first response or hand-over


def test_each_escalation_ladder_is_printed_once_in_the_legend_with_role_names(complaint_dot: str) -> None:
    legend = label_text(node_line(complaint_dot, "chart:legend"))
    assert legend.count("complaint_ladder:") == 1 and legend.count("handoff_ladder:") == 1
    for rung in ("50% → 投诉专责人", "100% 超时 breach → 班组主管", "150% → 部门经理 ⇢ 转派 reassign",
                 "200% → 客服总监"):
        assert rung in legend
    assert "改走 route → 移交重大投诉处理" in legend
    assert "complaint_handler" not in legend  # roles by name, not by id


def test_steps_reference_their_ladder_by_letter_instead_of_repeating_it(complaint_dot: str) -> None:
    legend = label_text(node_line(complaint_dot, "chart:legend"))
    letter = re.search(r"⚠([A-Z]) complaint_ladder:", legend)
    assert letter is not None
    assert f"⚠{letter.group(1)}" in label_text(node_line(complaint_dot, "reply_customer"))
    handling = re.search(r"⚠([A-Z]) handling_ladder:", legend)
    assert handling is not None and f"⚠{handling.group(1)}" in label_text(node_line(complaint_dot, "handle"))
    assert '"ladder:' not in complaint_dot  # no per-step ladder notes any more


def test_escalation_edges_are_dashed_red_with_their_label(complaint_dot: str) -> None:
    line = edge_line(complaint_dot, "handle", "hand_over_major")
    assert attr(line, "style") == "dashed"
    assert attr(line, "color") == "#dc2626"
    text = label_text(line)
    assert "超时升级为重大投诉" in text.replace(" ", "") and "overdue, escalate to major handling" in text


def test_short_conditions_stay_on_their_edge_with_the_default_marked(complaint_dot: str) -> None:
    assert "[accepted]" in label_text(edge_line(complaint_dot, "reply_accepted", "close"))
    default = label_text(edge_line(complaint_dot, "reply_accepted", "supervisor_intervene"))
    assert "默认 default" in default


def test_long_conditions_are_printed_whole_in_the_key_and_tagged_on_their_edge(complaint_dot: str) -> None:
    rework = label_text(edge_line(complaint_dot, "reply_accepted", "handle"))
    tag = re.search(r"\[(c\d+)\]", rework)
    assert tag is not None and "max_reply_rounds" not in rework
    key = label_text(node_line(complaint_dot, "chart:conditions"))
    assert f"[{tag.group(1)}] 不接受,重新处理: reply_rounds &lt; max_reply_rounds✎3" in key  # parameter marked
    reopen = re.search(r"\[(c\d+)\]", label_text(edge_line(complaint_dot, "satisfaction_check", "handle")))
    assert reopen is not None
    entry = key[key.index(f"[{reopen.group(1)}]"):]
    assert "…" not in entry and "reopen_count &lt;= max_reopens✎2" in entry  # wrapped, never cut


def test_exclusive_gateway_branches_are_numbered_in_the_order_they_are_tried(complaint_dot: str) -> None:
    assert label_text(edge_line(complaint_dot, "reply_accepted", "close")).startswith("① 接受")
    assert label_text(edge_line(complaint_dot, "reply_accepted", "handle")).startswith("② 不接受")
    assert label_text(edge_line(complaint_dot, "reply_accepted", "supervisor_intervene")).startswith("③ 多轮未果")


def test_rework_loops_run_back_without_bending_the_layout(complaint_dot: str) -> None:
    assert attr(edge_line(complaint_dot, "reply_accepted", "handle"), "constraint") == "false"
    assert attr(edge_line(complaint_dot, "satisfaction_check", "handle"), "constraint") == "false"
    assert attr(edge_line(complaint_dot, "handle", "handoff_split"), "constraint") is None
    assert attr(edge_line(complaint_dot, "close", "record_analysis"), "constraint") is None


# -- rendering ----------------------------------------------------------------------------------------
def test_svg_render_contains_the_chinese_text_in_the_cjk_font(complaint_dot: str) -> None:
    svg = render(complaint_dot, "svg").decode("utf-8")
    assert "客户投诉处理" in svg and "调查处理" in svg and "前台受理" in svg
    assert f'font-family="{cjk_font()}"' in svg


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_render_produces_the_asked_format(fmt: str, magic: bytes) -> None:
    assert render(flowchart_dot(inline_graph(EVERY_KIND)), fmt).startswith(magic)  # type: ignore[arg-type]


def test_render_to_dot_returns_the_text_itself() -> None:
    dot = flowchart_dot(inline_graph(EVERY_KIND))
    assert render(dot, "dot") == dot.encode("utf-8")


def test_render_without_graphviz_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dot = flowchart_dot(inline_graph(EVERY_KIND))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RenderError, match="install the Debian package graphviz"):
        render(dot, "svg")


# -- a case over its process ------------------------------------------------------------------------
def test_case_overlay_highlights_the_visited_steps_and_taken_edges() -> None:
    desk = Desk()
    desk.do("register", REGISTRATION)
    graph, overlay = desk.overlay()
    dot = flowchart_dot(graph, overlay)
    for node in ("start", "register", "detect_major", "major_check"):
        assert attr(node_line(dot, node), "fillcolor") == VISITED_FILL
    assert attr(edge_line(dot, "register", "detect_major"), "color") == VISITED_LINE
    assert attr(edge_line(dot, "major_check", "hand_over_major"), "color") != VISITED_LINE  # not taken
    assert attr(node_line(dot, "close"), "fillcolor") != VISITED_FILL


def test_case_overlay_marks_the_step_where_the_case_waits() -> None:
    desk = Desk()
    desk.do("register", REGISTRATION)
    graph, overlay = desk.overlay()
    line = node_line(flowchart_dot(graph, overlay), "assign_owner")
    assert attr(line, "fillcolor") == CURRENT_FILL
    assert "待办 open: team_supervisor" in line


def test_case_overlay_marks_an_open_task_past_its_due_time_red() -> None:
    desk = Desk()
    desk.do("register", REGISTRATION)
    desk.advance(timedelta(hours=3))  # assign_owner's SLA is 1 business hour
    graph, overlay = desk.overlay()
    line = node_line(flowchart_dot(graph, overlay), "assign_owner")
    assert attr(line, "fillcolor") == OVERDUE_FILL
    assert "逾期 overdue" in line


def test_case_overlay_counts_visits_on_a_rework_loop() -> None:
    desk = Desk()
    desk.register_and_handle_once()  # the customer refused the reply: back to handling
    graph, overlay = desk.overlay()
    dot = flowchart_dot(graph, overlay)
    assert "×2 次 visits" in node_line(dot, "handle")
    assert attr(node_line(dot, "handle"), "fillcolor") == CURRENT_FILL
    assert attr(edge_line(dot, "reply_accepted", "handle"), "color") == VISITED_LINE  # the way back was taken


def test_case_overlay_counts_how_often_an_edge_was_taken() -> None:
    desk = Desk()
    desk.register_and_handle_once()
    desk.do("handle", {"handling_notes": "再次核查", **NO_HANDOFF})
    graph, overlay = desk.overlay()
    assert overlay.edges["handle->handoff_split"].lines == ["×2"]
    assert "×2" in edge_line(flowchart_dot(graph, overlay), "handle", "handoff_split")


def test_case_overlay_shows_when_each_step_was_entered_and_completed_and_how_long_it_took() -> None:
    desk = Desk()
    desk.advance(timedelta(minutes=20))
    desk.do("register", REGISTRATION)
    graph, overlay = desk.overlay()
    assert overlay.nodes["register"].lines == ["09-22 09:00 → 09:20 · 20m"]  # Shanghai, the calendar's zone
    assert overlay.nodes["assign_owner"].lines[0] == "09-22 09:20 → … · 0s"


def test_case_overlay_greys_out_what_the_case_did_not_touch() -> None:
    desk = Desk()
    graph, overlay = desk.overlay()
    line = node_line(flowchart_dot(graph, overlay), "return_visit")
    assert attr(line, "fillcolor") == "#f3f4f6"
    assert overlay.title is not None and desk.case_id in overlay.title


def test_case_overlay_dot_is_deterministic() -> None:
    desk = Desk()
    desk.register_and_handle_once()
    graph, first = desk.overlay()
    _, second = desk.overlay()
    assert flowchart_dot(graph, first) == flowchart_dot(graph, second)


# -- the command line ------------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'svcflow.db'}")
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_cli_render_writes_the_chart_named_after_the_process(cli: CliRunner, tmp_path: Path) -> None:
    from svcflow.cli import app

    result = cli.invoke(app, ["render", "complaint_handling", "--format", "svg"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "complaint_handling.svg"
    assert result.stdout.strip() == str(written)
    assert "客户投诉处理" in written.read_text(encoding="utf-8")


def test_cli_render_of_a_case_needs_no_process_and_paints_the_case(cli: CliRunner, tmp_path: Path) -> None:
    from svcflow.cli import app

    started = cli.invoke(app, ["start", "complaint_handling", "--set", "tier=gold"])
    assert started.exit_code == 0, started.output
    case_id = started.stdout.strip()
    out = tmp_path / "charts" / "case.dot"
    result = cli.invoke(app, ["render", "--case", case_id, "--format", "dot", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert case_id in text and CURRENT_FILL in text


def test_cli_render_of_an_unknown_process_is_a_message_not_a_traceback(cli: CliRunner) -> None:
    from svcflow.cli import app

    result = cli.invoke(app, ["render", "no_such_process"])
    assert result.exit_code == 1
    assert "unknown process" in result.output and "Traceback" not in result.output

"""What is painted over a flowchart: a case's path, or a review's heatmap.

The flowchart draws the definition; an Overlay only says, per node and per edge, which colour,
width and extra label lines to use. Keeping it that plain lets a case view (this module), a
review report's heatmap and anything later share one drawing function.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from engine.definition.graph import ProcessGraph
from engine.run import log
from engine.run.log import LogEntry

if TYPE_CHECKING:  # the runtime pulls in the store; drawing a definition must not need it
    from engine.run.runtime import CaseView

# -- colours of the case overlay (also used by the legend) --------------------------------------
VISITED_FILL = "#dbeafe"
VISITED_LINE = "#1d4ed8"
CURRENT_FILL = "#fde047"
CURRENT_LINE = "#b45309"
OVERDUE_FILL = "#fca5a5"
OVERDUE_LINE = "#dc2626"
ESCALATED_LINE = "#dc2626"
INSTANT_KINDS = frozenset({"start", "end", "exclusive", "parallel", "inclusive"})


@dataclass
class NodeMark:
    """How one node is painted. None keeps the flowchart's own style."""

    fill: str | None = None
    color: str | None = None
    penwidth: float | None = None
    font_color: str | None = None
    lines: list[str] = field(default_factory=list)
    tooltip: str | None = None


@dataclass
class EdgeMark:
    """How one edge (by `Edge.key`) is painted; `lines` are added under its label."""

    color: str | None = None
    penwidth: float | None = None
    style: str | None = None
    lines: list[str] = field(default_factory=list)


@dataclass
class Overlay:
    """Marks over a flowchart.

    `dim_unmarked` greys out what has no mark, so a path or a hot spot stands out;
    `show_ladders` can hide the escalation-ladder notes when the overlay has enough to say;
    `legend` is (colour, text) pairs shown under the title.
    """

    title: str | None = None
    subtitle: list[str] = field(default_factory=list)
    nodes: dict[str, NodeMark] = field(default_factory=dict)
    edges: dict[str, EdgeMark] = field(default_factory=dict)
    legend: list[tuple[str, str]] = field(default_factory=list)
    dim_unmarked: bool = False
    show_ladders: bool = True

    def node(self, node_id: str) -> NodeMark:
        """The node's mark, created on first use."""
        return self.nodes.setdefault(node_id, NodeMark())

    def edge(self, key: str) -> EdgeMark:
        """The edge's mark, created on first use."""
        return self.edges.setdefault(key, EdgeMark())


# -- the case overlay ---------------------------------------------------------------------------
@dataclass
class _Visit:
    entered: datetime
    completed: datetime | None = None
    interrupted: bool = False


def _short(delta: timedelta) -> str:
    """1d 3h, 2h 05m, 12m, 40s: wall time, rounded down to what a reader needs."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def _stamp(instant: datetime, zone: tzinfo, ref: datetime | None = None) -> str:
    local = instant.astimezone(zone)
    if ref is not None and ref.astimezone(zone).date() == local.date():
        return local.strftime("%H:%M")
    return local.strftime("%m-%d %H:%M")


def _visits(events: list[LogEntry]) -> dict[str, list[_Visit]]:
    """Per node, its visits in order.

    A token enters a node and later completes it, so entries and completions pair by (token, node).
    A task withdrawn by an interrupting escalation or a cancellation never completes: its
    task_cancelled event closes the node's open visit instead.
    """
    visits: dict[str, list[_Visit]] = {}
    open_visit: dict[tuple[str, str], _Visit] = {}
    for event in events:
        if event.node is None:
            continue
        token = str(event.data.get("token", ""))
        if event.type == "node_entered":
            visit = _Visit(event.at)
            visits.setdefault(event.node, []).append(visit)
            open_visit[(token, event.node)] = visit
        elif event.type == "node_completed":
            finished = open_visit.pop((token, event.node), None)
            if finished is not None:
                finished.completed = event.at
        elif event.type == "task_cancelled":
            for key in [k for k in open_visit if k[1] == event.node]:
                withdrawn = open_visit.pop(key)
                withdrawn.completed, withdrawn.interrupted = event.at, True
    return visits


def case_overlay(graph: ProcessGraph, view: CaseView, now: datetime, *, zone: tzinfo | None = None) -> Overlay:
    """Paint a case over its process: where it went, where it waits, what is late.

    Durations are wall time (what the customer lived through); lateness follows the engine's own
    judgement: an open task past its due time, or a step whose SLA clock was breached.
    Times are shown in `zone`, by default the process calendar's zone.
    """
    zone = zone or graph.calendar.tz
    state = view.state
    overlay = Overlay(dim_unmarked=True)
    events = log.checked(view.events)
    visits = _visits(events)
    taken: Counter[str] = Counter()
    escalations: dict[str, int] = {}
    for event in events:
        if event.type == "edge_taken" and event.data.get("edge"):
            taken[str(event.data["edge"])] += 1
        elif event.type == "escalated" and event.node:
            escalations[event.node] = max(escalations.get(event.node, 0), int(event.data.get("level", 0)))

    # from the log rather than the state: a finished case no longer keeps its closed tasks' clocks
    breached_nodes = {e.node for e in events if e.type == "sla_breached" and e.node}

    for node_id in graph.nodes:  # definition order keeps the DOT text stable
        node_visits = visits.get(node_id)
        if not node_visits:
            continue
        mark = overlay.node(node_id)
        mark.fill, mark.color, mark.penwidth = VISITED_FILL, VISITED_LINE, 2.5
        if graph.kind(node_id) in INSTANT_KINDS:
            if len(node_visits) > 1:
                mark.lines.append(f"×{len(node_visits)}")
            continue
        done = [v for v in node_visits if v.completed is not None]
        total = sum((v.completed - v.entered for v in done if v.completed), timedelta())
        last = node_visits[-1]
        if len(node_visits) > 1:
            mark.lines.append(f"×{len(node_visits)} 次 visits · Σ {_short(total)}")
        if last.completed is not None:
            ended = " 中断 interrupted" if last.interrupted else ""
            mark.lines.append(f"{_stamp(last.entered, zone)} → {_stamp(last.completed, zone, last.entered)}"
                              f" · {_short(last.completed - last.entered)}{ended}")
        else:
            mark.lines.append(f"{_stamp(last.entered, zone)} → … · {_short(now - last.entered)}")
        if node_id in breached_nodes:
            mark.color, mark.penwidth = OVERDUE_LINE, 3.5
            mark.lines.append("SLA 超时 breached")
        if node_id in escalations:
            mark.lines.append(f"⚠ 升级 escalated L{escalations[node_id]}")

    for token in sorted(state.tokens.values(), key=lambda t: (t.node, t.id)):
        if token.node not in graph.nodes:
            continue
        mark = overlay.node(token.node)
        mark.fill, mark.color, mark.penwidth = CURRENT_FILL, CURRENT_LINE, 3.5
        task = state.tasks.get(token.task_id) if token.task_id else None
        if task is not None and task.status == "open":
            who = task.role + (f" · {task.assignee}" if task.assignee else "")
            mark.lines.append(f"待办 open: {who}")
            if task.due_at is not None:
                mark.lines.append(f"到期 due {_stamp(task.due_at, zone)}")
                if task.due_at < now:
                    mark.fill, mark.color = OVERDUE_FILL, OVERDUE_LINE
                    mark.lines.append(f"逾期 overdue {_short(now - task.due_at)}")
        if token.timer_due is not None:
            mark.lines.append(f"定时 due {_stamp(token.timer_due, zone)}")
        if token.message:
            mark.lines.append(f"等待 awaiting ✉ {token.message}")
        if token.child_case:
            mark.lines.append(f"子案 child {token.child_case}")
        if token.incident:
            mark.fill, mark.color = OVERDUE_FILL, OVERDUE_LINE
            mark.lines.append(f"故障 incident: {token.incident[:40]}")
        if token.node in breached_nodes:
            mark.fill, mark.color = OVERDUE_FILL, OVERDUE_LINE

    all_edges = [*graph.definition.edges]
    for edge in all_edges:
        count = taken.get(edge.key, 0)
        if not count:
            continue
        edge_mark = overlay.edge(edge.key)
        escalation = edge.kind == "escalation"
        edge_mark.color = ESCALATED_LINE if escalation else VISITED_LINE
        edge_mark.penwidth = 3.0
        edge_mark.style = "bold,dashed" if escalation else "bold"
        if count > 1:
            edge_mark.lines.append(f"×{count}")

    overlay.title = f"案件 Case {state.case_id} · {_status(state.status)}"
    if state.outcome:
        overlay.title += f" · {state.outcome}"
    overlay.subtitle.append(f"开始 started {_stamp(state.started_at, zone)} · 截至 as of {_stamp(now, zone)}"
                            f" ({zone}) · 优先级 priority {state.priority}")
    for clock in sorted(state.clocks.values(), key=lambda c: c.id):
        if clock.scope != "case":
            continue
        status = "超时 breached" if clock.breached else clock.status
        due = f", due {_stamp(clock.due_at, zone)}" if clock.due_at and clock.status == "running" else ""
        overlay.subtitle.append(f"{clock.name} {clock.target_text}: {status}{due}")
    overlay.legend = [
        (VISITED_FILL, "已走过 visited"),
        (CURRENT_FILL, "当前 waiting here"),
        (OVERDUE_FILL, "逾期/超时 overdue or breached"),
    ]
    return overlay


def _status(status: str) -> str:
    names: dict[str, Any] = {"running": "进行中 running", "completed": "已完成 completed",
                             "cancelled": "已取消 cancelled", "incident": "故障 incident"}
    return str(names.get(status, status))


__all__ = ["Overlay", "NodeMark", "EdgeMark", "case_overlay"]

"""The operators' view of a case: one keyed Markdown artifact per case, refreshed after each segment.

Keyed artifacts are versioned by Prefect, so the artifact's history is the case's story at
each step. Rendering reads the store only and never fails a run: a broken chart or a full
disk of the API costs the picture, not the case.
"""

from __future__ import annotations

import base64
import logging
import re
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect.artifacts import create_markdown_artifact

from engine.time import sla
from engine.definition.graph import ProcessGraph
from engine.run.runtime import CaseView, Engine
from engine.run.log import LogEntry, checked
from flows.human import bilingual, business_span, case_summary_rows

log = logging.getLogger("svcflow.flows")
MAX_IMAGE_BYTES = 400_000


def artifact_key(case_id: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    key = re.sub(r"[^a-z0-9-]+", "-", f"case-{case_id.lower()}")
    return re.sub(r"-{2,}", "-", key).strip("-")


def _cell(value: Any) -> str:
    return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _label(graph: ProcessGraph, node_id: str | None) -> str:
    if not node_id:
        return ""
    node = graph.nodes.get(node_id)
    return node.label() if node is not None else node_id


_LEFT_BY = ("task_completed", "step_completed", "subprocess_completed", "timer_fired", "message_received",
            "task_cancelled", "step_failed", "node_completed")


def path_rows(graph: ProcessGraph, events: list[LogEntry], when: Any) -> list[list[Any]]:
    """The path taken, from the log: every node entered, in order, and how it was left."""
    events = checked(events)
    left: dict[str, tuple[int, str]] = {}
    for e in events:
        if e.node and e.type in _LEFT_BY:
            rank = _LEFT_BY.index(e.type)
            if e.node not in left or rank <= left[e.node][0]:
                by = f" by {e.data['actor']}" if e.type == "task_completed" and e.data.get("actor") else ""
                left[e.node] = (rank, e.type.replace("_", " ") + by)
    current = {e.node for e in events if e.type == "node_entered"} - set(left)
    rows: list[list[Any]] = []
    for e in events:
        if e.type == "node_entered" and e.node:
            how = "waiting" if e.node in current else left.get(e.node, (0, ""))[1]
            rows.append([len(rows) + 1, when(e.at), f"`{e.node}`", _label(graph, e.node), e.data.get("kind", ""), how])
    return rows


def flowchart_markdown(engine: Engine, view: CaseView, now: datetime, zone: ZoneInfo) -> str | None:
    """The flowchart with the case's path painted on, as an inline SVG image (Prefect's Markdown
    artifacts show data-URI images); None when visualize/ or Graphviz is not there or fails."""
    try:
        from visualize.flowchart import flowchart_dot, render
        from visualize.overlay import case_overlay
    except Exception:
        return None
    try:
        graph = engine.graph_for(view.state)
        svg = render(flowchart_dot(graph, case_overlay(graph, view, now, zone=zone)), "svg")
    except Exception as exc:
        log.info("flowchart of %s not rendered: %s", view.state.case_id, exc)
        return None
    if len(svg) > MAX_IMAGE_BYTES:
        return None
    return f"![flowchart](data:image/svg+xml;base64,{base64.b64encode(svg).decode('ascii')})"


def render_case(engine: Engine, case_id: str, *, zone: str = "Asia/Shanghai", now: datetime | None = None,
                flowchart: bool = True) -> str:
    """The Markdown of the case artifact."""
    view = engine.case(case_id)
    state = view.state
    graph = engine.graph_for(state)
    definition = graph.definition
    now = now or engine.clock.now()
    tz = ZoneInfo(zone)

    def when(value: datetime | None) -> str:
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else ""

    lines = [f"# {bilingual(definition.name, definition.id)} · `{case_id}`", "",
             f"**状态 / Status** {state.status}" + (f" ({state.outcome})" if state.outcome else "")
             + f" · **优先级 / Priority** {state.priority} · **升级级别 / Escalation level** {state.escalation_level}"
             + f" · **开始 / Started** {when(state.started_at)}" + (f" · **结束 / Ended** {when(state.ended_at)}"
                                                                   if state.ended_at else ""), ""]
    if state.parent_case:
        lines += [f"上级案件 / Parent case: `{state.parent_case}`", ""]
    if view.children:
        lines += ["子案件 / Sub-cases: " + ", ".join(f"`{c}`" for c in view.children), ""]

    lines += ["## 当前步骤 / Current step", ""]
    if state.tokens:
        rows = []
        for token in sorted(state.tokens.values(), key=lambda t: (t.since, t.id)):
            task = state.tasks.get(token.task_id) if token.task_id else None
            waiting = ("task " + task.id if task else f"message {token.message}" if token.message
                       else f"timer {when(token.timer_due)}" if token.timer_due
                       else f"sub-case {token.child_case}" if token.child_case
                       else f"incident: {token.incident}" if token.incident else "running")
            rows.append([f"`{token.node}`", _label(graph, token.node), waiting,
                         task.role if task else "", (task.assignee or "") if task else "",
                         when(task.due_at) if task else "", task.escalation_level if task else ""])
        lines += _table(["step", "name", "waiting for", "role", "assignee", "due", "level"], rows)
    else:
        lines.append("无 / none")
    lines.append("")

    if state.clocks:
        lines += ["## SLA", ""]
        rows = []
        for clock in sorted(state.clocks.values(), key=lambda c: (c.started_at, c.id)):
            pct = sla.percent(clock, now, graph.calendar)
            left = ""
            if clock.status == "running" and clock.due_at is not None:
                seconds = graph.calendar.between(now, clock.due_at) if clock.due_at > now else \
                    -graph.calendar.between(clock.due_at, now)
                left = (business_span(seconds, graph.calendar.day_seconds) if seconds >= 0
                        else "-" + business_span(-seconds, graph.calendar.day_seconds))
            rows.append([clock.name, clock.target_text, sla.status_of(clock, now, graph.calendar), f"{pct:.0f} %",
                         when(clock.due_at), left])
        lines += _table(["clock", "target", "status", "used", "due", "business time left"], rows)
        lines.append("")

    escalations = engine.store.escalations(case_id)
    if escalations:
        lines += ["## 升级记录 / Escalations", ""]
        lines += _table(["at", "clock", "level", "percent", "kind", "step", "actions"],
                        [[when(e["at"]), e["clock_id"], e["level"], e["percent"], e["kind"], e["node"] or "",
                          e["actions"]] for e in escalations])
        lines.append("")

    data_rows = case_summary_rows(definition, state.data, limit=40)
    if data_rows:
        lines += ["## 案件数据 / Case data", ""] + _table(["field", "value"], [list(r) for r in data_rows]) + [""]

    lines += ["## 流程图与路径 / Flowchart and path taken", ""]
    chart = flowchart_markdown(engine, view, now, tz) if flowchart else None
    if chart:
        lines += [chart, ""]
    lines += _table(["#", "at", "step", "name", "kind", "left by"], path_rows(graph, view.events, when))
    return "\n".join(lines) + "\n"


def publish_case_artifact(engine: Engine, case_id: str, *, zone: str = "Asia/Shanghai",
                          flowchart: bool = True) -> UUID | None:
    """Create the next version of the case's artifact; never raises."""
    try:
        markdown = render_case(engine, case_id, zone=zone, flowchart=flowchart)
        state = engine.store.load_case(case_id)[0]
        created = create_markdown_artifact(
            markdown=markdown, key=artifact_key(case_id),
            description=f"{state.process_id} {case_id}: {state.status}",
        )
        return created if isinstance(created, UUID) else None
    except Exception as exc:
        log.warning("artifact of case %s not published: %s", case_id, exc)
        return None


__all__ = ["artifact_key", "flowchart_markdown", "publish_case_artifact", "render_case"]

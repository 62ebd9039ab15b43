"""The process review report: the flowchart as a heatmap, and the tables ESIA optimisation starts from.

`svcflow review PROCESS --out report.html` reads the event log; `svcflow simulate` feeds the same
report with simulated events. The HTML page is self-contained (the SVG is inlined, the CSS is in
the page, no fonts, scripts or images are fetched) so it can be mailed, archived or opened
offline; a PNG of the heatmap is written next to it for slides and chat.

Durations are shown in business hours (the process calendar) wherever they are compared with
SLA targets, and in wall hours where the customer's view matters; each table says which.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.definition.graph import ProcessGraph
from analytics.stats import ProcessStats, StepStats, compute_stats
from analytics.views import Group, Views, compute_views
from engine.run.log import LogEntry
from visualize.review_charts import dotted_chart_svg, performance_spectrum_svg

if TYPE_CHECKING:
    from visualize.overlay import Overlay

STATUS_FILL: dict[str, str] = {"green": "#bbf7d0", "amber": "#fde68a", "red": "#fca5a5", "none": "#e5e7eb"}
STATUS_LINE: dict[str, str] = {"green": "#15803d", "amber": "#b45309", "red": "#b91c1c", "none": "#6b7280"}
STATUS_TEXT: dict[str, str] = {
    "green": "达标 on target (p90 ≤ target)",
    "amber": "临界 at risk (median ≤ target < p90)",
    "red": "超标 over (median > target)",
    "none": "无目标 no target",
}
EDGE_COLOR = "#1d4ed8"
ESCALATION_EDGE_COLOR = "#dc2626"
MAX_EDGE_WIDTH = 9.0


@dataclass
class Review:
    """A review's data: the statistics plus what the page needs to say where they came from."""

    graph: ProcessGraph
    stats: ProcessStats
    since: datetime | None = None
    until: datetime | None = None
    title: str = ""
    source: str = "事件日志 event log"
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (id, title, trusted HTML)
    views: Views | None = None  # arcs, breakdowns, weekly trends, the charts' sample (None: not computed)

    @property
    def process_id(self) -> str:
        return self.graph.process_id


def build_review(graph: ProcessGraph, events: Iterable[LogEntry], since: datetime | None = None,
                 until: datetime | None = None, *, title: str | None = None, source: str | None = None,
                 slowest: int = 10, views: bool | None = None) -> Review:
    """Compute a review of the cases of `graph`'s process started in [since, until).

    `views` (time on arcs, breakdowns, weekly trends, dotted chart, performance spectrum) take a second
    pass over the log: by default only for logs shorter than VIEWS_AUTO_MAX_EVENTS, so the review of a
    long log costs what it did; True asks for them whatever the length, False leaves them out.
    """
    if not isinstance(events, list):
        events = list(events)  # read twice when the views are drawn: the statistics and the views
    stats = compute_stats(graph, events, since=since, until=until, slowest=slowest)
    name = graph.definition.name
    wanted = views if views is not None else len(events) < VIEWS_AUTO_MAX_EVENTS
    return Review(graph, stats, since, until, title or f"流程评审 Process review — {name.zh} / {name.en}",
                  source or "事件日志 event log",
                  views=compute_views(graph, events, since=since, until=until, expected_cases=stats.cases)
                  if wanted else None)


# -- formatting -------------------------------------------------------------------------------------
def fmt_h(value: float | None, digits: int = 1) -> str:
    """Hours for people: 0.4 h, 12.5 h, 3.2 d (working days are not used here: hours are unambiguous)."""
    if value is None:
        return "–"
    return f"{value:.{digits}f} h"


def fmt_d(hours: float | None) -> str:
    """Wall time in calendar days, for cycle times a customer counts in days."""
    return "–" if hours is None else f"{hours / 24:.1f} d"


def fmt_pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def fmt_when(value: datetime | None, graph: ProcessGraph) -> str:
    return "–" if value is None else value.astimezone(graph.calendar.tz).strftime("%Y-%m-%d %H:%M")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (),
               classes: Sequence[str | None] | None = None, table_id: str | None = None) -> str:
    """A plain HTML table; cells are escaped, so data can never inject markup into the report."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body: list[str] = []
    for index, row in enumerate(rows):
        cells = "".join(f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
                        for i, c in enumerate(row))
        css = classes[index] if classes is not None and index < len(classes) else None
        body.append(f'<tr class="{_e(css)}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    ident = f' id="{_e(table_id)}"' if table_id else ""
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}" class="empty">无数据 no data</td></tr>')
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- the heatmap -------------------------------------------------------------------------------------
def heatmap_overlay(review: Review) -> Overlay:
    """Node fill by status, labels with volume / median / p90 vs target, edge width by frequency."""
    from visualize.overlay import Overlay

    stats = review.stats
    overlay = Overlay(dim_unmarked=True, show_ladders=False)
    for step in stats.steps.values():
        if step.node not in review.graph.nodes or not step.entered:
            continue
        mark = overlay.node(step.node)
        if step.kind in ("start", "end", "exclusive", "parallel", "inclusive"):
            mark.lines.append(f"n={step.entered}")
            continue
        mark.fill = STATUS_FILL[step.status]
        mark.color = STATUS_LINE[step.status]
        mark.penwidth = 2.5 if step.status in ("red", "amber") else 1.5
        mark.lines.append(f"n={step.entered} · 中位 med {fmt_h(step.median_business_h)} · p90 {fmt_h(step.p90_business_h)}")
        if step.targets:
            rate = f" · 超时 breach {fmt_pct(step.breach_rate)}" if step.sla_started else ""
            mark.lines.append(f"目标 target {step.target_text}{rate}")
        if step.reentries:
            mark.lines.append(f"返工 rework ↻{step.reentries}")
        mark.tooltip = (f"{step.node}: {step.entered} entries, median {fmt_h(step.median_business_h)}, "
                        f"p90 {fmt_h(step.p90_business_h)} business; {STATUS_TEXT[step.status]}")
    counts = [e.count for e in stats.edges.values() if e.count]
    top = max(counts) if counts else 1
    for edge in stats.edges.values():
        if not edge.count:
            continue
        edge_mark = overlay.edge(edge.key)
        edge_mark.penwidth = round(1.0 + (MAX_EDGE_WIDTH - 1.0) * edge.count / top, 2)
        edge_mark.color = ESCALATION_EDGE_COLOR if edge.escalation else EDGE_COLOR
        edge_mark.style = "bold,dashed" if edge.escalation else "bold"
        edge_mark.lines.append(f"×{edge.count}")
    period = _period(review)
    overlay.title = f"流程评审 Process review · {period} · {stats.cases} 案件 cases"
    overlay.subtitle.append("时长 = 业务时间 durations in business hours (process calendar); "
                            "colour: p90 and median of duration ÷ target")
    overlay.legend = [(STATUS_FILL[s], STATUS_TEXT[s]) for s in ("green", "amber", "red", "none")]
    return overlay


def heatmap_dot(review: Review) -> str:
    from visualize.flowchart import flowchart_dot

    return flowchart_dot(review.graph, heatmap_overlay(review))


_XML_PROLOGUE = re.compile(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*", re.IGNORECASE)


def inline_svg(svg: bytes | str) -> str:
    """Graphviz's SVG without the XML prologue and DOCTYPE (whose DTD URL would be a network reference)."""
    text = svg.decode("utf-8") if isinstance(svg, bytes) else svg
    return _XML_PROLOGUE.sub("", text).strip()


def heatmap_svg(review: Review) -> str:
    from visualize.flowchart import render

    return inline_svg(render(heatmap_dot(review), "svg"))


def heatmap_png(review: Review) -> bytes:
    from visualize.flowchart import render

    return render(heatmap_dot(review), "png")


# -- the page ------------------------------------------------------------------------------------------
CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --head:#f3f4f6; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", system-ui, sans-serif;
       color: var(--ink); margin: 24px; background: #fff; line-height: 1.4; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
p.meta, p.note { color: var(--muted); margin: 4px 0; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 150px; }
.card .v { font-size: 20px; font-weight: 600; }
.card .k { font-size: 12px; color: var(--muted); }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 4px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.empty { color: var(--muted); font-style: italic; }
tr.green td:first-child { border-left: 6px solid #22c55e; }
tr.amber td:first-child { border-left: 6px solid #f59e0b; }
tr.red td:first-child { border-left: 6px solid #ef4444; }
tr.none td:first-child { border-left: 6px solid #d1d5db; }
.heatmap { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
.heatmap svg { width: 100%; min-width: 1200px; height: auto; }
.legend span { display: inline-block; padding: 2px 8px; margin-right: 6px; border-radius: 4px; font-size: 12px; }
ul.hints li { margin: 3px 0; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.better { color: #15803d; font-weight: 600; }
.chart { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
.worse { color: #b91c1c; font-weight: 600; }
"""


def _period(review: Review) -> str:
    graph, stats = review.graph, review.stats
    start = review.since or stats.first_event
    end = review.until or stats.last_event
    fmt = "%Y-%m-%d"
    a = start.astimezone(graph.calendar.tz).strftime(fmt) if start else "…"
    b = end.astimezone(graph.calendar.tz).strftime(fmt) if end else "…"
    return f"{a} – {b}"


def _cards(items: Sequence[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for k, v in items
    ) + "</div>"


def summary_cards(stats: ProcessStats) -> str:
    return _cards([
        ("案件 cases (started in period)", str(stats.cases)),
        ("已完成 completed", str(stats.completed)),
        ("未结 open", str(stats.open)),
        ("周期中位 cycle median (business)", fmt_h(stats.cycle_median_business_h)),
        ("周期 p90 cycle p90 (business)", fmt_h(stats.cycle_p90_business_h)),
        ("周期中位 cycle median (wall)", fmt_d(stats.cycle_median_wall_h)),
        *[(f"{c.name} 超时率 breach rate", fmt_pct(c.breach_rate)) for c in stats.clocks.values()],
        ("环节时限超时率 step SLA breach rate", fmt_pct(stats.task_breach_rate)),
        ("升级 escalations (breach and above)", str(stats.escalation_total)),
    ])


def hints(stats: ProcessStats) -> list[str]:
    """Where an ESIA review should look first, derived from the numbers (never invented)."""
    out: list[str] = []
    timed = [s for s in stats.steps.values() if s.status in ("red", "amber")]
    for step in sorted(timed, key=lambda s: (s.status != "red", -(s.p90_ratio or 0), s.node))[:4]:
        out.append(f"{step.label} ({step.node}): {STATUS_TEXT[step.status]}; median {fmt_h(step.median_business_h)}, "
                   f"p90 {fmt_h(step.p90_business_h)} against {step.target_text} — simplify or staff it "
                   f"(简化/增员).")
    for row in stats.rework[:2]:
        out.append(f"{row.label} ({row.node}) is re-entered in {fmt_pct(row.share_of_cases)} of cases "
                   f"({row.reentries} times): a rework loop to eliminate (消除返工).")
    waits = [s for s in stats.steps.values() if s.kind in ("timer", "message") and s.median_wall_h]
    for step in sorted(waits, key=lambda s: -(s.median_wall_h or 0))[:1]:
        out.append(f"{step.label} ({step.node}) waits {fmt_h(step.median_wall_h)} (wall, median): "
                   "a wait to shorten or integrate (整合).")
    return out


def steps_table(stats: ProcessStats) -> str:
    rows = []
    classes: list[str | None] = []
    for step in stats.steps.values():
        if not step.entered:
            continue
        timed = step.kind not in ("start", "end", "exclusive", "parallel", "inclusive")
        rows.append([
            step.node, step.label, step.lane or "", step.entered, step.cases,
            fmt_h(step.median_business_h) if timed else "", fmt_h(step.p90_business_h) if timed else "",
            fmt_h(step.median_wall_h) if timed else "", fmt_h(step.p90_wall_h) if timed else "",
            step.target_text, STATUS_TEXT[step.status] if timed else "",
            fmt_pct(step.breach_rate) if step.sla_started else "", step.escalations or "",
            step.reentries or "",
        ])
        classes.append(step.status if timed else None)
    return html_table(
        ["step", "名称 name", "lane", "volume", "cases", "median (business)", "p90 (business)", "median (wall)",
         "p90 (wall)", "target", "status", "SLA breach", "escalations", "rework"],
        rows, numeric=(3, 4, 5, 6, 7, 8, 11, 12, 13), classes=classes, table_id="steps-table")


def review_body(review: Review, svg: str | None) -> str:
    """Everything inside <body> except the page title: reused side by side by the comparison."""
    stats = review.stats
    graph = review.graph
    parts: list[str] = [summary_cards(stats)]
    found = hints(stats)
    if found:
        parts.append('<h2 id="hints">先看这里 Where to look (ESIA)</h2><ul class="hints">'
                     + "".join(f"<li>{_e(h)}</li>" for h in found) + "</ul>")
    parts.append('<h2 id="heatmap">热力图 Heatmap</h2>')
    parts.append('<p class="legend">' + "".join(
        f'<span style="background:{STATUS_FILL[s]}">{_e(STATUS_TEXT[s])}</span>'
        for s in ("green", "amber", "red", "none")) + "</p>")
    parts.append('<p class="note">节点颜色按业务时长与目标之比 Node colour: business duration ÷ that case\'s target '
                 '(policies may give different targets per tier); edge width: how often it was taken.</p>')
    if svg:
        parts.append(f'<div class="heatmap">{svg}</div>')
    else:
        parts.append('<p class="note">heatmap not rendered</p>')
    parts.append('<h2 id="steps">环节 Steps — volume and duration against target</h2>')
    parts.append('<p class="note">Duration = node entered → completed. Business hours follow the process calendar '
                 '(working hours, holidays, make-up days); wall hours are elapsed clock time.</p>')
    parts.append(steps_table(stats))

    parts.append(f'<h2 id="variants">路径变体 Path variants ({stats.variant_count} distinct)</h2>')
    parts.append('<p class="note">Steps entered in order, by name, gateways left out; a directly repeated block '
                 'is shown once as (…)↻ so loop counts do not split a variant. Cycle time in business hours.</p>')
    parts.append(html_table(
        ["#", "cases", "share", "median cycle (business)", "path"],
        [[i + 1, v.cases, fmt_pct(v.share), fmt_h(v.median_cycle_business_h), named_path(graph, v.path)]
         for i, v in enumerate(stats.variants)], numeric=(0, 1, 2, 3), table_id="variants-table"))
    if review.views is not None:
        parts.append(views_html(review))

    parts.append('<h2 id="rework">返工 Rework loops</h2>')
    parts.append(html_table(
        ["step", "名称 name", "cases with rework", "share of cases", "re-entries", "max visits in a case"],
        [[r.node, r.label, r.cases_with_rework, fmt_pct(r.share_of_cases), r.reentries, r.max_visits]
         for r in stats.rework], numeric=(2, 3, 4, 5), table_id="rework-table"))

    parts.append('<h2 id="workload">工作量 Workload per role</h2>')
    parts.append('<p class="note">Tasks per role (the role that completed them); hours are how long tasks stood '
                 'open (queue and work), summed.</p>')
    parts.append(html_table(
        ["role", "tasks opened", "tasks completed", "open hours (business)", "open hours (wall)",
         "mean per task (business)"],
        [[r.role, r.opened, r.completed, f"{r.open_business_h:.1f}", f"{r.open_wall_h:.1f}", fmt_h(r.mean_business_h)]
         for r in stats.roles.values()], numeric=(1, 2, 3, 4, 5), table_id="workload-table"))

    parts.append('<h2 id="sla">时限 SLA breach rate</h2>')
    parts.append('<p class="note">Case clocks consume business time and pause while the case waits on the customer. '
                 'Each clock has one status: met (stopped within its target), breached (reached 100 % or stopped '
                 'over it; never also met), cancelled (stopped with the case before any breach) or running (running '
                 'or paused at the end of the log). Breach rate = breached ÷ (met + breached), one per clock.</p>')
    parts.append(html_table(
        ["case clock", "name", "started", "met", "breached", "cancelled", "running", "breach rate",
         "median used (business)", "p90 used (business)"],
        [[c.clock, c.name, c.started, c.met, c.breached, c.cancelled, c.running, fmt_pct(c.breach_rate),
          fmt_h(c.median_consumed_business_h), fmt_h(c.p90_consumed_business_h)] for c in stats.clocks.values()],
        numeric=(2, 3, 4, 5, 6, 7, 8, 9), table_id="clocks-table"))
    parts.append(html_table(
        ["step SLA", "target", "clocks started", "breached", "breach rate"],
        [[s.node, s.target_text, s.sla_started, s.sla_breached, fmt_pct(s.breach_rate)]
         for s in stats.steps.values() if s.sla_started], numeric=(2, 3, 4), table_id="step-sla-table"))

    parts.append('<h2 id="escalations">升级 Escalations</h2>')
    kinds = ", ".join(f"{k}: {v}" for k, v in stats.escalations_by_kind.items()) or "none"
    parts.append(f'<p class="note">By kind — {_e(kinds)} (warned = below 100 %, breached = at 100 %, '
                 "escalated = beyond).</p>")
    parts.append(html_table(
        ["scope (step or case clock)", "level", "at %", "kind", "count", "actions"],
        [[r.scope, r.level, r.percent, r.kind, r.count, r.actions] for r in stats.escalations],
        numeric=(1, 2, 4), table_id="escalations-table"))

    parts.append('<h2 id="slowest">最慢案件 Slowest cases</h2>')
    parts.append(html_table(
        ["case", "status", "outcome", "started", "cycle (business)", "cycle (wall)", "steps", "re-entries",
         "escalations", "SLA breaches"],
        [[c.case_id, c.status, c.outcome or "", fmt_when(c.started_at, graph), fmt_h(c.cycle_business_h),
          fmt_h(c.cycle_wall_h), c.steps, c.reentries, c.escalations, c.breaches] for c in stats.slowest],
        numeric=(4, 5, 6, 7, 8, 9), table_id="slowest-table"))
    for ident, title, content in review.sections:
        parts.append(f'<h2 id="{_e(ident)}">{_e(title)}</h2>{content}')
    return "\n".join(parts)


def step_name(graph: ProcessGraph, node_id: str) -> str:
    """A step's Chinese name (its id when unnamed): what a manager reads in a path."""
    node = graph.nodes.get(node_id)
    name = getattr(node, "name", None)
    return name.zh if name is not None else node_id


def named_path(graph: ProcessGraph, path: Sequence[str]) -> str:
    """A variant by step names: ids inside a repeated block (…)↻ are named too."""
    def name(match: re.Match[str]) -> str:
        return step_name(graph, match.group(0)) if match.group(0) in graph.nodes else match.group(0)

    return " → ".join(_IDENT.sub(name, part) for part in path)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: longer logs get the views only on request (`svcflow review --views`): a second pass would cost ~40 % more
VIEWS_AUTO_MAX_EVENTS = 500_000


def views_html(review: Review) -> str:
    """Time on arcs, breakdowns by tier and category, weekly trends, the dotted chart and performance spectrum."""
    views, graph = review.views, review.graph
    assert views is not None
    clocks = [(c, review.stats.clocks[c].name if c in review.stats.clocks else c) for c in views.clocks]

    def label(node: str) -> str:
        return step_name(graph, node)

    def group_rows(groups: Sequence[Group]) -> list[list[Any]]:
        return [[g.key, g.cases, g.finished, fmt_h(g.median_cycle_h), *[fmt_pct(g.breach_rate(c)) for c, _ in clocks]]
                for g in groups]

    sampled = (f"; followed in a fixed sample of {views.traced} of the {views.cases} cases (by case id)"
               if views.traced < views.cases else "")
    group_head = ["cases", "finished", "median cycle (business)", *[f"{n} breach rate" for _, n in clocks]]
    numeric = tuple(range(1, 4 + len(clocks)))
    parts = [
        '<h2 id="arcs">环节间等待 Time on arcs (between steps)</h2>',
        '<p class="note">For steps that follow each other directly in a case: business hours from the first '
        "step's completion to the next one's completion (the next step's queue and work), busiest arcs "
        f"first{sampled}.</p>",
        html_table(["from", "to", "times", "median (business)", "p90 (business)"],
                   [[label(a.source), label(a.target), a.count, fmt_h(a.median_h), fmt_h(a.p90_h)]
                    for a in views.arcs[:20]], numeric=(2, 3, 4), table_id="arcs-table"),
    ]
    for name, title in (("tier", "按客户等级 By tier"), ("category", "按类别 By category")):
        parts.append(f'<h2 id="by-{name}">{title}</h2>')
        parts.append(html_table([name, *group_head], group_rows(views.by_field.get(name, [])), numeric=numeric,
                                table_id=f"by-{name}-table"))
    parts.append('<h2 id="trends">每周趋势 Weekly trends (by the week a case started)</h2>')
    parts.append(html_table(["week", *group_head], group_rows(views.weeks), numeric=numeric,
                            table_id="trends-table"))
    dotted = dotted_chart_svg(views.sample, label)
    spectrum = performance_spectrum_svg(views.sample, views.arcs, label)
    parts.append(f'<h2 id="dotted">点图 Dotted chart ({len(views.sample)} cases, evenly sampled)</h2>')
    parts.append(f'<div class="chart">{dotted}</div>' if dotted else '<p class="note">no cases</p>')
    parts.append('<h2 id="spectrum">性能谱 Performance spectrum (busiest arcs, same cases)</h2>')
    parts.append(f'<div class="chart">{spectrum}</div>' if spectrum else '<p class="note">no arcs</p>')
    return "\n".join(parts)


def page(title: str, meta: Sequence[str], body: str) -> str:
    """A complete, self-contained HTML document."""
    metas = "".join(f'<p class="meta">{_e(m)}</p>' for m in meta)
    return (
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n{metas}\n{body}\n</body>\n</html>\n"
    )


def review_meta(review: Review) -> list[str]:
    d = review.graph.definition
    stats = review.stats
    return [
        f"{d.id} v{d.version} · {review.source} · {_period(review)} ({review.graph.calendar.tz}) · "
        f"{stats.events} events of {stats.cases} cases",
    ]


def review_html(review: Review, *, svg: str | None = None, render_svg: bool = True) -> str:
    """The report page. `svg` may be given (already rendered); otherwise Graphviz renders it."""
    if svg is None and render_svg:
        svg = heatmap_svg(review)
    return page(review.title, review_meta(review), review_body(review, svg))


def write_review(review: Review, out: Path) -> tuple[Path, Path]:
    """Write report.html and, next to it, report.png of the heatmap; returns both paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    dot = heatmap_dot(review)
    from visualize.flowchart import render

    svg = inline_svg(render(dot, "svg"))
    out.write_text(review_html(review, svg=svg), encoding="utf-8")
    png = out.with_suffix(".png")
    png.write_bytes(render(dot, "png"))
    return out, png


# -- Prefect ---------------------------------------------------------------------------------------------
def review_markdown(review: Review) -> str:
    """A short Markdown summary (for the Prefect UI, where HTML is not shown)."""
    stats = review.stats
    lines = [
        f"# {review.title}",
        f"{review.graph.process_id} · {_period(review)} · {stats.cases} cases ({stats.completed} completed, "
        f"{stats.open} open)",
        "",
        f"- cycle time (business): median {fmt_h(stats.cycle_median_business_h)}, p90 {fmt_h(stats.cycle_p90_business_h)}",
        *[f"- {c.name}: breach rate {fmt_pct(c.breach_rate)} ({c.breached} breached, {c.met} met, "
          f"{c.running} running)" for c in stats.clocks.values()],
        f"- step SLA breach rate {fmt_pct(stats.task_breach_rate)}; escalations {stats.escalation_total}",
        "",
        "| step | volume | median (business) | p90 (business) | target | status |",
        "|---|---:|---:|---:|---|---|",
    ]
    for step in stats.steps.values():
        if step.entered and step.targets:
            lines.append(f"| {step.node} | {step.entered} | {fmt_h(step.median_business_h)} | "
                         f"{fmt_h(step.p90_business_h)} | {step.target_text} | {step.status} |")
    found = hints(stats)
    if found:
        lines += ["", "## Where to look", *[f"- {h}" for h in found]]
    return "\n".join(lines) + "\n"


def step_rows(stats: ProcessStats) -> list[dict[str, Any]]:
    return [_step_row(s) for s in stats.steps.values() if s.entered]


def _step_row(step: StepStats) -> dict[str, Any]:
    return {"step": step.node, "volume": step.entered, "median_business_h": step.median_business_h,
            "p90_business_h": step.p90_business_h, "target": step.target_text, "status": step.status,
            "breach_rate": step.breach_rate, "rework": step.reentries}


def publish_review_artifact(review: Review) -> bool:
    """Publish the review as Prefect artifacts when running inside a flow or task run; else do nothing.

    Prefect is imported here, not at module top: reviews are made from the CLI and tests too,
    where importing Prefect would only cost start-up time.
    """
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact
        from prefect.context import get_run_context
    except ImportError:
        return False
    try:
        context = get_run_context()
    except Exception:  # MissingContextError (a RuntimeError): not inside a run
        return False
    if context is None:
        return False
    key = "review-" + re.sub(r"[^a-z0-9-]", "-", review.process_id.lower())
    create_markdown_artifact(markdown=review_markdown(review), key=key,
                             description=f"Process review of {review.process_id}")
    create_table_artifact(table=step_rows(review.stats), key=key + "-steps",
                          description=f"Steps of {review.process_id}: volume, duration and status")
    return True


__all__ = ["Review", "build_review", "review_html", "write_review", "publish_review_artifact", "heatmap_overlay",
           "heatmap_dot", "review_markdown", "html_table", "page", "review_body", "inline_svg"]

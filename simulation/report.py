"""Reports of simulated runs: the review with staff utilisation, and the side-by-side of two variants."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analytics.stats import ProcessStats
from analytics.views import compute_views
from simulation.simulator import RoleUse, SimulationResult
from visualize.review import Review, heatmap_dot, html_table, inline_svg, page, review_body, write_review

# -- comparison ------------------------------------------------------------------------------------------
@dataclass
class VariantSummary:
    """The numbers the side-by-side shows for one variant."""

    name: str
    definition: str
    cases: int
    completed: int
    cycle_median_business_h: float | None
    cycle_p90_business_h: float | None
    cycle_median_wall_d: float | None
    task_breach_rate: float | None
    escalations: int
    warnings: int
    clock_rates: dict[str, float | None]
    roles: dict[str, RoleUse]
    workload: dict[str, tuple[int, float]]  # role -> (tasks completed, open business hours)


def summarise(result: SimulationResult, stats: ProcessStats | None = None) -> VariantSummary:
    stats = stats or result.stats()
    return VariantSummary(
        name=result.scenario.name,
        definition=result.scenario.definition,
        cases=stats.cases,
        completed=stats.completed,
        cycle_median_business_h=stats.cycle_median_business_h,
        cycle_p90_business_h=stats.cycle_p90_business_h,
        cycle_median_wall_d=(stats.cycle_median_wall_h / 24.0) if stats.cycle_median_wall_h is not None else None,
        task_breach_rate=stats.task_breach_rate,
        escalations=stats.escalation_total,
        warnings=stats.escalations_by_kind.get("warned", 0),
        clock_rates={c.clock: c.breach_rate for c in stats.clocks.values()},
        roles=result.roles,
        workload={r.role: (r.completed, r.open_business_h) for r in stats.roles.values()},
    )


# -- why a figure moved -----------------------------------------------------------------------------------
MOVE_THRESHOLD = 0.05  # a role's utilisation or a step's share of cases that moved by 5 pp or more is named


@dataclass
class ClockOutcome:
    """How one case clock of one variant ended, by the node it stopped at (None: at the case's end)."""

    decided: dict[str | None, int]  # stop node -> clocks met or breached there
    breached: dict[str | None, int]  # stop node -> of which breached

    def rate(self, nodes: set[str | None] | None = None) -> float | None:
        """Breach rate of the clocks that stopped at `nodes` (all when None)."""
        keys = self.decided if nodes is None else [k for k in self.decided if k in nodes]
        total = sum(self.decided[k] for k in keys)
        return sum(self.breached.get(k, 0) for k in keys) / total if total else None


def clock_outcomes(result: SimulationResult) -> dict[str, ClockOutcome]:
    """Per case clock of the root process: met/breached clocks by the node they stopped at, from the log."""
    process = result.graph.process_id
    breached_once: set[tuple[str, str]] = set()
    out: dict[str, ClockOutcome] = {}
    for e in result.events:
        if e.process_id != process or not e.type.startswith("sla_"):
            continue
        clock = str(e.data.get("clock", ""))
        if not clock.startswith("case:"):
            continue
        if e.type == "sla_breached":
            breached_once.add((e.case_id, clock))
        elif e.type in ("sla_met", "sla_stopped"):
            late = (e.case_id, clock) in breached_once or e.data.get("in_time") is False
            if e.type == "sla_stopped" and not late:
                continue  # cancelled before any breach: neither met nor breached
            outcome = out.setdefault(clock, ClockOutcome({}, {}))
            outcome.decided[e.node] = outcome.decided.get(e.node, 0) + 1
            if late:
                outcome.breached[e.node] = outcome.breached.get(e.node, 0) + 1
    return out


@dataclass
class ClockAttribution:
    """Why a clock's breach rate moved from A to B: the measuring point, and the rest (load and path)."""

    clock: str
    name: str
    starts: tuple[str, str]  # where the clock starts in A and in B ("case start" by default)
    stops: tuple[list[str], list[str]]
    rate_a: float | None
    rate_b: float | None
    like_for_like_b: float | None  # B's clocks that stopped where A's clock stops (same start)
    moved_share_b: float  # of B's decided clocks, those stopped at a point A's clock does not stop at

    @property
    def measuring_point_moved(self) -> bool:
        return self.starts[0] != self.starts[1] or set(self.stops[0]) != set(self.stops[1])

    @property
    def change_pp(self) -> float | None:
        return None if self.rate_a is None or self.rate_b is None else 100 * (self.rate_b - self.rate_a)

    @property
    def measuring_point_pp(self) -> float | None:
        """The part of the change due to clocks stopping at new points: B's rate minus its like-for-like rate."""
        if not self.measuring_point_moved:
            return 0.0
        if self.rate_b is None or self.like_for_like_b is None:
            return None
        return 100 * (self.rate_b - self.like_for_like_b)

    @property
    def rest_pp(self) -> float | None:
        """The like-for-like change: what load and path did to clocks measured the same way."""
        if self.rate_a is None:
            return None
        like = self.rate_b if not self.measuring_point_moved else self.like_for_like_b
        return None if like is None else 100 * (like - self.rate_a)


@dataclass
class CaseSplit:
    """A clock's change case by case: both runs give the same case the same customer and data (same seed and
    per-case streams), so each case's breached-or-not in A and in B is compared and its change put down to
    one cause — its B clock stopped at a point A's does not stop at (the measuring point), else its path
    through the human steps differs (the path), else only the waits changed (load). The three add up to
    the change on the cases both runs decided."""

    cases: int = 0
    measuring_point: int = 0  # sum of (breached in B) - (breached in A) over the cases put down to it
    path: int = 0
    load: int = 0

    def pp(self, part: int) -> float | None:
        return 100 * part / self.cases if self.cases else None


def _paths_and_stops(result: SimulationResult) -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, str], tuple[
        str | None, bool]]]:
    """Per case: the human steps entered in order; per (case, clock): (stop node, breached) of decided clocks."""
    process = result.graph.process_id
    humans = {n.id for n in result.graph.definition.nodes if n.kind == "human"}
    paths: dict[str, list[str]] = {}
    stops: dict[tuple[str, str], tuple[str | None, bool]] = {}
    breached: set[tuple[str, str]] = set()
    for e in result.events:
        if e.process_id != process:
            continue
        if e.type == "node_entered" and e.node in humans:
            paths.setdefault(e.case_id, []).append(e.node)
        elif e.type in ("sla_breached", "sla_met", "sla_stopped"):
            clock = str(e.data.get("clock", ""))
            if not clock.startswith("case:"):
                continue
            key = (e.case_id, clock)
            if e.type == "sla_breached":
                breached.add(key)
                continue
            late = key in breached or e.data.get("in_time") is False
            if e.type == "sla_met" or late:
                stops[key] = (e.node, late)
    return {case: tuple(path) for case, path in paths.items()}, stops


def split_by_case(a: SimulationResult, b: SimulationResult, clock: str, a_points: set[str | None]) -> CaseSplit:
    """The clock's change on the cases both runs decided, put down case by case (see `CaseSplit`)."""
    paths_a, stops_a = _paths_and_stops(a)
    paths_b, stops_b = _paths_and_stops(b)
    split = CaseSplit()
    for (case, name), (_stop_a, late_a) in stops_a.items():
        if name != clock or (case, name) not in stops_b:
            continue
        stop_b, late_b = stops_b[(case, name)]
        split.cases += 1
        change = int(late_b) - int(late_a)
        if stop_b not in a_points:
            split.measuring_point += change
        elif paths_a.get(case) != paths_b.get(case):
            split.path += change
        else:
            split.load += change
    return split


@dataclass
class Attribution:
    """The table a steering committee reads: which clocks moved and why."""

    clocks: list[ClockAttribution]
    roles: list[tuple[str, float | None, float | None, float | None, float | None]]  # role, util A/B, p90 wait A/B
    steps: list[tuple[str, str, float, float]]  # node, name, share of cases A, B
    splits: dict[str, CaseSplit] = field(default_factory=dict)  # clock -> its change case by case


def attribute(a: SimulationResult, b: SimulationResult) -> Attribution:
    """Separate 'the measuring point moved', 'load fell' and 'the path changed' between two runs."""
    defs_a = {c.id: c for c in a.graph.definition.clocks}
    defs_b = {c.id: c for c in b.graph.definition.clocks}
    out_a, out_b = clock_outcomes(a), clock_outcomes(b)
    clocks: list[ClockAttribution] = []
    for clock_id in [c for c in defs_a if c in defs_b]:
        ca, cb = defs_a[clock_id], defs_b[clock_id]
        key = f"case:{clock_id}"
        oa, ob = out_a.get(key, ClockOutcome({}, {})), out_b.get(key, ClockOutcome({}, {}))
        same_points: set[str | None] = {*ca.stop_on, None}
        same_start = ca.start_on == cb.start_on
        decided_b = sum(ob.decided.values())
        moved = sum(n for node, n in ob.decided.items() if node not in same_points)
        clocks.append(ClockAttribution(
            key, ca.name.both() if ca.name else clock_id,
            (ca.start_on or "case start", cb.start_on or "case start"), (list(ca.stop_on), list(cb.stop_on)),
            oa.rate(), ob.rate(), ob.rate(same_points) if same_start else None,
            moved / decided_b if decided_b else 0.0))
    roles: list[tuple[str, float | None, float | None, float | None, float | None]] = []
    for role in sorted(set(a.roles) | set(b.roles)):
        ua, ub = a.roles.get(role), b.roles.get(role)
        util_a, util_b = (ua.utilisation if ua else None), (ub.utilisation if ub else None)
        if util_a is not None and util_b is not None and abs(util_b - util_a) >= MOVE_THRESHOLD:
            roles.append((role, util_a, util_b, ua.p90_wait_h if ua else None, ub.p90_wait_h if ub else None))
    sa, sb = a.stats(), b.stats()
    steps: list[tuple[str, str, float, float]] = []
    for node in dict.fromkeys([*sa.steps, *sb.steps]):
        step = sa.steps.get(node) or sb.steps[node]
        if step.kind != "human":
            continue
        share_a = sa.steps[node].cases / sa.cases if node in sa.steps and sa.cases else 0.0
        share_b = sb.steps[node].cases / sb.cases if node in sb.steps and sb.cases else 0.0
        if abs(share_b - share_a) >= MOVE_THRESHOLD:
            steps.append((node, step.label, share_a, share_b))
    steps.sort(key=lambda row: (-abs(row[3] - row[2]), row[0]))
    splits = {c.clock: split_by_case(a, b, c.clock, {*defs_a[c.clock[5:]].stop_on, None}) for c in clocks}
    return Attribution(clocks, roles, steps, splits)


def attribution_rows(att: Attribution) -> list[list[str]]:
    """(clock, reason, evidence, effect) rows in plain words."""
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    def pp(value: float | None) -> str:
        return "–" if value is None else f"{value:+.1f} pp"

    load = "; ".join(f"{role} utilisation {pct(ua)} → {pct(ub)}, p90 wait {_hours(wa)} → {_hours(wb)}"
                     for role, ua, ub, wa, wb in att.roles) or "no role's utilisation moved by 5 pp or more"
    path = "; ".join(f"{name} ({node}) {pct(xa)} → {pct(xb)} of cases" for node, name, xa, xb in att.steps[:6]) \
        or "no step's share of cases moved by 5 pp or more"
    rows: list[list[str]] = []
    for c in att.clocks:
        split = att.splits.get(c.clock, CaseSplit())
        head = f"{c.name}: {pct(c.rate_a)} → {pct(c.rate_b)} ({pp(c.change_pp)})"
        if c.measuring_point_moved:
            where = (f"starts at {c.starts[0]} in A, {c.starts[1]} in B; " if c.starts[0] != c.starts[1] else "") + \
                f"stops at {', '.join(c.stops[0])} in A, {', '.join(c.stops[1])} in B"
            evidence = (f"{where}; {pct(c.moved_share_b)} of B's clocks stopped at a point A's clock does not "
                        f"stop at (like for like, B's rate is {pct(c.like_for_like_b)})")
        else:
            evidence = "no: same start and stop points"
        rows.append([head, "测量点变化 the measuring point moved", evidence, pp(split.pp(split.measuring_point))])
        rows.append([head, "路径变化 the path changed", path, pp(split.pp(split.path))])
        rows.append([head, "负荷变化 load changed", load, pp(split.pp(split.load))])
    return rows


def _hours(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} h"


def attribution_html(att: Attribution) -> str:
    note = ('<p class="note">Why each clock\'s breach rate moved, case by case: both runs give each case the same '
            "customer and data, so every case's breached-or-not in A and in B is compared and its change put down "
            "to one cause. <b>The measuring point moved</b>: its B clock stopped at a node where A's clock does not "
            "stop. <b>The path changed</b>: otherwise, its way through the human steps differs. <b>Load</b>: same "
            "path, same measuring point, only the waits differ. The three effects add up to the change on the cases "
            "both runs decided (the headline rates count every decided clock of each run). Evidence: roles whose "
            "utilisation moved and steps whose share of cases moved by 5 pp or more.</p>")
    return note + html_table(["figure", "reason", "evidence", "effect on the breach rate"], attribution_rows(att),
                             table_id="attribution-table")


# -- reports ---------------------------------------------------------------------------------------------
def _scenario_section(result: SimulationResult) -> str:
    s = result.scenario
    arrivals = s.arrivals
    rate = (f"{arrivals.rate:g} per {arrivals.per.replace('_', ' ')}" if arrivals.interarrival is None
            else f"inter-arrival {arrivals.interarrival}")
    rows: list[list[Any]] = [
        ["scenario", s.name], ["description", s.description.strip()], ["definition", s.definition],
        ["seed", result.seed], ["cases", result.cases], ["arrivals", rate],
        ["simulated period", f"{result.started_at:%Y-%m-%d %H:%M} – {result.ended_at:%Y-%m-%d %H:%M}"],
        ["child cases (sub-processes)", result.child_cases], ["interpreter transitions", result.applies],
    ]
    note = ('<p class="note">Simulated with the real interpreter on a virtual clock. Work times are business time '
            "(the process calendar); a role's people serve its queue by priority, then first come first served, "
            "only in working hours.</p>")
    stated = "".join(f"<li>{html.escape(text)}</li>" for text in result.assumptions)
    assumptions = (f'<p id="assumptions">假设 Assumptions of this run:</p><ul class="assumptions">{stated}</ul>'
                   if stated else "")
    return note + assumptions + html_table(["", ""], rows)


def utilisation_table(result: SimulationResult) -> str:
    rows = []
    for use in result.roles.values():
        rows.append([use.role, use.staff if use.staff is not None else "unlimited", use.tasks, f"{use.busy_h:.1f}",
                     f"{use.available_h:.1f}" if use.available_h is not None else "–",
                     f"{100 * use.utilisation:.1f} %" if use.utilisation is not None else "–",
                     f"{use.median_wait_h:.2f} h" if use.median_wait_h is not None else "–",
                     f"{use.p90_wait_h:.2f} h" if use.p90_wait_h is not None else "–", use.max_queue])
    return html_table(["role", "staff", "tasks worked", "busy hours (business)", "available hours (business)",
                       "utilisation", "median wait for a person", "p90 wait", "longest queue"], rows,
                      numeric=(2, 3, 4, 5, 6, 7, 8), table_id="utilisation-table")


def simulation_review(result: SimulationResult, stats: ProcessStats | None = None) -> Review:
    """The review report of a simulated run, with the scenario and the people's utilisation added."""
    stats = stats or result.stats()
    name = result.graph.definition.name
    review = Review(result.graph, stats, None, None,
                    f"模拟评审 Simulated review — {name.zh} / {name.en} ({result.scenario.name})",
                    f"模拟 simulation: {result.scenario.name}, seed {result.seed}",
                    views=compute_views(result.graph, result.events, expected_cases=stats.cases))
    review.sections.append(("utilisation", "人员利用率 Staff utilisation (simulated)", utilisation_table(result)))
    review.sections.append(("scenario", "情景 Scenario", _scenario_section(result)))
    return review


def write_simulation(result: SimulationResult, out: Path) -> tuple[Path, Path]:
    return write_review(simulation_review(result), out)


def comparison_rows(a: VariantSummary, b: VariantSummary) -> list[tuple[str, str, str, str, str | None]]:
    """(metric, A, B, change, better|worse|None) rows of the side-by-side."""
    from visualize.review import fmt_h, fmt_pct

    rows: list[tuple[str, str, str, str, str | None]] = []

    def add(label: str, va: float | None, vb: float | None, shown: Any, kind: str = "number") -> None:
        change, verdict = _delta(va, vb, kind)
        rows.append((label, shown(va), shown(vb), change, verdict))

    def days(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f} d"

    add("cases simulated", a.cases, b.cases, str, "count-neutral")
    add("completed", a.completed, b.completed, str, "count-neutral")
    add("cycle time median (business hours)", a.cycle_median_business_h, b.cycle_median_business_h, fmt_h)
    add("cycle time p90 (business hours)", a.cycle_p90_business_h, b.cycle_p90_business_h, fmt_h)
    add("cycle time median (wall days)", a.cycle_median_wall_d, b.cycle_median_wall_d, days)
    for clock in sorted(set(a.clock_rates) | set(b.clock_rates)):
        add(f"SLA breach rate, {clock}", a.clock_rates.get(clock), b.clock_rates.get(clock), fmt_pct, "rate")
    add("SLA breach rate, step clocks", a.task_breach_rate, b.task_breach_rate, fmt_pct, "rate")
    add("escalations (breach and above)", a.escalations, b.escalations, str, "count")
    add("warnings (below 100 %)", a.warnings, b.warnings, str, "count")
    return rows


def _delta(a: float | None, b: float | None, kind: str = "number") -> tuple[str, str | None]:
    """The change from A to B, and whether it is better (lower is better, except neutral counts)."""
    if a is None or b is None:
        return "–", None
    diff = b - a
    if abs(diff) < 1e-12:
        return "±0", None
    if kind == "rate":
        text = f"{100 * diff:+.1f} pp"
    elif kind.startswith("count"):
        text = f"{diff:+.0f}" + (f" ({100 * diff / a:+.0f} %)" if a else "")
    else:
        text = f"{diff:+.2f}" + (f" ({100 * diff / a:+.0f} %)" if a else "")
    if kind.endswith("neutral"):
        return text, None
    return text, "better" if diff < 0 else "worse"


def role_rows(a: SimulationResult, b: SimulationResult) -> list[list[Any]]:
    """Workload and utilisation per role, both variants in one row."""
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    def wait(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f} h"

    rows: list[list[Any]] = []
    for role in sorted(set(a.roles) | set(b.roles)):
        ua, ub = a.roles.get(role), b.roles.get(role)
        staff = ua.staff if ua is not None else (ub.staff if ub is not None else None)
        staff_b = ub.staff if ub is not None else staff
        rows.append([
            role, "unlimited" if staff is None else staff, "unlimited" if staff_b is None else staff_b,
            ua.tasks if ua else 0, ub.tasks if ub else 0,
            f"{ua.busy_h:.1f}" if ua else "0.0", f"{ub.busy_h:.1f}" if ub else "0.0",
            pct(ua.utilisation if ua else None), pct(ub.utilisation if ub else None),
            wait(ua.p90_wait_h if ua else None), wait(ub.p90_wait_h if ub else None),
        ])
    return rows


def comparison_html(a: SimulationResult, b: SimulationResult, *, svg_a: str | None = None,
                    svg_b: str | None = None) -> str:
    """Side-by-side of two variants, then each variant's full review."""
    _e = html.escape
    stats_a, stats_b = a.stats(), b.stats()
    sa, sb = summarise(a, stats_a), summarise(b, stats_b)
    ra, rb = simulation_review(a, stats_a), simulation_review(b, stats_b)
    rows = comparison_rows(sa, sb)
    head = f"<tr><th>metric</th><th>{_e(sa.name)}</th><th>{_e(sb.name)}</th><th>change</th></tr>"
    body = "".join(
        f"<tr><td>{_e(m)}</td><td class=\"num\">{_e(x)}</td><td class=\"num\">{_e(y)}</td>"
        f"<td class=\"num{' ' + v if v else ''}\">{_e(d)}</td></tr>" for m, x, y, d, v in rows)
    na, nb = sa.name, sb.name
    stated = sorted(set(a.assumptions) | set(b.assumptions))
    parts = [
        f'<p class="note">Same seed ({a.seed}), arrivals and customers for both variants, and per-case random '
        f"streams, so differences come from the variants. Durations are business hours of the process calendar. "
        f"Definitions: {_e(sa.definition)} vs {_e(sb.definition)}.</p>",
        *([f'<p class="note">假设 Assumptions: {_e("; ".join(stated))}.</p>'] if stated else []),
        '<h2 id="comparison">对比 Side by side</h2>',
        f'<table id="comparison-table"><thead>{head}</thead><tbody>{body}</tbody></table>',
        '<h2 id="attribution">为何变化 Why the figures moved</h2>',
        attribution_html(attribute(a, b)),
        '<h2 id="comparison-roles">工作量与利用率 Workload and utilisation per role</h2>',
        '<p class="note">Busy hours: business hours people worked on tasks; utilisation: busy ÷ available '
        "working hours of the role's staff over the simulated period; p90 wait: how long tasks waited for a "
        "person (business hours).</p>",
        html_table(["role", f"staff {na}", f"staff {nb}", f"tasks {na}", f"tasks {nb}", f"busy h {na}",
                    f"busy h {nb}", f"utilisation {na}", f"utilisation {nb}", f"p90 wait {na}", f"p90 wait {nb}"],
                   role_rows(a, b), numeric=tuple(range(1, 11)), table_id="comparison-roles-table"),
        f'<h2 id="variant-a">方案 A · {_e(na)}</h2>',
        review_body(ra, svg_a),
        f'<h2 id="variant-b">方案 B · {_e(nb)}</h2>',
        review_body(rb, svg_b),
    ]
    title = f"方案对比 What-if comparison — {na} vs {nb}"
    return page(title, [f"{a.graph.process_id} vs {b.graph.process_id}"], "\n".join(parts))


def write_comparison(a: SimulationResult, b: SimulationResult, out: Path) -> tuple[Path, Path, Path]:
    """report.html with both variants, and a heatmap PNG of each next to it."""
    from visualize.flowchart import render

    out.parent.mkdir(parents=True, exist_ok=True)
    dots = [heatmap_dot(simulation_review(r)) for r in (a, b)]
    svgs = [inline_svg(render(dot, "svg")) for dot in dots]
    out.write_text(comparison_html(a, b, svg_a=svgs[0], svg_b=svgs[1]), encoding="utf-8")
    pngs = [out.with_name(f"{out.stem}-{_slug(r.scenario.name)}.png") for r in (a, b)]
    for path, dot in zip(pngs, dots):
        path.write_bytes(render(dot, "png"))
    return out, pngs[0], pngs[1]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "variant"

"""Reports of simulated runs: the review with staff utilisation, and the side-by-side of two variants."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analytics.stats import ProcessStats
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
            "only in working hours. Roles without a staff number have as many people as needed.</p>")
    return note + html_table(["", ""], rows)


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
                    f"模拟 simulation: {result.scenario.name}, seed {result.seed}")
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
    parts = [
        f'<p class="note">Same seed ({a.seed}), arrivals and customers for both variants, and per-case random '
        f"streams, so differences come from the variants. Durations are business hours of the process calendar. "
        f"Definitions: {_e(sa.definition)} vs {_e(sb.definition)}.</p>",
        '<h2 id="comparison">对比 Side by side</h2>',
        f'<table id="comparison-table"><thead>{head}</thead><tbody>{body}</tbody></table>',
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

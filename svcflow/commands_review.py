"""CLI commands for reports and what-if simulation: `review`, `report weekly`, `simulate`.

Kept apart from svcflow/cli.py so the reporting side can grow without touching the commands
that change cases; `register(app)` adds them to the main app. They only read the store (the
simulator runs its own in-memory interpreter), so none of them can change a case.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer

from engine.errors import InputError


def parse_moment(text: str | None, zone: str, *, end_of_day: bool = False) -> datetime | None:
    """A --since/--until value: an ISO date (a day in the managers' zone) or an ISO date-time.

    A bare date given as --until includes that whole day (the bound is the next midnight).
    """
    if not text:
        return None
    tz = ZoneInfo(zone)
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            moment = datetime(day.year, day.month, day.day, tzinfo=tz)
            return moment + timedelta(days=1) if end_of_day else moment
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"cannot read the date {text!r}", hint="write 2025-09-01 or 2025-09-01T09:00:00+08:00") \
            from None
    return value if value.tzinfo else value.replace(tzinfo=tz)


def register(app: typer.Typer) -> None:
    """Add `review`, `report weekly` and `simulate` to the svcflow app."""
    from svcflow.cli import _engine, friendly, out, shown

    def display_zone() -> str:
        from engine.settings import get_settings

        return str(get_settings().display_timezone)

    @app.command()
    @friendly
    def review(
        process: str = typer.Argument(..., help="process id, e.g. complaint_handling"),
        since: str | None = typer.Option(None, "--since", help="cases started from this date (ISO)"),
        until: str | None = typer.Option(None, "--until", help="up to this date (a bare date includes the day)"),
        output: Path = typer.Option(Path("review.html"), "--out", help="HTML file; a PNG of the heatmap goes next to it"),
        views: bool | None = typer.Option(None, "--views/--no-views",
                                          help="time on arcs, tier/category breakdowns, weekly trends, dotted chart "
                                               "and performance spectrum (default: for logs under 500,000 events)"),
    ) -> None:
        """Process review: heatmap of steps against their SLA targets, variants, rework, workload, breaches."""
        from visualize.review import build_review, publish_review_artifact, write_review

        zone = display_zone()
        start, end = parse_moment(since, zone), parse_moment(until, zone, end_of_day=True)
        engine = _engine()
        graph = engine.library.get(process)
        # cases started before --since are left out anyway, so their events need not be read
        events = engine.store.events(process_id=process, since=start, until=end)
        report = build_review(graph, events, start, end, views=views)
        html_path, png_path = write_review(report, output)
        published = publish_review_artifact(report)
        stats = report.stats
        out.print(shown(f"review of {process}: {stats.cases} case(s), {stats.completed} completed; "
                        f"written {html_path} and {png_path}"
                        + ("; published as a Prefect artifact" if published else "")))

    report_app = typer.Typer(help="Reports for managers.", no_args_is_help=True)

    @report_app.command("weekly")
    @friendly
    def weekly(
        week: str | None = typer.Option(None, "--week", help="ISO week, e.g. 2025-W39 (default: last week)"),
        out_dir: Path = typer.Option(Path("."), "--out-dir", help="directory for the .md and .html files"),
    ) -> None:
        """Weekly complaint report: open, closed, overdue, escalated by owner, department, category, cause."""
        from analytics.weekly import PROCESSES, build_weekly, parse_week, previous_week, week_bounds
        from visualize.weekly import write_weekly

        zone = display_zone()
        engine = _engine()
        if week is None:
            year, number = previous_week(engine.clock.now(), ZoneInfo(zone))
        else:
            year, number = parse_week(week)
        label = f"{year}-W{number:02d}"
        _start, end = week_bounds(year, number, ZoneInfo(zone))
        events: list[Any] = []
        for process in PROCESSES:
            events.extend(engine.store.events(process_id=process, until=end))
        report = build_weekly(events, label, zone)
        md, html_path = write_weekly(report, out_dir)
        t = report.total
        out.print(shown(f"{label}: {t.open} open, {t.closed} closed, {t.overdue} overdue, {t.escalated} escalated; "
                        f"written {md} and {html_path}"))

    app.add_typer(report_app, name="report")

    def run_replay(policy_path: Path, output: Path) -> None:
        from simulation.replay import load_policy, replay_html, replay_rows
        from simulation.replay import replay as replay_policy

        policy = load_policy(policy_path)
        engine = _engine()
        graph = engine.library.get(policy.process)
        events = list(engine.store.events(process_id=policy.process))
        ended = {e.case_id for e in events if e.type in ("case_completed", "case_cancelled")}
        data = {case_id: engine.store.load_case(case_id)[0].data for case_id in ended}
        report = replay_policy(graph, events, data, policy)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(replay_html(report), encoding="utf-8")
        for name, clocks, before, after, change, esc_before, esc_after in replay_rows(report):
            out.print(shown(f"{name}: {clocks} clock(s); breach rate {before} → {after} ({change}); "
                            f"escalations {esc_before} → {esc_after}"))
        out.print(shown(f"{report.cases} closed case(s) replayed under '{policy.name}'; written {output}"))

    @app.command()
    @friendly
    def simulate(
        process: str | None = typer.Argument(None, help="a scenario YAML file, or a process id (default scenario); "
                                                        "not with --replay"),
        cases: int | None = typer.Option(None, "--cases", min=1, help="number of cases (default: the scenario's)"),
        arrivals: str | None = typer.Option(None, "--arrivals",
                                               help="RATE/UNIT: 5/bh per business hour, 40/wd per working day, "
                                                    "2/hour or 50/day around the clock"),
        durations: Path | None = typer.Option(None, "--durations", help="YAML of step durations (override)"),
        staff: Path | None = typer.Option(None, "--staff", help="YAML of people per role (override)"),
        seed: int | None = typer.Option(None, "--seed", help="random seed (default: the scenario's)"),
        compare: Path | None = typer.Option(None, "--compare", help="another scenario YAML to compare with"),
        output: Path = typer.Option(Path("simulation.html"), "--out", help="HTML report (PNG heatmaps next to it)"),
        replay: bool = typer.Option(False, "--replay", help="re-evaluate the store's closed cases under --policy "
                                                            "instead of simulating"),
        policy: Path | None = typer.Option(None, "--policy", help="with --replay: YAML of proposed SLA targets "
                                                                  "and calendar (see simulation/replay.py)"),
    ) -> None:
        """What-if simulation with the real interpreter on a virtual clock; same seed, same numbers.

        With --replay --policy FILE: how the store's closed cases would have fared under other SLA targets.
        """
        from simulation.report import write_comparison, write_simulation
        from simulation.scenario import parse_arrivals, scenario_for
        from simulation.simulator import Simulation

        if replay or policy is not None:
            if not (replay and policy is not None) or process is not None:
                raise InputError("a replay needs --replay and --policy FILE, and no scenario",
                                 hint="svcflow simulate --replay --policy policy.yaml [--out replay.html]")
            run_replay(policy, output if output != Path("simulation.html") else Path("replay.html"))
            return
        if process is None:
            raise InputError("name a scenario YAML file or a process id",
                             hint="svcflow simulate scenarios/complaint_as_is.yaml, or --replay --policy FILE")
        started = time.perf_counter()
        spec = parse_arrivals(arrivals) if arrivals else None
        base = scenario_for(process, durations=durations, staff=staff)
        first = Simulation(base, seed=seed, cases=cases, arrivals=spec).run()
        if compare is not None:
            other = scenario_for(str(compare), durations=durations, staff=staff)
            second = Simulation(other, seed=first.seed, cases=first.cases, arrivals=spec).run()
            paths: tuple[Path, ...] = write_comparison(first, second, output)
        else:
            paths = write_simulation(first, output)
        elapsed = time.perf_counter() - started
        for result in (first, *(([second]) if compare is not None else [])):
            stats = result.stats()
            median = stats.cycle_median_business_h
            out.print(shown(f"{result.scenario.name}: {stats.cases} case(s), {stats.completed} completed, cycle median "
                            f"{median:.1f} business h" if median is not None
                            else f"{result.scenario.name}: no case finished"))
        out.print(shown(f"written {', '.join(str(p) for p in paths)} in {elapsed:.1f} s"))

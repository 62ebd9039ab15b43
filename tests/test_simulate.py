"""What-if simulation: the real interpreter on a virtual clock, driven by scenario files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from engine.run.handlers import default_registry
from engine.definition.validation import validate_paths
from simulation.report import comparison_html, summarise, write_simulation
from simulation.scenario import (
    Distribution, Scenario, SimulationError, ValueGenerator, load_scenario, parse_arrivals, scenario_for,
)
from simulation.simulator import SimulationResult, simulate

ROOT = Path(__file__).resolve().parent.parent
AS_IS = ROOT / "scenarios" / "complaint_as_is.yaml"
TO_BE = ROOT / "scenarios" / "complaint_to_be.yaml"
CASES = 80


def numbers(result: SimulationResult) -> dict[str, Any]:
    summary = summarise(result)
    return {
        "events": len(result.events),
        "cycle": (summary.cycle_median_business_h, summary.cycle_p90_business_h),
        "breach": (summary.clock_rates, summary.task_breach_rate),
        "escalations": summary.escalations,
        "busy": {role: round(use.busy_h, 6) for role, use in result.roles.items()},
        "end": result.ended_at,
    }


@pytest.fixture(scope="module")
def as_is() -> SimulationResult:
    return simulate(load_scenario(AS_IS), cases=CASES, seed=11)


@pytest.fixture(scope="module")
def to_be() -> SimulationResult:
    return simulate(load_scenario(TO_BE), cases=CASES, seed=11)


def test_same_seed_gives_identical_numbers(as_is: SimulationResult) -> None:
    again = simulate(load_scenario(AS_IS), cases=CASES, seed=11)
    assert numbers(again) == numbers(as_is)
    assert [(e.case_id, e.seq, e.at, e.type) for e in again.events] == \
        [(e.case_id, e.seq, e.at, e.type) for e in as_is.events]


def test_another_seed_gives_other_numbers(as_is: SimulationResult) -> None:
    other = simulate(load_scenario(AS_IS), cases=CASES, seed=12)
    assert numbers(other) != numbers(as_is)


def test_every_case_is_driven_to_its_end(as_is: SimulationResult) -> None:
    stats = as_is.stats()
    assert (stats.cases, stats.completed, stats.incidents) == (CASES, CASES, 0)


def test_people_work_only_in_business_hours(as_is: SimulationResult) -> None:
    calendar = as_is.graph.calendar
    done = [e.at for e in as_is.events if e.type == "task_completed"]
    assert done
    assert all(calendar.next_working_instant(at) == at or _period_end(calendar, at) for at in done)


def _period_end(calendar: Any, at: Any) -> bool:
    """A task may finish exactly at the end of a working period (12:00, 18:00)."""
    local = at.astimezone(calendar.tz)
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    return calendar.is_working_day(local.date()) and any(seconds == end for _start, end in calendar.periods)


def test_sla_thresholds_fire_through_the_sweep(as_is: SimulationResult) -> None:
    kinds = {e.type for e in as_is.events}
    assert {"sla_warned", "escalated", "timer_fired"} <= kinds


def test_major_complaints_run_as_real_child_cases(as_is: SimulationResult) -> None:
    children = {e.case_id for e in as_is.events if e.process_id == "major_complaint"}
    finished = [e for e in as_is.events if e.type == "subprocess_completed"]
    assert as_is.child_cases == len(children) > 0
    assert len(finished) == len(children)


def test_auto_steps_run_the_registered_handlers(as_is: SimulationResult) -> None:
    outputs = [e.data["output"] for e in as_is.events if e.type == "step_completed" and e.node == "detect_major"]
    assert len(outputs) == CASES and all("is_major" in o for o in outputs)


def test_a_single_person_makes_tasks_queue() -> None:
    crowded = Scenario(definition="complaint_handling", cases=30, staff={"front_desk": 1}, unlisted_staff="unlimited",
                       arrivals=parse_arrivals("30/bh"), durations={"register": {"dist": "fixed", "value": "20m"}})
    result = simulate(crowded, seed=3)
    front = result.roles["front_desk"]
    assert front.staff == 1 and front.tasks == 30
    assert front.max_queue > 5 and (front.p90_wait_h or 0) > 1.0


def test_the_to_be_variant_shortens_cycle_time_and_breaches(as_is: SimulationResult, to_be: SimulationResult) -> None:
    a, b = summarise(as_is), summarise(to_be)
    assert b.cycle_median_business_h is not None and a.cycle_median_business_h is not None
    assert b.cycle_median_business_h < a.cycle_median_business_h
    assert b.escalations < a.escalations


def test_compare_report_shows_both_variants(as_is: SimulationResult, to_be: SimulationResult) -> None:
    page = comparison_html(as_is, to_be)
    assert 'id="comparison-table"' in page and 'id="comparison-roles-table"' in page
    assert "as-is" in page and "to-be" in page
    assert page.count('id="steps-table"') == 2


def test_simulation_report_adds_utilisation(as_is: SimulationResult, tmp_path: Path) -> None:
    html_path, png_path = write_simulation(as_is, tmp_path / "sim.html")
    page = html_path.read_text(encoding="utf-8")
    assert 'id="utilisation-table"' in page and 'id="heatmap"' in page and png_path.exists()


def test_to_be_definition_validates() -> None:
    assert validate_paths([ROOT / "scenarios" / "complaint_handling_to_be.yaml"], default_registry()) == []


def test_to_be_scenario_extends_the_as_is_one() -> None:
    base, variant = load_scenario(AS_IS), load_scenario(TO_BE)
    assert variant.arrivals == base.arrivals and variant.case_data == base.case_data
    assert variant.staff["front_desk"] == base.staff["front_desk"] + 1
    assert variant.staff["complaint_handler"] == base.staff["complaint_handler"]
    assert "resolve_at_desk" in variant.durations and "handle" in variant.durations


def test_override_files_replace_entries_by_name(tmp_path: Path) -> None:
    staff = tmp_path / "staff.yaml"
    staff.write_text("staff:\n  complaint_handler: 40\n", encoding="utf-8")
    durations = tmp_path / "durations.yaml"
    durations.write_text("handle: {dist: fixed, value: 1h}\n", encoding="utf-8")
    scenario = load_scenario(AS_IS, durations=durations, staff=staff)
    assert scenario.staff["complaint_handler"] == 40 and scenario.staff["front_desk"] == 2
    assert scenario.durations["handle"] == {"dist": "fixed", "value": "1h"}


def test_unknown_node_in_a_scenario_is_an_error() -> None:
    scenario = Scenario(definition="complaint_handling", durations={"handel": {"dist": "fixed", "value": "1h"}})
    with pytest.raises(SimulationError, match="no node 'handel'"):
        simulate(scenario, cases=1)


def test_unknown_form_field_in_outputs_is_an_error() -> None:
    scenario = Scenario(definition="complaint_handling", outputs={"handle": {"handoff_sales": {True: 1}}})
    with pytest.raises(SimulationError, match="no form field 'handoff_sales'"):
        simulate(scenario, cases=1)


def test_a_bare_process_id_gets_a_default_scenario() -> None:
    result = simulate(scenario_for("credit_rating_change"), cases=5, seed=1)
    assert result.stats().cases == 5


def test_lognormal_from_median_and_p90_has_that_median() -> None:
    dist = Distribution({"dist": "lognormal", "median": "1h", "p90": "4h"})
    rng = random.Random(5)
    draws = sorted(dist.sample(rng) for _ in range(20000))
    assert draws[10000] == pytest.approx(3600, rel=0.05)
    assert draws[18000] == pytest.approx(4 * 3600, rel=0.08)


def test_weighted_choices_follow_their_weights() -> None:
    generator = ValueGenerator({"yes": 3, "no": 1}, "test")
    rng = random.Random(9)
    draws = [generator.sample(rng) for _ in range(8000)]
    assert draws.count("yes") / len(draws) == pytest.approx(0.75, abs=0.02)


def test_arrivals_option_reads_rate_and_unit() -> None:
    assert (parse_arrivals("5/bh").rate, parse_arrivals("5/bh").per) == (5, "business_hour")
    assert parse_arrivals("40/wd").per == "working_day"
    with pytest.raises(SimulationError):
        parse_arrivals("often")


def test_simulate_command_writes_the_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from svcflow.cli import app

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "compare.html"
    result = CliRunner().invoke(app, ["simulate", str(AS_IS), "--cases", "15", "--seed", "4",
                                      "--compare", str(TO_BE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "as-is: 15 case(s)" in result.output and "to-be: 15 case(s)" in result.output
    assert 'id="comparison-table"' in out.read_text(encoding="utf-8")
    assert (tmp_path / "compare-as-is.png").exists() and (tmp_path / "compare-to-be.png").exists()


def test_simulate_command_reports_a_bad_scenario_without_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from svcflow.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("definition: complaint_handling\ndurations:\n  handel: {dist: fixed, value: 1h}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["simulate", str(bad), "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 1
    assert "no node 'handel'" in result.output and "Traceback" not in result.output

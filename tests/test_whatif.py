"""What-if that explains: the attribution table, staff that must be stated, every scenario error at once,
and the scenario file schema — on two tiny processes whose answers are known.

A (`whatif_a`): triage (30 min) → work (5 h) → end; the resolution clock (4 h) stops at `work`,
so every case breaches it.
B (`whatif_b`): simple cases go from triage to `quick` (10 min) instead, and the clock also stops at
`quick`: those clocks are met. So B's breach rate is the share of cases that are not simple; measured
like for like (clocks stopped where A's stop) it stays 100 %: the whole fall is the measuring point moving.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from simulation.report import attribute, attribution_rows, comparison_html
from simulation.scenario import Scenario, SimulationError, load_scenario, scenario_json_schema
from simulation.simulator import SimulationResult, simulate

ROOT = Path(__file__).resolve().parent.parent
HEAD = """
version: 1
lanes:
  - {id: clerk, name: {zh: 办事员, en: Clerk}}
data:
  simple: {type: boolean, default: false}
"""
A = f"""
id: whatif_a
name: {{zh: 现状, en: As is}}
{HEAD}
clocks:
  - {{id: resolution, name: {{zh: 解决时限, en: Resolution}}, stop_on: [work], policies: [{{target: 4h}}]}}
nodes:
  - {{id: start, kind: start}}
  - {{id: triage, kind: human, lane: clerk, name: {{zh: 分诊, en: Triage}}}}
  - {{id: work, kind: human, lane: clerk, name: {{zh: 处理, en: Work}}}}
  - {{id: end, kind: end}}
edges:
  - {{from: start, to: triage}}
  - {{from: triage, to: work}}
  - {{from: work, to: end}}
"""
B = f"""
id: whatif_b
name: {{zh: 优化, en: To be}}
{HEAD}
clocks:
  - {{id: resolution, name: {{zh: 解决时限, en: Resolution}}, stop_on: [work, quick], policies: [{{target: 4h}}]}}
nodes:
  - {{id: start, kind: start}}
  - {{id: triage, kind: human, lane: clerk, name: {{zh: 分诊, en: Triage}}}}
  - {{id: route, kind: exclusive}}
  - {{id: quick, kind: human, lane: clerk, name: {{zh: 当场解决, en: Resolve on the spot}}}}
  - {{id: work, kind: human, lane: clerk, name: {{zh: 处理, en: Work}}}}
  - {{id: end, kind: end}}
edges:
  - {{from: start, to: triage}}
  - {{from: triage, to: route}}
  - {{from: route, to: quick, when: data.simple}}
  - {{from: route, to: work, default: true}}
  - {{from: quick, to: end}}
  - {{from: work, to: end}}
"""
DURATIONS = {"triage": {"dist": "fixed", "value": "30m"}, "work": {"dist": "fixed", "value": "5h"},
             "quick": {"dist": "fixed", "value": "10m"}}


def scenario(tmp: Path, text: str, name: str, **extra: Any) -> Scenario:
    path = tmp / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    durations = {k: v for k, v in DURATIONS.items() if f"id: {k}," in text}
    fields: dict[str, Any] = {"definition": str(path), "name": name, "cases": 40, "seed": 4,
                              "arrivals": {"rate": 1, "per": "business_hour"},
                              "case_data": {"simple": {True: 1, False: 1}}, "durations": durations,
                              "staff": {"clerk": 12}}
    fields.update(extra)
    return Scenario.model_validate(fields)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, SimulationResult]:
    tmp = tmp_path_factory.mktemp("whatif")
    return simulate(scenario(tmp, A, "as-is")), simulate(scenario(tmp, B, "to-be"))


def simple_share(result: SimulationResult) -> float:
    starts = [e for e in result.events if e.type == "case_started" and e.process_id == "whatif_b"]
    return sum(1 for e in starts if e.data["data"].get("simple")) / len(starts)


def test_every_as_is_clock_breaches(runs: tuple[SimulationResult, SimulationResult]) -> None:
    clock = attribute(*runs).clocks[0]
    assert clock.rate_a == 1.0


def test_the_to_be_rate_falls_by_exactly_the_share_measured_at_the_new_point(
        runs: tuple[SimulationResult, SimulationResult]) -> None:
    share = simple_share(runs[1])
    assert 0.2 < share < 0.8  # both paths taken
    clock = attribute(*runs).clocks[0]
    assert clock.measuring_point_moved and clock.stops == (["work"], ["work", "quick"])
    assert clock.rate_b == pytest.approx(1 - share)
    assert clock.moved_share_b == pytest.approx(share)
    assert clock.measuring_point_pp == pytest.approx(-100 * share)


def test_like_for_like_the_rate_did_not_move(runs: tuple[SimulationResult, SimulationResult]) -> None:
    clock = attribute(*runs).clocks[0]
    assert clock.like_for_like_b == 1.0 and clock.rest_pp == pytest.approx(0.0)


def test_the_path_change_names_the_new_step_and_its_share(runs: tuple[SimulationResult, SimulationResult]) -> None:
    share = simple_share(runs[1])
    steps = {node: (a, b) for node, _name, a, b in attribute(*runs).steps}
    assert steps["quick"] == pytest.approx((0.0, share))
    assert steps["work"] == pytest.approx((1.0, 1 - share))
    assert "triage" not in steps  # every case still goes through it


def test_load_fell_for_the_clerks(runs: tuple[SimulationResult, SimulationResult]) -> None:
    (role, util_a, util_b, _wait_a, _wait_b), = attribute(*runs).roles
    assert role == "clerk" and util_a is not None and util_b is not None and util_b < util_a


def test_the_comparison_shows_the_attribution_table(runs: tuple[SimulationResult, SimulationResult]) -> None:
    page = comparison_html(*runs)
    assert 'id="attribution-table"' in page and "the measuring point moved" in page
    reasons = [row[1] for row in attribution_rows(attribute(*runs))]
    assert reasons == ["测量点变化 the measuring point moved", "路径变化 the path changed", "负荷变化 load changed"]


def test_case_by_case_the_whole_change_is_the_measuring_point(runs: tuple[SimulationResult, SimulationResult]) -> None:
    """Same customers in both runs: the simple ones (stopped at `quick`) went from breached to met, the others
    took the same human steps (triage, work) and breached in both."""
    share = simple_share(runs[1])
    split = attribute(*runs).splits["case:resolution"]
    assert split.cases == 40
    assert (split.measuring_point, split.path, split.load) == (-round(40 * share), 0, 0)
    assert split.pp(split.measuring_point) == pytest.approx(-100 * share)
    effects = [row[3] for row in attribution_rows(attribute(*runs))]
    assert effects == [f"{-100 * share:+.1f} pp", "+0.0 pp", "+0.0 pp"]


# -- staff ------------------------------------------------------------------------------------------------
def test_a_role_missing_from_the_staff_list_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match="no number of people for clerk"):
        simulate(scenario(tmp_path, A, "as-is", staff={}), cases=1)


def test_unlimited_staff_is_a_stated_assumption_in_the_report(tmp_path: Path) -> None:
    one = simulate(scenario(tmp_path, A, "as-is", staff={}, unlisted_staff="unlimited"), cases=3)
    other = simulate(scenario(tmp_path, A, "as-is-2", staff={"clerk": None}), cases=3)
    assert one.assumptions == ["roles without a staff number in the scenario, simulated with as many people as "
                               "needed (unlisted_staff: unlimited): clerk"]
    assert other.assumptions == ["roles declared unlimited (staff: null), never queueing: clerk"]
    assert "unlisted_staff: unlimited): clerk" in comparison_html(one, other)


def test_a_scenario_reports_all_its_errors_at_once(tmp_path: Path) -> None:
    bad = scenario(tmp_path, A, "as-is", staff={"clerk": 2, "cleark": 1},
                   durations={"wrok": {"dist": "fixed", "value": "1h"}, "work": {"dist": "gamma"}},
                   outputs={"triage": {"urgency": {"high": 1}}})
    with pytest.raises(SimulationError) as caught:
        simulate(bad, cases=1)
    message = caught.value.message
    assert "4 problems" in message
    for part in ("no node 'wrok'", "unknown distribution 'gamma'", "no form field 'urgency'", "no lane 'cleark'"):
        assert part in message


# -- the scenario file schema -------------------------------------------------------------------------------
def test_the_committed_scenario_schema_is_the_generated_one() -> None:
    committed = json.loads((ROOT / "schema" / "scenario.json").read_text(encoding="utf-8"))
    assert committed == scenario_json_schema(), "regenerate schema/scenario.json from scenario_json_schema()"


def test_every_scenario_property_has_a_description() -> None:
    schema = scenario_json_schema()
    objects = [("Scenario", schema), *schema.get("$defs", {}).items()]
    missing = [f"{name}.{prop}" for name, node in objects for prop, spec in node.get("properties", {}).items()
               if not spec.get("description")]
    assert missing == []


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate_against_the_schema(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if raw.get("id"):  # a variant process definition kept beside its scenario, not a scenario
        pytest.skip("a process definition")
    jsonschema.validate(json.loads(json.dumps(raw, default=str)), scenario_json_schema())


def test_the_schema_refuses_an_unknown_key() -> None:
    with pytest.raises(jsonschema.ValidationError, match="stafff"):
        jsonschema.validate({"definition": "complaint_handling", "stafff": {}}, scenario_json_schema())


def test_shipped_scenarios_load_and_list_every_role() -> None:
    for name in ("complaint_as_is.yaml", "complaint_to_be.yaml"):
        result = simulate(load_scenario(ROOT / "scenarios" / name), cases=2, seed=1)
        assert not any("without a staff number" in text for text in result.assumptions)


def test_when_only_the_staff_differs_the_whole_change_is_load(tmp_path: Path) -> None:
    """One clerk against twelve on the same process, 3.5 h of work a case against a 4 h clock: with twelve
    nobody waits and every clock is met; with one the queue makes clocks breach. Same paths, same
    measuring point: the whole change is load."""
    quick = {"triage": {"dist": "fixed", "value": "30m"}, "work": {"dist": "fixed", "value": "3h"}}
    crowded = simulate(scenario(tmp_path, A, "one-clerk", staff={"clerk": 1}, durations=quick))
    staffed = simulate(scenario(tmp_path, A, "twelve-clerks", staff={"clerk": 12}, durations=quick))
    att = attribute(crowded, staffed)
    (clock,) = att.clocks
    split = att.splits["case:resolution"]
    assert clock.rate_b == 0.0 and clock.rate_a is not None and clock.rate_a > 0.5
    assert (split.cases, split.measuring_point, split.path) == (40, 0, 0)
    assert split.load == -round(40 * clock.rate_a)
    (role, util_a, util_b, wait_a, wait_b), = att.roles
    assert role == "clerk" and util_a is not None and util_b is not None and util_a > util_b
    assert wait_a is not None and wait_b is not None and wait_a > wait_b

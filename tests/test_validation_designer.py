"""Designer warnings: definitions that run, but not the way their designer meant. Warned, never refused.

The sample definition of tests/test_validation.py declares `tier` (platinum, gold, silver,
standard: highest first), `accepted` (boolean), `amount` (number) and `large_amount: 5000`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.definition.library import DEFAULT_DIR, ProcessLibrary
from engine.definition.validation import validate_paths
from engine.errors import Problem
from tests.test_validation import (
    LINEAR_EDGES,
    HANDLERS,
    assert_clean,
    check,
    choice,
    line_of,
    only,
    process_yaml,
    write,
)


def warning(problems: list[Problem], code: str) -> Problem:
    problem = only(problems, code)
    assert problem.severity == "warning" and not problem.is_error
    assert [p for p in problems if p.is_error] == [], [str(p) for p in problems]
    return problem


# -- overlapping exclusive conditions --------------------------------------------------------------
def two_conditions_and_a_default(first: str, second: str) -> str:
    """The choice sample with both edges conditional and a third, default edge to `other`."""
    return choice(first, second).replace(
        "\n  - {from: decide, to: reject", "\n  - {from: decide, to: other, default: true}\n  - {from: decide, to: reject"
    ).replace("\n  - {id: reject, kind: end}", "\n  - {id: reject, kind: end}\n  - {id: other, kind: end}")


def test_enum_conditions_sharing_a_value_warn_that_file_order_decides(tmp_path: Path) -> None:
    text = two_conditions_and_a_default('data.tier in ["platinum", "gold"]', 'data.tier == "gold"')
    problem = warning(check(tmp_path, text), "overlapping_conditions")
    assert problem.node == "decide" and problem.line == line_of(text, 'data.tier == "gold"')
    assert 'when data.tier is "gold"' in problem.message
    assert "decide->approve" in problem.message and "decide->reject is never taken" in problem.message


def test_number_ranges_that_overlap_warn_with_a_value_of_the_overlap(tmp_path: Path) -> None:
    text = two_conditions_and_a_default("data.amount > params.large_amount", "data.amount > 1000")
    problem = warning(check(tmp_path, text), "overlapping_conditions")
    assert problem.line == line_of(text, "data.amount > 1000")
    assert "when data.amount is 5001" in problem.message


def test_disjoint_conditions_do_not_warn(tmp_path: Path) -> None:
    assert_clean(check(tmp_path, two_conditions_and_a_default("data.amount > 1000", "data.amount <= 1000")))
    assert_clean(check(tmp_path, choice("data.accepted", "!data.accepted")))
    assert_clean(check(tmp_path, choice('data.tier == "gold"', 'data.tier != "gold"')))


def test_overlap_on_an_inclusive_gateway_is_intended_and_does_not_warn(tmp_path: Path) -> None:
    text = choice("data.amount > 10", "data.amount > 100", default_no=True, kind="inclusive")
    assert "overlapping_conditions" not in {p.code for p in check(tmp_path, text)}


# -- SLA against the case clock --------------------------------------------------------------------
CLOCKED = """
clocks:
  - id: resolution
    stop_on: [done]
    policies: [{target: 4h}]
"""


def sla_nodes(sla: str) -> str:
    return f"""
        - {{id: start, kind: start}}
        - {{id: review, kind: human, lane: agent, sla: {sla}}}
        - {{id: done, kind: end}}
    """


def test_a_step_sla_longer_than_its_case_clock_warns(tmp_path: Path) -> None:
    text = process_yaml(nodes=sla_nodes("{target: 1d}"), extra=CLOCKED)
    problem = warning(check(tmp_path, text), "sla_exceeds_clock")
    assert problem.node == "review" and problem.line == line_of(text, "target: 1d")
    assert "(1d) is longer than the case clock 'resolution' (4h)" in problem.message
    assert_clean(check(tmp_path, text.replace("target: 1d", "target: 2h")))


def test_a_step_after_the_clock_stopped_is_not_compared_with_it(tmp_path: Path) -> None:
    text = process_yaml(nodes=sla_nodes("{target: 1d}"), extra=CLOCKED.replace("stop_on: [done]",
                                                                                "stop_on: [start]"))
    assert_clean(check(tmp_path, text))


# -- tiers ----------------------------------------------------------------------------------------
def test_a_higher_tier_with_a_longer_target_than_a_lower_one_warns(tmp_path: Path) -> None:
    sla = ('{policies: [{when: \'data.tier == "platinum"\', target: 8h}, '
           '{when: \'data.tier in ["gold", "silver"]\', target: 4h}, {target: 1d}]}')
    text = process_yaml(nodes=sla_nodes(sla))
    problem = warning(check(tmp_path, text), "tier_order")
    assert "gives platinum 8h but the lower tier gold 4h" in problem.message
    assert problem.line == line_of(text, "target: 8h")
    assert_clean(check(tmp_path, text.replace("target: 8h", "target: 2h")))


# -- escalation to the own lane --------------------------------------------------------------------
def test_reassigning_a_task_to_its_own_lane_warns(tmp_path: Path) -> None:
    text = process_yaml(nodes=sla_nodes("{target: 4h, escalation: [{at: 100, reassign: agent}]}"))
    problem = warning(check(tmp_path, text), "escalates_to_own_lane")
    assert "reassigns 'review' to 'agent', the lane it is already in" in problem.message
    assert_clean(check(tmp_path, text.replace("reassign: agent", "reassign: supervisor")))


def test_a_breach_that_only_tells_the_own_lane_warns_but_a_reminder_does_not(tmp_path: Path) -> None:
    text = process_yaml(nodes=sla_nodes("{target: 4h, escalation: [{at: 50, notify: [agent]}, "
                                        "{at: 100, notify: [agent]}]}"))
    problem = warning(check(tmp_path, text), "escalates_to_own_lane")
    assert "past the target (100%)" in problem.message
    assert_clean(check(tmp_path, text.replace("{at: 100, notify: [agent]}", "{at: 100, notify: [supervisor]}")))


def test_a_definition_with_warnings_still_loads_and_runs(tmp_path: Path) -> None:
    text = process_yaml(nodes=sla_nodes("{target: 4h, escalation: [{at: 100, reassign: agent}]}"),
                        edges=LINEAR_EDGES)
    library, problems = ProcessLibrary.load([write(tmp_path, text)])
    assert problems == []
    library.require_valid(HANDLERS)  # does not raise: warnings are not refusals


@pytest.fixture(scope="module")
def library_problems() -> list[Problem]:
    return validate_paths([DEFAULT_DIR], HANDLERS)


@pytest.mark.parametrize("code", ["overlapping_conditions", "sla_exceeds_clock", "tier_order",
                                  "escalates_to_own_lane"])
def test_the_library_has_no_designer_warning(code: str, library_problems: list[Problem]) -> None:
    assert [str(p) for p in library_problems if p.code == code] == []

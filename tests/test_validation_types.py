"""Types in expressions: an operand that can never fit its declared field is refused before a case runs.

The sample header declares `tier` (enum platinum/gold/silver/standard), `accepted` (boolean),
`amount` (number) and the parameter `large_amount: 5000`. Each test writes one mistake and
checks the located problem, exactly as `svcflow validate FILE` reports it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.definition.validation import validate_paths
from engine.expressions.cel import compile_expression
from engine.expressions.static import Atom, condition_atoms
from tests.test_validation import (
    LINEAR_EDGES,
    LINEAR_NODES,
    HANDLERS,
    assert_clean,
    caller,
    check,
    choice,
    line_of,
    only,
    process_yaml,
    write,
)


def test_a_number_field_compared_with_a_string_is_a_type_mismatch(tmp_path: Path) -> None:
    text = choice('data.amount == "5000"', None, default_no=True)
    problem = only(check(tmp_path, text), "type_mismatch")
    assert problem.node == "decide"
    assert problem.line == line_of(text, 'data.amount == "5000"')
    assert 'data.amount (declared number) is compared with "5000", a string' in problem.message
    assert problem.hint is not None and "without quotes" in problem.hint


def test_an_enum_field_ordered_against_a_number_is_a_type_mismatch(tmp_path: Path) -> None:
    problem = only(check(tmp_path, choice("data.tier > 2", None, default_no=True)), "type_mismatch")
    assert "data.tier (declared enum) is ordered against 2, a number" in problem.message


def test_a_field_compared_with_a_parameter_of_another_type_is_a_type_mismatch(tmp_path: Path) -> None:
    assert_clean(check(tmp_path, choice("data.amount > params.large_amount", None, default_no=True)))
    problem = only(check(tmp_path, choice("data.tier == params.large_amount", None, default_no=True)),
                   "type_mismatch")
    assert "params.large_amount (a number)" in problem.message


def test_a_condition_that_gives_no_boolean_is_a_type_mismatch(tmp_path: Path) -> None:
    problem = only(check(tmp_path, choice("data.amount + 1", None, default_no=True)), "type_mismatch")
    assert "a condition must be true or false" in problem.message and "gives a number" in problem.message


def test_an_enum_field_used_as_a_boolean_operand_is_a_type_mismatch(tmp_path: Path) -> None:
    problem = only(check(tmp_path, choice("data.tier && data.accepted", None, default_no=True)), "type_mismatch")
    assert "`&&` needs true/false, but data.tier (declared enum) is not" in problem.message
    assert problem.hint is not None and 'data.tier == "platinum"' in problem.hint


def test_an_enum_value_that_is_not_a_choice_is_found_inside_a_longer_condition(tmp_path: Path) -> None:
    problem = only(check(tmp_path, choice('data.accepted && data.tier == "golden"', None, default_no=True)),
                   "unknown_choice")
    assert 'data.tier is never "golden"' in problem.message
    assert problem.hint == "did you mean 'gold'?"


def test_an_enum_value_in_a_list_that_is_not_a_choice_is_reported(tmp_path: Path) -> None:
    problem = only(check(tmp_path, choice('data.tier in ["gold", "bronze"]', None, default_no=True)),
                   "unknown_choice")
    assert 'data.tier is never "bronze"' in problem.message


def test_a_boolean_field_compared_with_a_number_is_an_unknown_choice(tmp_path: Path) -> None:
    problem = only(check(tmp_path, choice("data.accepted == 1", None, default_no=True)), "unknown_choice")
    assert problem.message == "data.accepted is never 1 (allowed: true, false)"


def test_a_computed_value_of_the_wrong_type_for_its_declared_field_is_reported(tmp_path: Path) -> None:
    nodes = LINEAR_NODES.replace("lane: agent}", "lane: agent, compute: {amount: 'data.tier'}}")
    text = process_yaml(nodes=nodes)
    problem = only(check(tmp_path, text), "type_mismatch")
    assert problem.node == "review"
    assert "data.amount is declared number, but `data.tier` gives a string" in problem.message


def test_a_computed_enum_value_must_be_one_of_its_choices(tmp_path: Path) -> None:
    nodes = LINEAR_NODES.replace("lane: agent}", """lane: agent, compute: {tier: '"diamond"'}}""")
    problem = only(check(tmp_path, process_yaml(nodes=nodes)), "unknown_choice")
    assert 'data.tier is never "diamond"' in problem.message


def test_a_case_priority_outside_the_priorities_is_reported(tmp_path: Path) -> None:
    text = process_yaml(extra="""case_priority: 'data.accepted ? "urgent" : "highest"'\n""")
    assert_clean(check(tmp_path, text.replace('"highest"', '"normal"')))
    problem = only(check(tmp_path, process_yaml(extra="case_priority: '\"highest\"'\n")), "unknown_choice")
    assert problem.line == line_of(process_yaml(extra="case_priority: '\"highest\"'\n"), "case_priority")


def test_a_sub_process_input_of_the_wrong_type_for_the_child_field_is_reported(tmp_path: Path) -> None:
    write(tmp_path, process_yaml(process_id="refund_approval"), "refund_approval")
    assert_clean(check(tmp_path, caller("refund_approval", inputs="{amount: data.amount}")))
    text = caller("refund_approval", inputs="{amount: data.tier}")
    problem = only(check(tmp_path, text), "type_mismatch")
    assert problem.node == "approval"
    assert "the input amount (data.amount of 'refund_approval') is declared number, but `data.tier` gives a string" \
        in problem.message


def test_string_methods_on_a_number_field_are_reported(tmp_path: Path) -> None:
    problem = only(check(tmp_path, choice('data.amount.contains("5")', None, default_no=True)), "type_mismatch")
    assert ".contains() works on text" in problem.message


@pytest.mark.parametrize("condition", [
    "has(data.amount) && data.amount > 10",
    'data.tier in ["platinum", "gold"] || data.amount >= params.large_amount * 2',
    "data.amount == null || data.accepted",
    "[1, 2].exists(x, x == data.amount)",
    'timestamp(case.started_at) + duration("1h") < timestamp("2030-01-01T00:00:00Z")',
    "steps.review.anything == 3",
])
def test_well_typed_conditions_are_clean(tmp_path: Path, condition: str) -> None:
    assert_clean(check(tmp_path, choice(condition, None, default_no=True)))


def test_the_library_is_well_typed() -> None:
    from engine.definition.library import DEFAULT_DIR
    assert [p for p in validate_paths([DEFAULT_DIR], None) if p.code in {"type_mismatch", "unknown_choice"}] == []


# -- one CEL reader: conditions as atoms come from the parsed tree --------------------------------
def test_atoms_are_read_from_the_parsed_tree_through_parentheses_and_escapes() -> None:
    atoms = condition_atoms(compile_expression(r'((data.tier == "gol\"d")) || !(data.ok) || 3 != data.n'))
    assert atoms == [Atom("tier", frozenset({("str", 'gol"d')}), False), Atom("ok", frozenset({("bool", True)}), True),
                     Atom("n", frozenset({("num", 3.0)}), True)]


def test_a_condition_that_is_not_plain_tests_of_one_field_has_no_atoms() -> None:
    assert condition_atoms(compile_expression("data.a == data.b")) is None
    assert condition_atoms(compile_expression("data.a > 3 || data.b")) is None
    assert condition_atoms(compile_expression("data.a == null")) is None


def test_parenthesised_boolean_conditions_are_proven_complete(tmp_path: Path) -> None:
    assert_clean(check(tmp_path, choice("(data.accepted)", "(!data.accepted)")))
    assert_clean(validate_paths([write(tmp_path, process_yaml(edges=LINEAR_EDGES))], HANDLERS))


def test_a_timestamp_computed_into_a_datetime_field_fits(tmp_path: Path) -> None:
    text = process_yaml(nodes=LINEAR_NODES.replace(
        "lane: agent}", """lane: agent, compute: {due: 'timestamp(case.started_at) + duration("48h")'}}"""))
    text = text.replace("  amount: {type: number}\n", "  amount: {type: number}\n  due: {type: datetime}\n")
    assert_clean(check(tmp_path, text))

"""Behaviour of CEL expressions as process designers and the engine meet them."""

from __future__ import annotations

import datetime
import pickle
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from engine.expressions.cel import (
    ROOT_NAMES,
    Expression,
    ExpressionError,
    compile_expression,
)

SCOPE: dict[str, Any] = {
    "data": {
        "tier": "gold",
        "compensation_claim": 7000.5,
        "reply_rounds": 2,
        "customer_name": "Zhang San",
        "ticket_id": "CS-2024-0042",
        "opened_at": "2024-05-01T10:00:00+08:00",
        "items": [{"sku": "A1", "amount": 5}, {"sku": "B2", "amount": 50}],
        "vip": True,
    },
    "steps": {"classify": {"category": "billing", "confidence": 0.92}},
    "params": {"claim_threshold": 5000},
    "case": {"priority": "high", "tier": "gold"},
}


def evaluate(text: str, scope: dict[str, Any] | None = None) -> Any:
    return compile_expression(text).evaluate(SCOPE if scope is None else scope)


def test_root_names_are_the_four_scope_variables() -> None:
    assert {"data", "steps", "params", "case"} == ROOT_NAMES


def test_comparison_of_field_with_number() -> None:
    assert evaluate("data.compensation_claim > 5000") is True
    assert evaluate("data.reply_rounds >= 3") is False


def test_comparison_of_fields_across_roots() -> None:
    assert evaluate("data.compensation_claim > params.claim_threshold") is True


def test_in_list_matches_a_member() -> None:
    assert evaluate('data.tier in ["platinum", "gold"]') is True
    assert evaluate('case.priority in ["low", "normal"]') is False


def test_logical_operators_combine_conditions() -> None:
    text = 'data.tier in ["platinum", "gold"] && data.compensation_claim > 5000'
    assert evaluate(text) is True
    assert evaluate('data.tier == "silver" || !data.vip') is False


def test_ternary_chooses_a_value() -> None:
    assert evaluate('data.vip ? "fast_lane" : "normal"') == "fast_lane"


def test_string_functions_startswith_contains_size() -> None:
    assert evaluate('data.ticket_id.startsWith("CS-")') is True
    assert evaluate('data.customer_name.contains("San")') is True
    assert evaluate("size(data.customer_name) == 9") is True
    assert evaluate("size(data.items) == 2") is True


def test_list_macro_sees_item_fields() -> None:
    assert evaluate("data.items.exists(item, item.amount > 10)") is True
    assert evaluate("data.items.map(item, item.sku)") == ["A1", "B2"]


def test_missing_field_on_a_list_item_names_the_field() -> None:
    with pytest.raises(ExpressionError, match="field 'discount' is not set"):
        evaluate("data.items.all(item, item.discount > 1)")


def test_type_names_can_be_compared() -> None:
    assert evaluate("type(data.compensation_claim) == double") is True
    assert compile_expression("type(data.tier) == string").references == {("data", "tier")}


def test_has_tells_whether_an_optional_field_is_set() -> None:
    assert evaluate("has(data.tier)") is True
    assert evaluate("has(data.refund_amount)") is False


def test_has_guard_protects_an_optional_field() -> None:
    assert evaluate("has(data.refund_amount) && data.refund_amount > 100") is False


def test_negated_has_selects_cases_without_the_field() -> None:
    assert evaluate("!has(data.refund_amount)") is True


def test_has_inside_list_macro_checks_each_item() -> None:
    assert evaluate("data.items.all(item, has(item.sku))") is True
    assert evaluate("data.items.all(item, has(item.discount))") is False


def test_arithmetic_computes_an_integer_value() -> None:
    result = evaluate("data.reply_rounds + 1")
    assert result == 3 and type(result) is int


def test_integer_division_truncates() -> None:
    assert evaluate("7 / 2") == 3


@pytest.mark.parametrize("amount", [7000, 7000.5])
def test_number_field_compares_with_int_literal_whether_int_or_float(amount: float) -> None:
    assert evaluate("data.amount > 5000", {"data": {"amount": amount}}) is True


@pytest.mark.parametrize("amount", [7000, 7000.5])
def test_number_field_compares_with_double_literal_whether_int_or_float(
    amount: float,
) -> None:
    assert evaluate("data.amount > 5000.5", {"data": {"amount": amount}}) is True


def test_int_equals_double_of_same_value() -> None:
    assert evaluate("data.amount == 7000.0", {"data": {"amount": 7000}}) is True


def test_in_list_matches_numbers_across_int_and_double() -> None:
    assert evaluate("data.amount in [100, 7000]", {"data": {"amount": 7000.0}}) is True


def test_mixed_int_and_double_arithmetic_gives_double() -> None:
    result = evaluate("data.reply_rounds * 1.5")
    assert result == 3.0 and type(result) is float


def test_null_compares_unequal_to_a_number() -> None:
    assert evaluate("data.reply_rounds != null") is True
    assert evaluate("data.assignee == null", {"data": {"assignee": None}}) is True


def test_iso_datetime_strings_compare_as_timestamps() -> None:
    text = 'timestamp(data.opened_at) < timestamp("2024-05-01T03:00:00Z")'
    assert evaluate(text) is True


def test_datetime_in_scope_becomes_timestamp_and_comes_back_as_datetime() -> None:
    started = datetime.datetime(2024, 5, 1, 9, 0, tzinfo=datetime.UTC)
    result = evaluate('case.started_at + duration("2h")', {"case": {"started_at": started}})
    assert result == started + datetime.timedelta(hours=2)
    assert type(result) is datetime.datetime


def test_results_are_plain_python_values() -> None:
    result = evaluate('{"tier": data.tier, "rounds": [data.reply_rounds], "vip": data.vip}')
    assert result == {"tier": "gold", "rounds": [2], "vip": True}
    assert type(result) is dict
    assert type(next(iter(result))) is str
    assert type(result["tier"]) is str
    assert type(result["rounds"]) is list and type(result["rounds"][0]) is int
    assert type(result["vip"]) is bool


def test_syntax_error_reports_the_column() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("data.tier in [ && 1")
    assert caught.value.column == 16
    assert caught.value.expression == "data.tier in [ && 1"
    assert "column 16" in str(caught.value)


def test_syntax_error_hints_at_python_habits() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("data.vip and data.tier")
    assert caught.value.column == 10
    assert "&&" in str(caught.value)


def test_syntax_error_message_is_one_line() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("data.vip &&\n   ")
    assert "\n" not in str(caught.value)
    assert "ends unexpectedly" in caught.value.message


def test_empty_expression_is_rejected() -> None:
    with pytest.raises(ExpressionError, match="empty"):
        compile_expression("   ")


def test_non_text_expression_is_rejected_with_a_yaml_hint() -> None:
    with pytest.raises(ExpressionError, match="quote"):
        compile_expression(True)  # YAML turns an unquoted `true` into a bool


def test_references_list_dotted_field_paths() -> None:
    expression = compile_expression(
        'data.tier in ["platinum", "gold"] && steps.classify.category == "billing"'
        ' && data["compensation_claim"] > 5000'
    )
    assert expression.references == {
        ("data", "tier"),
        ("steps", "classify", "category"),
        ("data", "compensation_claim"),
    }


def test_references_exclude_macro_variables() -> None:
    expression = compile_expression("data.items.exists(item, item.amount > params.floor)")
    assert expression.references == {("data", "items"), ("params", "floor")}


def test_unknown_root_name_appears_in_references() -> None:
    expression = compile_expression("customer.tier == 'gold' && data.vip")
    assert ("customer", "tier") in expression.references
    assert expression.unknown_names == {"customer"}


def test_unknown_root_name_refuses_to_evaluate() -> None:
    with pytest.raises(ExpressionError, match="unknown name 'customer'"):
        evaluate("customer.tier == 'gold'")


def test_missing_field_error_names_the_field() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("data.refund_amount > 100")
    assert "field data.refund_amount is not set" in str(caught.value)
    assert "has(" in str(caught.value)
    assert caught.value.expression == "data.refund_amount > 100"


def test_missing_step_output_error_names_the_step() -> None:
    with pytest.raises(ExpressionError, match=r"field steps\.review is not set"):
        evaluate('steps.review.decision == "approve"')


def test_root_missing_from_scope_reads_as_empty() -> None:
    with pytest.raises(ExpressionError, match=r"field params\.floor is not set"):
        evaluate("params.floor > 1", {"data": {}})


def test_non_bool_condition_is_an_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("data.reply_rounds + 1").evaluate_bool(SCOPE)
    assert "true or false" in caught.value.message
    assert "int" in caught.value.message


def test_bool_condition_returns_bool() -> None:
    assert compile_expression("data.vip").evaluate_bool(SCOPE) is True


def test_evaluation_error_carries_the_expression() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("data.reply_rounds / 0")
    assert "division by zero" in caught.value.message
    assert caught.value.expression == "data.reply_rounds / 0"


def test_type_mismatch_is_an_error_with_a_hint() -> None:
    with pytest.raises(ExpressionError, match="string"):
        evaluate("data.tier + 1")


@pytest.mark.parametrize(
    "text",
    [
        '__import__("os").system("true")',
        "data.__class__",
        '"".__class__',
        "data.items.exists(__builtins__, true)",
        'eval("1")',
        "class.x",
    ],
)
def test_python_internals_are_unreachable(text: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(text).evaluate(SCOPE)


def test_unknown_function_is_rejected_at_compile_time() -> None:
    with pytest.raises(ExpressionError, match="unknown function 'lower'") as caught:
        compile_expression("data.tier.lower()")
    assert caught.value.column is not None


def test_compile_is_cached_and_returns_the_same_object() -> None:
    assert compile_expression("data.vip && true") is compile_expression("data.vip && true")


def test_expression_pickles_back_to_the_cached_object() -> None:
    expression = compile_expression("data.reply_rounds > 1")
    assert pickle.loads(pickle.dumps(expression)) is expression


def test_expression_error_survives_pickling() -> None:
    error = ExpressionError("a >", "syntax error", column=4, hint="finish it")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.expression, copy.message, copy.column, str(copy)) == (
        error.expression,
        error.message,
        error.column,
        str(error),
    )


def test_expressions_with_equal_text_are_equal() -> None:
    assert Expression("data.vip") == compile_expression("data.vip")


def test_fields_the_expression_cannot_reach_are_not_converted() -> None:
    scope = {"data": {"tier": "gold", "attachment": object()}}
    assert evaluate('data.tier == "gold"', scope) is True


def test_unsupported_value_in_a_read_field_is_an_error() -> None:
    with pytest.raises(ExpressionError, match=r"data\.attachment holds a object"):
        evaluate("has(data.attachment.name)", {"data": {"attachment": object()}})


def test_other_celpy_users_do_not_break_compilation() -> None:
    import celpy
    from celpy.celparser import CELParser

    from engine.expressions import cel as expressions

    saved = CELParser.CEL_PARSER
    try:
        CELParser.CEL_PARSER = None
        environment = celpy.Environment()  # claims celpy's shared parser with plain trees
        expressions._parser.cache_clear()
        assert Expression("data.reply_rounds == 2").evaluate(SCOPE) is True
        program = environment.program(environment.compile("1 + 1"))
        assert program.evaluate({}) == 2
    finally:
        CELParser.CEL_PARSER = saved
        expressions._parser.cache_clear()


def test_concurrent_evaluations_see_their_own_scope() -> None:
    expression = compile_expression("data.reply_rounds * 2")

    def double(rounds: int) -> Any:
        return expression.evaluate({"data": {"reply_rounds": rounds}})

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(double, range(2000))) == [2 * n for n in range(2000)]


def test_typical_condition_takes_the_fast_path_and_agrees_with_celpy() -> None:
    # Its speed is measured against plain celpy by bench/bench_expressions.py, not here.
    expression = compile_expression(
        'data.tier in ["platinum", "gold"] && data.compensation_claim > 5000'
    )
    assert expression._fast is not None
    for tier, claim, expected in (("gold", 6000, True), ("gold", 5000, False), ("silver", 9000.5, False)):
        scope = {"data": {"tier": tier, "compensation_claim": claim}}
        assert expression.evaluate_bool(scope) is expected
        assert expression.evaluate_general(scope) is expected

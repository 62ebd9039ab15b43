"""The fast CEL path must give exactly the general (celpy) path's answers.

The fast path may only decline (raise Fallback); whenever it answers, the answer must equal the
general path's, with the same type. Checked on generated expressions over scopes holding every
kind of value the engine meets, and on every expression of the shipped process library.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from engine.expressions.fastpath import Fallback
from engine.expressions.cel import ExpressionError, compile_expression
from engine.definition.library import ProcessLibrary

_VALUES: list[Any] = [0, 1, -3, 7, 2**62, 2**63, -(2**63), -(2**63) - 1, 0.0, 2.5, -1.5, 1e300, "", "gold",
                      "platinum", "a", "Ab", True, False, None, ["gold", "silver"], [1, 2.0, 3], ["x", 1],
                      [], {"k": 1, "gold": "x"}, {}, [{"k": 1}]]
_FIELDS = ["a", "b", "c", "d", "e", "missing"]
_LITERALS = ["0", "1", "-2", "3.5", "0.0", '"gold"', '"a"', "''", "true", "false", "null", "0x10",
             '["gold", "platinum"]', "[1, 2, 3.0]", "[]"]


def _scope(rng: random.Random) -> dict[str, Any]:
    data = {name: rng.choice(_VALUES) for name in _FIELDS[:-1] if rng.random() < 0.9}
    data["m"] = {"k": rng.choice(_VALUES)} if rng.random() < 0.8 else rng.choice(_VALUES)
    return {"data": data, "params": {"p": rng.choice(_VALUES)}, "steps": {"s": {"out": rng.choice(_VALUES)}},
            "case": {"priority": rng.choice(["normal", "high"]), "tier": "gold"}}


def _operand(rng: random.Random, depth: int) -> str:
    roll = rng.random()
    if depth <= 0 or roll < 0.45:
        pick = rng.random()
        if pick < 0.45:
            return f"data.{rng.choice(_FIELDS)}"
        if pick < 0.55:
            return rng.choice(["data.m.k", 'data.m["k"]', "data.a[0]", "params.p", "steps.s.out", "case.priority",
                               "params.missing", "steps.t.out"])
        return rng.choice(_LITERALS)
    return _expression(rng, depth - 1)


def _expression(rng: random.Random, depth: int) -> str:
    a, b = _operand(rng, depth), _operand(rng, depth)
    form = rng.randrange(12)
    if form == 0:
        return f"({a} {rng.choice(['==', '!=', '<', '<=', '>', '>='])} {b})"
    if form == 1:
        return f"({a} in {b})"
    if form == 2:
        return f"({a} {rng.choice(['&&', '||'])} {b})"
    if form == 3:
        return f"!({a})"
    if form == 4:
        return f"({a} ? {b} : {_operand(rng, depth)})"
    if form == 5:
        return f"({a} {rng.choice(['+', '-', '*', '/', '%'])} {b})"
    if form == 6:
        return f"-({a})"
    if form == 7:
        return f"has(data.{rng.choice(_FIELDS)})"
    if form == 8:
        return f"size({a})"
    if form == 9:
        return f"{a}.{rng.choice(['contains', 'startsWith', 'endsWith'])}({b})"
    if form == 10:
        return f"({a} == {b})"
    return f"({a} < {b} || {b} in [{a}, 1, \"gold\"])"


def _general(expression: Any, scope: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", expression.evaluate_general(scope)
    except ExpressionError as error:
        return "error", str(error)


def test_fast_path_answers_exactly_as_the_general_path_on_generated_expressions() -> None:
    rng = random.Random(20261123)
    answered = declined = 0
    for _ in range(1500):
        text = _expression(rng, 3)
        try:
            expression = compile_expression(text)
        except ExpressionError:
            continue
        if expression._fast is None:
            continue
        for _ in range(6):
            scope = _scope(rng)
            general = _general(expression, scope)
            try:
                fast = expression._fast(scope)
            except Fallback:
                declined += 1
            else:
                answered += 1
                assert general == ("value", fast), f"{text} on {scope}: fast {fast!r}, general {general!r}"
                assert type(fast) is type(general[1]), f"{text}: {type(fast)} vs {type(general[1])}"
            try:
                overall: tuple[str, Any] = ("value", expression.evaluate(scope))
            except ExpressionError as error:
                overall = ("error", str(error))
            assert overall == general, text
    # the generator must exercise both outcomes, or this test proves nothing
    assert answered > 1000 and declined > 1000, (answered, declined)


@pytest.mark.parametrize("text, scope, expected", [
    ('data.tier in ["platinum", "gold"] ? "high" : "normal"', {"data": {"tier": "gold"}}, "high"),
    ("data.amount > params.limit", {"data": {"amount": 7000}, "params": {"limit": 5000.5}}, True),
    ("data.rounds + 1", {"data": {"rounds": 2}}, 3),
    ("data.rounds + 0.5", {"data": {"rounds": 2}}, 2.5),
    ("7 / 2", {}, 3),
    ("false && data.missing > 1", {"data": {}}, False),
    ("true || data.missing > 1", {"data": {}}, True),
    ("has(data.note) && data.note.contains('lawyer')", {"data": {"note": "my lawyer says"}}, True),
    ("data.x == null", {"data": {"x": None}}, True),
    ("size(data.items) > 1", {"data": {"items": [1, 2]}}, True),
])
def test_fast_path_evaluates_the_everyday_forms(text: str, scope: dict[str, Any], expected: Any) -> None:
    expression = compile_expression(text)
    assert expression._fast is not None
    value = expression._fast(scope)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text, scope", [
    ("data.missing > 1", {"data": {}}),  # not set: the general path words the error
    ('data.tier == 1', {"data": {"tier": "gold"}}),  # type mismatch
    ("data.n + 1", {"data": {"n": 2**63 - 1}}),  # int64 overflow
    ("data.n / 0", {"data": {"n": 1}}),
    ("-7 / 2", {}),  # negative int division: CEL truncates, the general path knows how
    ("data.items", {"data": {"items": [1]}}),  # a list result is copied out by the general path
])
def test_fast_path_declines_what_is_not_plain(text: str, scope: dict[str, Any]) -> None:
    expression = compile_expression(text)
    assert expression._fast is not None
    with pytest.raises(Fallback):
        expression._fast(scope)


@pytest.mark.parametrize("text", [
    "data.items.exists(i, i > 1)", "timestamp(data.at) < timestamp(case.started_at)", 'b"x" == b"x"',
    "1u == 1u", '{"a": 1}.a == 1', "unknown.x == 1", "int(data.x) == 1",
])
def test_expressions_beyond_the_subset_get_no_fast_program(text: str) -> None:
    assert compile_expression(text)._fast is None


def test_every_expression_of_the_process_library_has_a_fast_program() -> None:
    """The shipped processes stay on the fast path; a new one that leaves it should say why."""
    texts: set[str] = set()
    library = ProcessLibrary.from_dir()
    for process_id in library.process_ids():
        definition = library.get(process_id).definition
        texts.update(_expression_texts(definition.model_dump()))
    assert len(texts) > 50
    slow = sorted(text for text in texts if compile_expression(text)._fast is None)
    assert slow == []


def _expression_texts(value: Any, key: str | None = None) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for name, item in value.items():
            if name in ("when", "case_priority", "until") and isinstance(item, str):
                found.append(item)
            elif name in ("compute", "inputs", "outputs") and isinstance(item, dict):
                found.extend(text for text in item.values() if isinstance(text, str))
            else:
                found.extend(_expression_texts(item, name))
    elif isinstance(value, list):
        for item in value:
            found.extend(_expression_texts(item, key))
    return found

"""Checking and coercing input against typed fields (case data, task forms, message payloads).

One function serves the CLI's `--set key=value` strings, JSON files and the Prefect resume
form alike, so every entry point refuses the same bad input with the same message.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from engine.definition.model import FieldSpec
from engine.errors import InputError
from engine.messages import PROBLEM_SEPARATOR, say

_TRUE = {"true", "yes", "1", "y", "是"}
_FALSE = {"false", "no", "0", "n", "否"}


def coerce(name: str, spec: FieldSpec, value: Any) -> Any:
    """Return the value in the field's type, or raise ValueError saying what was expected."""
    kind = spec.type
    if value is None:
        return None
    if kind in ("string", "text"):
        if isinstance(value, (dict, list)):
            raise ValueError(say("expected_text"))
        return str(value)
    if kind == "enum":
        text = str(value)
        if spec.choices and text not in spec.choices:
            raise ValueError(say("expected_choice", choices=", ".join(spec.choices), value=repr(text)))
        return text
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(say("expected_boolean", value=repr(value)))
    if kind in ("integer", "number"):
        if isinstance(value, bool):
            raise ValueError(say("expected_number", value=repr(value)))
        try:
            number: int | float
            if kind == "integer":
                number = int(value) if not isinstance(value, float) or value.is_integer() else _fail(value)
            else:
                number = float(value) if not isinstance(value, int) else value
        except (TypeError, ValueError):
            raise ValueError(say("expected_integer" if kind == "integer" else "expected_number",
                                 value=repr(value))) from None
        if spec.minimum is not None and number < spec.minimum:
            raise ValueError(say("at_least", minimum=f"{spec.minimum:g}", value=number))
        if spec.maximum is not None and number > spec.maximum:
            raise ValueError(say("at_most", maximum=f"{spec.maximum:g}", value=number))
        return number
    if kind == "date":
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise ValueError(say("expected_date", value=repr(value))) from None
    if kind == "datetime":
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(say("expected_datetime", value=repr(value))) from None
        if parsed.tzinfo is None:
            raise ValueError(say("needs_zone", value=repr(value)))
        return parsed.isoformat()
    if kind == "list":
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ValueError(say("expected_list", value=repr(value)))
        return list(value)
    raise ValueError(f"unknown field type {kind}")  # pragma: no cover - the model forbids it


def _fail(value: Any) -> int:
    raise ValueError(value)


def check_fields(
    specs: Mapping[str, FieldSpec],
    values: Mapping[str, Any],
    *,
    what: str,
    apply_defaults: bool = True,
    allow_unknown: bool = False,
    present: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate all values at once; the InputError lists every problem, not just the first.

    `present` holds values the case already has: a form shows them prefilled, so a required
    field is satisfied by them unless the user clears it.
    """
    problems: list[str] = []
    result: dict[str, Any] = {}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            if allow_unknown:
                result[name] = value
                continue
            known = ", ".join(sorted(specs)) or "none"
            problems.append(say("unknown_field", name=name, what=what, known=known))
            continue
        try:
            result[name] = coerce(name, spec, value)
        except ValueError as exc:
            problems.append(say("field_problem", name=name, problem=exc))
    for name, spec in specs.items():
        if name in result and result[name] not in (None, ""):
            continue
        if apply_defaults and spec.default is not None and name not in result and name not in (present or {}):
            result[name] = spec.default
            continue
        if spec.required and present is not None and name not in result and present.get(name) not in (None, ""):
            continue
        if spec.required:
            label = f" ({spec.label.zh} / {spec.label.en})" if spec.label else ""
            problems.append(say("field_required", name=name, label=label))
    if problems:
        raise InputError(say("invalid_input", what=what, problems=PROBLEM_SEPARATOR.join(problems)),
                         hint="fix the fields named above")
    return result


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs to a dict of strings; typing happens in check_fields."""
    result: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"cannot read --set {pair!r}", hint="write --set key=value")
        key, value = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise InputError(f"cannot read --set {pair!r}: the key is empty", hint="write --set key=value")
        result[key] = value
    return result

"""JSON for the store's hot path: orjson where it gives the same text and values as `json`, `json` otherwise.

Every durable transition serialises the case state and each log entry's payload, and reading a
case parses its state; with the standard library that was the largest share of a transition's
CPU after the database itself. orjson is several times faster and (compact, UTF-8, keys as
given) writes what `json.dumps(..., ensure_ascii=False, separators=(",", ":"))` writes, except:

- non-finite floats: orjson writes `null`, which would silently change the case's data, so a
  value holding NaN or an infinity is written by `json` (as before: `NaN`, `Infinity`);
- values orjson refuses (integers beyond 64 bits, unusual key types): written by `json`;
- text `json` accepts but orjson does not (NaN written as above): read by `json`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
"""Datetimes are not orjson's business in general values: a stray datetime in case data is refused
(by `json`, as before) rather than silently stored as text."""


def finite(value: Any) -> bool:
    """False if a float anywhere in `value` is NaN or infinite (orjson would write it as null)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(finite(v) for v in value)
    return True


def dumps(value: Any, *, default: Any = None, data: Any = None) -> str:
    """Compact JSON text of `value`; `data` is the part that may hold arbitrary user floats
    (the case data), checked for non-finite numbers (the whole value when not given)."""
    if finite(value if data is None else data):
        try:
            return orjson.dumps(value, default=default, option=OPTIONS).decode()
        except (TypeError, orjson.JSONEncodeError):
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)


def loads(text: str | bytes) -> Any:
    """Parsed JSON; ValueError (as from `json`) when it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)

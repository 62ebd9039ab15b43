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

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def _finite(value: Any, *, times: bool = True) -> bool:
    """False if a float anywhere in `value` is NaN or infinite (orjson would write it as null), or, with
    `times=False`, if anything but dicts, lists, text, numbers, booleans and None is in it (a date or
    time, which orjson would write in its own way where the state's writer refuses it...).

    A plain loop that steps over text, integers, booleans and None without a call: this walks the
    case data of every stored state and every log payload (a sweep pass: tens of thousands)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return times or value is None or isinstance(value, (str, int))  # bool is an int
    for item in value:
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if not _finite(item, times=times):
            return False
    return True


def finite(value: Any) -> bool:
    """False if a float anywhere in `value` is NaN or infinite (orjson would write it as null)."""
    return _finite(value)


def plain(value: Any) -> bool:
    """True if `value` holds JSON's own values only (dicts, lists, text, numbers, booleans, None, no
    non-finite float): what orjson writes the same however it is told to treat other types."""
    return _finite(value, times=False)


def dumps(value: Any, *, default: Any = None, data: Any = None) -> str:
    """Compact JSON text of `value`; `data` is the part that may hold arbitrary user floats
    (the case data), checked for non-finite numbers (the whole value when not given)."""
    if finite(value if data is None else data):
        try:
            return orjson.dumps(value, default=default, option=_OPTIONS).decode()
        except (TypeError, orjson.JSONEncodeError):
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)


def loads(text: str | bytes) -> Any:
    """Parsed JSON; ValueError (as from `json`) when it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)

"""Syntax of the `cron:` of a schedule, checked when a definition is validated.

svcflow does not run cron schedules itself (engine/run/schedules.py leaves them to an external
scheduler such as a Prefect deployment), but a cron text that no scheduler can read would only
be found when someone deploys it. This is the common five-field syntax: minute, hour, day of
month, month, day of week; each field a comma list of `*`, `N`, `N-M`, optionally `/step`;
months and weekdays also by their English three-letter names; or one of the `@daily`-style
shortcuts.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["cron_problem"]

_SHORTCUTS: Final = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_FIELDS: Final[tuple[tuple[str, int, int, tuple[str, ...]], ...]] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_PART: Final = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")


def _number(text: str, low: int, high: int, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        value = int(text)
    elif text in names:
        value = names.index(text) + low
    else:
        return None
    return value if low <= value <= high else None


def _field_problem(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    for part in text.lower().split(","):
        match = _PART.match(part)
        if match is None:
            return f"the {name} field {text!r} cannot be read"
        values, step = match.groups()
        if step is not None and int(step) == 0:
            return f"the {name} field {text!r} has a step of 0"
        if values == "*":
            continue
        bounds = [_number(bound, low, high, names) for bound in values.split("-")]
        if any(bound is None for bound in bounds):
            return f"the {name} field {text!r} is outside {low}-{high}"
        if len(bounds) == 2 and bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
            return f"the {name} field {text!r} has a range that runs backwards"
    return None


def cron_problem(text: str) -> str | None:
    """Why `text` is not a cron expression, or None when it is one."""
    stripped = text.strip()
    if stripped.lower() in _SHORTCUTS:
        return None
    fields = stripped.split()
    if len(fields) != len(_FIELDS):
        return f"a cron expression has 5 fields (minute hour day month weekday), this one has {len(fields)}"
    for value, (name, low, high, names) in zip(fields, _FIELDS):
        problem = _field_problem(value, name, low, high, names)
        if problem is not None:
            return problem
    return None

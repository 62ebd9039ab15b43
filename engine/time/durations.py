"""Business durations as designers write them: "2h", "30m", "5d", "1d 4h".

A day is one working day of the calendar (7.5 h by default), not 24 hours. The length of a
working day belongs to the calendar, not to the text, so a duration keeps days and seconds
apart and only the calendar (or a caller that knows the day length) turns it into seconds.

The grammar is deliberately strict: whole numbers with the units d, h, m, s, in that order,
each at most once ("1d 4h", "1d4h30m", "90s", "0m"). A bare number has no unit anyone agrees
on, and "30m 2h" or "1h 1h" are more likely typos than intentions; refusing them keeps every
accepted text unambiguous and lets `str()` give one canonical spelling.
"""

from __future__ import annotations

import functools

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

DURATION_PATTERN = r"^\s*(?=\d)(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$"
"""The accepted texts, as a regular expression that both Python and JSON Schema (ECMA) understand."""

_GRAMMAR = re.compile(DURATION_PATTERN)
_HINT = 'write e.g. "2h", "30m", "5d" or "1d 4h" (units d, h, m, s in that order, each once; d = one working day)'


class DurationError(ValueError):
    """A duration text that cannot be read; a ValueError so pydantic reports it as a field error."""


@dataclass(frozen=True)
class BusinessDuration:
    """An amount of business time: whole working days plus business seconds.

    Kept as two numbers because "1d" means 7.5 h under one calendar and 8 h under another;
    `total_seconds(calendar.day_seconds)` is the one place where they meet.
    """

    days: int = 0
    seconds: int = 0

    def __post_init__(self) -> None:
        for name in ("days", "seconds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DurationError(f"a business duration needs whole, non-negative {name}, not {value!r}")

    def total_seconds(self, day_seconds: int) -> int:
        """Business seconds, given the working-day length of the calendar that will count them."""
        return self.days * day_seconds + self.seconds

    def scaled(self, fraction: float, day_seconds: int | None = None) -> BusinessDuration:
        """A fraction of this duration, e.g. the 50 % or 75 % warning point of an SLA target.

        Whole days stay days when they scale to a whole number (50 % of "2d" is "1d"), so the
        result remains right under any working-day length. A part of a day only becomes seconds
        through `day_seconds` (50 % of "1d" is "3h 45m" for a 7.5 h day), which is therefore
        required only then. The result is rounded to whole seconds.
        """
        if not math.isfinite(fraction) or fraction < 0:
            raise ValueError(f"cannot scale a duration by {fraction!r}: use a finite fraction >= 0")
        exact_days = self.days * fraction
        whole_days = round(exact_days)
        if abs(exact_days - whole_days) > 1e-9:
            whole_days = math.floor(exact_days)
        part_day = exact_days - whole_days
        extra = 0.0
        if part_day > 1e-9:
            if day_seconds is None:
                raise ValueError(
                    f"{fraction:g} of {self} ends part-way through a working day: pass day_seconds "
                    "(the calendar's working-day length) to convert it"
                )
            extra = part_day * day_seconds
        return BusinessDuration(whole_days, round(self.seconds * fraction + extra))

    def __str__(self) -> str:
        """The canonical text: `parse_duration(str(d)) == d` for every duration."""
        parts = [f"{self.days}d"] if self.days else []
        hours, rest = divmod(self.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        for amount, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")):
            if amount:
                parts.append(f"{amount}{unit}")
        return " ".join(parts) or "0m"


def parse_duration(text: str) -> BusinessDuration:
    """Read a duration written in a definition; the error names the text and the accepted form."""
    if not isinstance(text, str):
        raise DurationError(f"cannot read {text!r} as a duration: {_HINT}")
    return _parse_text(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> BusinessDuration:
    """Cached: every SLA clock started re-reads its target text, and definitions use a handful."""
    match = _GRAMMAR.match(text)
    if match is None:
        raise DurationError(f'cannot read "{text}" as a duration: {_HINT}')
    days, hours, minutes, seconds = (int(group) if group else 0 for group in match.groups())
    return BusinessDuration(days, hours * 3600 + minutes * 60 + seconds)


def _coerce(value: Any) -> BusinessDuration:
    if isinstance(value, BusinessDuration):
        return value
    return parse_duration(value)


DurationText = Annotated[
    BusinessDuration,
    BeforeValidator(_coerce),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({
        "type": "string",
        "pattern": DURATION_PATTERN,
        "description": 'business time, e.g. "2h", "30m", "5d", "1d 4h" (d = one working day)',
    }),
]
"""A definition field holding a duration: text in YAML/JSON, a `BusinessDuration` in Python."""

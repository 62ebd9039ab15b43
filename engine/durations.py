"""Business durations as designers write them: "2h", "30m", "5d", "1d 4h".

A day is one working day of the calendar (7.5 h by default), not 24 hours, so the
calendar converts days; the duration itself only keeps days and seconds apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_PART = re.compile(r"(\d+)\s*([dhms])")
_WHOLE = re.compile(r"^\s*(\d+\s*[dhms]\s*)+$")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}


class DurationError(ValueError):
    """A duration text that cannot be read."""


@dataclass(frozen=True)
class BusinessDuration:
    days: int = 0
    seconds: int = 0

    def total_seconds(self, day_seconds: int) -> int:
        return self.days * day_seconds + self.seconds

    def scaled(self, fraction: float, day_seconds: int) -> BusinessDuration:
        """A fraction of the duration (e.g. 50 % of a target), as seconds: days do not split evenly."""
        return BusinessDuration(0, round(self.total_seconds(day_seconds) * fraction))

    def __str__(self) -> str:
        parts = []
        if self.days:
            parts.append(f"{self.days}d")
        rest = self.seconds
        for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
            if rest >= size:
                parts.append(f"{rest // size}{unit}")
                rest %= size
        return " ".join(parts) or "0m"


def parse_duration(text: str) -> BusinessDuration:
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise DurationError(
            f'cannot read "{text}" as a duration: write e.g. "2h", "30m", "5d" or "1d 4h" (d = one working day)'
        )
    days = 0
    seconds = 0
    for amount, unit in _PART.findall(text):
        if unit == "d":
            days += int(amount)
        else:
            seconds += int(amount) * _UNIT_SECONDS[unit]
    return BusinessDuration(days, seconds)


def _coerce(value: Any) -> BusinessDuration:
    if isinstance(value, BusinessDuration):
        return value
    return parse_duration(value)


DurationText = Annotated[
    BusinessDuration,
    BeforeValidator(_coerce),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _WHOLE.pattern}),
]

"""Business calendars: working hours, Chinese public holidays and make-up working days (调休).

SLA targets are business time, so every deadline goes through here; it is pure (no
`now()`) and caches per-day decisions because simulations compute thousands per second.

chinese-calendar knows the official schedule (holidays and 调休) only up to the year it was
released for; later years fall back to statutory holidays from `holidays` (CN), weekends
otherwise, with one logged warning per year. Per-year corrections come from configuration:
the definition's `calendar:` section, or a YAML file named by SVCFLOW_CALENDAR_FILE that
applies to every process (so an administrator can load a newly published schedule).
"""

from __future__ import annotations

import logging
import os
import re
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.durations import BusinessDuration

log = logging.getLogger("svcflow.calendar")
_PERIOD = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_warned_years: set[int] = set()


class CalendarConfig(BaseModel):
    """A calendar as written in a definition's `calendar:` section (all fields optional)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "Asia/Shanghai"
    working_hours: list[str] = Field(default_factory=lambda: ["09:00-12:00", "13:30-18:00"],
                                     description='periods "HH:MM-HH:MM", in order')
    working_weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], description="Monday = 0")
    holidays: list[date] = Field(default_factory=list, description="extra non-working days")
    workdays: list[date] = Field(default_factory=list, description="extra working days (e.g. 调休 make-up days)")
    use_chinese_holidays: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Asia/Shanghai") from None
        return value

    @field_validator("working_weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in value):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return value

    @model_validator(mode="after")
    def _periods(self) -> CalendarConfig:
        last_end = -1
        for text in self.working_hours:
            match = _PERIOD.match(text.strip())
            if not match:
                raise ValueError(f'working hours {text!r}: write "HH:MM-HH:MM", e.g. "09:00-12:00"')
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if not (0 <= start < end <= 24 * 60) or h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
                raise ValueError(f"working hours {text!r}: the start must be before the end, within one day")
            if start < last_end:
                raise ValueError(f"working hours {text!r} overlap or are out of order")
            last_end = end
        return self

    def periods(self) -> list[tuple[int, int]]:
        """Working periods as (start, end) seconds after local midnight."""
        result = []
        for text in self.working_hours:
            h1, m1, h2, m2 = (int(g) for g in _PERIOD.match(text.strip()).groups())  # type: ignore[union-attr]
            result.append((h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60))
        return result


class CalendarOverrides(BaseModel):
    """Site-wide corrections for every process: the SVCFLOW_CALENDAR_FILE YAML."""

    model_config = ConfigDict(extra="forbid")

    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)


@lru_cache(maxsize=8)
def _read_overrides(path: str) -> CalendarOverrides:
    import yaml

    raw: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return CalendarOverrides.model_validate(raw)


def site_overrides() -> CalendarOverrides | None:
    path = os.environ.get("SVCFLOW_CALENDAR_FILE")
    return _read_overrides(path) if path else None


def _official_cn(day: date) -> bool | None:
    """Working day per chinese-calendar, or None when it has no data for that year."""
    try:
        import chinese_calendar

        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return None


@lru_cache(maxsize=64)
def _statutory_cn(year: int) -> frozenset[date]:
    import holidays

    return frozenset(holidays.country_holidays("CN", years=year).keys())


class BusinessCalendar:
    """Working time arithmetic. All inputs must be timezone-aware; results are in the calendar's zone."""

    def __init__(self, config: CalendarConfig | None = None, overrides: CalendarOverrides | None = None) -> None:
        self.config = config or CalendarConfig()
        self.tz = ZoneInfo(self.config.timezone)
        self.periods = self.config.periods()
        self.day_seconds = sum(end - start for start, end in self.periods)
        extra = overrides if overrides is not None else site_overrides()
        self._holidays = set(self.config.holidays) | set(extra.holidays if extra else [])
        self._workdays = set(self.config.workdays) | set(extra.workdays if extra else [])
        self._weekdays = frozenset(self.config.working_weekdays)
        self._cache: dict[date, bool] = {}

    # -- days -----------------------------------------------------------------------------
    def is_working_day(self, day: date) -> bool:
        cached = self._cache.get(day)
        if cached is None:
            cached = self._decide(day)
            self._cache[day] = cached
        return cached

    def _decide(self, day: date) -> bool:
        if day in self._workdays:
            return True
        if day in self._holidays:
            return False
        if self.config.use_chinese_holidays:
            official = _official_cn(day)
            if official is not None:
                return official
            if day.year not in _warned_years:
                _warned_years.add(day.year)
                log.warning(
                    "chinese-calendar has no official schedule for %s: using statutory holidays from `holidays` and "
                    "weekends; add that year's 调休 days to SVCFLOW_CALENDAR_FILE or the definition's calendar",
                    day.year,
                )
            if day in _statutory_cn(day.year):
                return False
        return day.weekday() in self._weekdays

    # -- instants -----------------------------------------------------------------------------
    def _local(self, instant: datetime) -> datetime:
        if instant.tzinfo is None:
            raise ValueError(f"naive datetime {instant.isoformat()}: business time needs a time zone")
        return instant.astimezone(self.tz)

    def _at(self, day: date, seconds: int) -> datetime:
        if seconds >= 86400:
            return datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
        return datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60, seconds % 60), tzinfo=self.tz)

    def add(self, start: datetime, duration: BusinessDuration | timedelta | int) -> datetime:
        """The instant when `duration` of business time has passed since `start`."""
        if isinstance(duration, BusinessDuration):
            remaining = duration.total_seconds(self.day_seconds)
        elif isinstance(duration, timedelta):
            remaining = int(duration.total_seconds())
        else:
            remaining = int(duration)
        local = self._local(start)
        if remaining <= 0:
            return local
        if self.day_seconds == 0:
            raise ValueError("the calendar has no working hours")
        day = local.date()
        offset = local.hour * 3600 + local.minute * 60 + local.second
        for _ in range(3660):  # ten years of days: a guard, not a limit anyone meets
            if self.is_working_day(day):
                if offset == 0 and remaining > self.day_seconds:
                    remaining -= self.day_seconds
                else:
                    for period_start, period_end in self.periods:
                        if offset >= period_end:
                            continue
                        begin = max(offset, period_start)
                        available = period_end - begin
                        if remaining <= available:
                            return self._at(day, begin + remaining)
                        remaining -= available
            day += timedelta(days=1)
            offset = 0
        raise ValueError("no working time found within ten years: check the calendar configuration")

    def between(self, a: datetime, b: datetime) -> int:
        """Business seconds in [a, b); 0 when b is not after a."""
        la, lb = self._local(a), self._local(b)
        if lb <= la:
            return 0
        total = 0
        day = la.date()
        end_day = lb.date()
        while day <= end_day:
            if self.is_working_day(day):
                lo = la.hour * 3600 + la.minute * 60 + la.second if day == la.date() else 0
                hi = lb.hour * 3600 + lb.minute * 60 + lb.second if day == end_day else 86400
                if lo == 0 and hi == 86400:
                    total += self.day_seconds
                else:
                    for period_start, period_end in self.periods:
                        overlap = min(hi, period_end) - max(lo, period_start)
                        if overlap > 0:
                            total += overlap
            day += timedelta(days=1)
        return total

    def next_working_instant(self, instant: datetime) -> datetime:
        """The instant itself if inside working hours, else the start of the next working period."""
        local = self._local(instant)
        day = local.date()
        offset = local.hour * 3600 + local.minute * 60 + local.second
        for _ in range(3660):
            if self.is_working_day(day):
                for period_start, period_end in self.periods:
                    if offset < period_end:
                        return local if offset >= period_start else self._at(day, period_start)
            day += timedelta(days=1)
            offset = 0
        raise ValueError("no working time found within ten years: check the calendar configuration")

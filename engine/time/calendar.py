"""Business calendars: working hours, Chinese public holidays and make-up working days (调休).

SLA targets are business time, so every deadline goes through here. The calendar is pure (no
`now()`: every answer depends only on its arguments and configuration) and caches each day's
decision, because simulations compute thousands of deadlines per second.

Which days are working days, most specific source first:
1. the definition's `calendar:` section (`holidays`, `workdays`);
2. the site-wide YAML file named by SVCFLOW_CALENDAR_FILE (same two lists), so an administrator
   can load a newly published schedule for every process without a release;
3. with `use_chinese_holidays`: the official schedule from chinese-calendar (public holidays,
   including swapped days off, and the make-up working days); for years it has no data for
   (it covers 2004-2026 as installed) the `holidays` package's CN calendar: its statutory
   holidays and, when it knows them, the swapped days off and the make-up days they were
   swapped from. One warning per year and process says that such a year is an estimate;
4. `working_weekdays`.
Chinese holidays and make-up days thus adjust the configured week rather than replace it: with
the default Monday-Friday week the result is exactly chinese-calendar's `is_workday`, and a
hotline open Monday-Saturday keeps its Saturdays.

Working periods are wall-clock times in the calendar's zone. Arithmetic runs on wall-clock
microseconds within each day, so on a daylight-saving change inside working hours the business
time counted is the wall-clock span (an hour may be counted that did not pass, or vice versa).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache, cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.time.durations import BusinessDuration

log = logging.getLogger("svcflow.calendar")

_PERIOD = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_SUBSTITUTED = re.compile(r"substituted from (\d{2})/(\d{2})/(\d{4})")
_US = 1_000_000
_DAY_US = 86_400 * _US
_MAX_DAYS = 3660  # how far ahead `add` and `next_working_instant` look: ten years of calendar days

_warned_years: set[int] = set()
"""Years for which the fallback warning was logged in this process (once each, not per call)."""


def _minutes(text: str, hours: str, minutes: str) -> int:
    h, m = int(hours), int(minutes)
    if h > 24 or m > 59 or (h == 24 and m):
        raise ValueError(f'working hours {text!r}: {hours}:{minutes} is not a time of day (00:00 to 24:00)')
    return h * 60 + m


def _split_period(text: str) -> tuple[int, int]:
    """(start, end) in minutes after midnight of one "HH:MM-HH:MM" text."""
    match = _PERIOD.match(text.strip())
    if not match:
        raise ValueError(f'working hours {text!r}: write "HH:MM-HH:MM", e.g. "09:00-12:00"')
    start = _minutes(text, match[1], match[2])
    end = _minutes(text, match[3], match[4])
    if start >= end:
        raise ValueError(f"working hours {text!r}: the start must be before the end, within one day")
    return start, end


def _no_date_in_both(holidays: list[date], workdays: list[date]) -> None:
    both = sorted(set(holidays) & set(workdays))
    if both:
        listed = ", ".join(d.isoformat() for d in both)
        raise ValueError(f"{listed} listed both as holiday and as workday: keep each date in one list")


class CalendarConfig(BaseModel):
    """A calendar as written in a definition's `calendar:` section (all fields optional)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(default="Asia/Shanghai", description="IANA time zone the working hours are in")
    working_hours: list[str] = Field(default_factory=lambda: ["09:00-12:00", "13:30-18:00"],
                                     description='periods "HH:MM-HH:MM", in order')
    working_weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], description="Monday = 0")
    holidays: list[date] = Field(default_factory=list, description="extra non-working days")
    workdays: list[date] = Field(default_factory=list, description="extra working days (e.g. 调休 make-up days)")
    use_chinese_holidays: bool = Field(default=True, description="skip official Chinese public holidays and "
                                       "work on their make-up days (调休)")

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
        if not self.working_hours:
            raise ValueError('working hours are empty: give at least one period, e.g. "09:00-18:00"')
        last_end = -1
        for text in self.working_hours:
            start, end = _split_period(text)
            if start < last_end:
                raise ValueError(f"working hours {text!r} overlap or are out of order: list periods from morning on")
            last_end = end
        _no_date_in_both(self.holidays, self.workdays)
        return self

    def periods(self) -> list[tuple[int, int]]:
        """Working periods as (start, end) seconds after local midnight."""
        return [(start * 60, end * 60) for start, end in map(_split_period, self.working_hours)]


class CalendarOverrides(BaseModel):
    """Site-wide corrections for every process: the SVCFLOW_CALENDAR_FILE YAML."""

    model_config = ConfigDict(extra="forbid")

    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> CalendarOverrides:
        _no_date_in_both(self.holidays, self.workdays)
        return self


@lru_cache(maxsize=8)
def _read_overrides(path: str) -> CalendarOverrides:
    """Read once per path and process: the file changes with a published schedule, not per case."""
    import yaml

    raw: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return CalendarOverrides.model_validate(raw)


def site_overrides() -> CalendarOverrides | None:
    """The site-wide corrections, if SVCFLOW_CALENDAR_FILE names a file."""
    path = os.environ.get("SVCFLOW_CALENDAR_FILE")
    return _read_overrides(path) if path else None


# -- the Chinese schedule, one year at a time -------------------------------------------------------
@dataclass(frozen=True)
class ChineseYear:
    """The Chinese schedule of one year: days off and make-up working days.

    `days_off` are the public holidays and the weekdays swapped into them; the official data also
    lists the weekend days inside a holiday block, the `holidays` estimate does not.
    """

    year: int
    days_off: frozenset[date]
    make_up_days: frozenset[date]
    official: bool  # True: chinese-calendar's official data; False: estimated from `holidays`
    note: str = ""


def _official_year(year: int) -> ChineseYear | None:
    import chinese_calendar

    try:
        chinese_calendar.is_workday(date(year, 1, 1))
        chinese_calendar.is_workday(date(year, 12, 31))
    except NotImplementedError:
        return None
    return ChineseYear(
        year,
        frozenset(d for d in chinese_calendar.holidays if d.year == year),
        frozenset(d for d in chinese_calendar.workdays if d.year == year),
        official=True,
    )


def _estimated_year(year: int) -> ChineseYear:
    """The `holidays` package's CN calendar, which lists swapped days off as "Day off (substituted
    from MM/DD/YYYY)": the date it names is the make-up working day. Gives the same working days
    as chinese-calendar for 2019-2026; for years without a published schedule only statutory days."""
    import holidays

    days_off: set[date] = set()
    make_up: set[date] = set()
    try:
        for y in (year, year + 1):  # a day off in early January may be swapped from late December
            table = holidays.country_holidays("CN", years=y, language="en_US")
            for day, name in table.items():
                if day.year == year:
                    days_off.add(day)
                for found in _SUBSTITUTED.finditer(str(name)):
                    swapped = date(int(found[3]), int(found[1]), int(found[2]))
                    if swapped.year == year:
                        make_up.add(swapped)
    except Exception as exc:
        return ChineseYear(year, frozenset(), frozenset(), official=False,
                           note=f"`holidays` failed ({exc}); only weekdays are used")
    note = ("make-up working days from `holidays`" if make_up
            else "make-up working days (调休) unknown, so none are assumed")
    return ChineseYear(year, frozenset(days_off), frozenset(make_up), official=False, note=note)


@cache
def chinese_year(year: int) -> ChineseYear:
    """The year's schedule: official where chinese-calendar has it, else estimated (see module docs)."""
    return _official_year(year) or _estimated_year(year)


# -- the calendar -----------------------------------------------------------------------------------
class BusinessCalendar:
    """Working-time arithmetic. All inputs must be timezone-aware; results are in the calendar's zone.

    `overrides` are the site-wide corrections; by default they come from SVCFLOW_CALENDAR_FILE, and
    `CalendarOverrides()` (empty) ignores that file, e.g. in tests.
    """

    def __init__(self, config: CalendarConfig | None = None, overrides: CalendarOverrides | None = None) -> None:
        self.config = config or CalendarConfig()
        self.tz = ZoneInfo(self.config.timezone)
        self.periods: list[tuple[int, int]] = self.config.periods()
        self.day_seconds: int = sum(end - start for start, end in self.periods)
        site = overrides if overrides is not None else site_overrides()
        self._own_workdays = frozenset(d.toordinal() for d in self.config.workdays)
        self._own_holidays = frozenset(d.toordinal() for d in self.config.holidays)
        self._site_workdays = frozenset(d.toordinal() for d in site.workdays) if site else frozenset()
        self._site_holidays = frozenset(d.toordinal() for d in site.holidays) if site else frozenset()
        self._weekdays = frozenset(self.config.working_weekdays)
        self._periods_us = [(start * _US, end * _US) for start, end in self.periods]
        self._first_start_us = self._periods_us[0][0]
        self._day_us = self.day_seconds * _US
        self._working_cache: dict[int, bool] = {}
        self._ymd: dict[int, tuple[int, int, int]] = {}  # ordinal -> (year, month, day), for _at
        self._last_start: tuple[Any, ...] = (None,)  # (start, local, ordinal, offset) of the last `add`

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.config!r})"

    # -- days ---------------------------------------------------------------------------------------
    def is_working_day(self, day: date) -> bool:
        """Whether `day` (a date in the calendar's zone) has working hours."""
        return self._working(day.toordinal())

    def _working(self, ordinal: int) -> bool:
        cached = self._working_cache.get(ordinal)
        if cached is None:
            cached = self._working_cache[ordinal] = self._decide(ordinal)
        return cached

    def _decide(self, ordinal: int) -> bool:
        for workdays, holidays in ((self._own_workdays, self._own_holidays),
                                   (self._site_workdays, self._site_holidays)):
            if ordinal in workdays:
                return True
            if ordinal in holidays:
                return False
        day = date.fromordinal(ordinal)
        if self.config.use_chinese_holidays:
            schedule = chinese_year(day.year)
            if not schedule.official:
                _warn_once(schedule)
            if day in schedule.days_off:
                return False
            if day in schedule.make_up_days:
                return True
        return day.weekday() in self._weekdays

    # -- instants -----------------------------------------------------------------------------------
    def _local(self, instant: datetime) -> datetime:
        if instant.tzinfo is self.tz:  # already local (the engine's own instants): skip the conversion
            return instant
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"naive datetime {instant.isoformat()}: business time needs a time zone")
        return instant.astimezone(self.tz)

    @staticmethod
    def _offset_us(local: datetime) -> int:
        return ((local.hour * 60 + local.minute) * 60 + local.second) * _US + local.microsecond

    def _at(self, ordinal: int, offset_us: int) -> datetime:
        if offset_us >= _DAY_US:  # a period ending at 24:00
            ordinal += 1
            offset_us -= _DAY_US
        ymd = self._ymd.get(ordinal)
        if ymd is None:
            day = date.fromordinal(ordinal)
            ymd = self._ymd[ordinal] = (day.year, day.month, day.day)
        seconds, micro = divmod(offset_us, _US)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        return datetime(ymd[0], ymd[1], ymd[2], hour, minute, second, micro, tzinfo=self.tz)

    def _duration_us(self, duration: BusinessDuration | timedelta | int | float) -> int:
        if type(duration) is int:  # seconds: what SLA clocks and the simulator pass
            return duration * _US
        if isinstance(duration, BusinessDuration):
            return duration.total_seconds(self.day_seconds) * _US
        if isinstance(duration, timedelta):
            return duration // timedelta(microseconds=1)
        if isinstance(duration, (int, float)) and not isinstance(duration, bool):
            return round(duration * _US)
        raise TypeError(f"a business duration is a BusinessDuration, a timedelta or seconds, not {duration!r}")

    def add(self, start: datetime, duration: BusinessDuration | timedelta | int | float) -> datetime:
        """The instant when `duration` of business time has elapsed after `start`.

        Counting begins at `start`, or at the next working period if `start` is outside working
        hours. A duration that runs out exactly at the end of a period ends there (12:00, not
        13:30 after lunch), so "1d" from the opening is the closing time of the same day.
        A zero or negative duration gives `start` itself (in the calendar's zone): an SLA whose
        time already ran out is due now.
        """
        remaining = self._duration_us(duration)
        memo = self._last_start  # an SLA clock's due and next thresholds are counted from one start
        if memo[0] is start:
            local, ordinal, offset = memo[1], memo[2], memo[3]
        else:
            local = self._local(start)
            ordinal = local.toordinal()
            offset = self._offset_us(local)
            self._last_start = (start, local, ordinal, offset)  # one tuple: safe to share across threads
        if remaining <= 0:
            return local
        day_us = self._day_us
        known = self._working_cache
        for _ in range(_MAX_DAYS):
            working = known.get(ordinal)
            if working is None:
                working = self._working(ordinal)
            if working:
                if offset <= self._first_start_us and remaining > day_us:
                    remaining -= day_us  # the whole working day passes: no need to look at its periods
                else:
                    for period_start, period_end in self._periods_us:
                        if offset >= period_end:
                            continue
                        begin = period_start if offset < period_start else offset
                        available = period_end - begin
                        if remaining <= available:
                            return self._at(ordinal, begin + remaining)
                        remaining -= available
            ordinal += 1
            offset = 0
        raise ValueError(f"adding {duration} to {start.isoformat()} reaches more than ten years ahead: "
                         "check the duration and the calendar's working days")

    def between(self, a: datetime, b: datetime) -> int:
        """Whole business seconds in [a, b); 0 when b is not after a. `between(a, add(a, n)) == n`."""
        la, lb = self._local(a), self._local(b)
        if lb <= la:
            return 0
        first, last = la.toordinal(), lb.toordinal()
        start_us, end_us = self._offset_us(la), self._offset_us(lb)
        if first == last:
            total = self._within(first, start_us, end_us)
        else:
            total = self._within(first, start_us, _DAY_US) + self._within(last, 0, end_us)
            working = self._working
            full_days = sum(1 for ordinal in range(first + 1, last) if working(ordinal))
            total += full_days * self._day_us
        return max(total, 0) // _US

    def _within(self, ordinal: int, lo: int, hi: int) -> int:
        """Business microseconds of one day between two wall-clock offsets."""
        if lo >= hi or not self._working(ordinal):
            return 0
        total = 0
        for period_start, period_end in self._periods_us:
            overlap = (hi if hi < period_end else period_end) - (lo if lo > period_start else period_start)
            if overlap > 0:
                total += overlap
        return total

    def next_working_instant(self, t: datetime) -> datetime:
        """`t` itself if inside working hours, else the start of the next working period."""
        local = self._local(t)
        ordinal = local.toordinal()
        offset = self._offset_us(local)
        for _ in range(_MAX_DAYS):
            if self._working(ordinal):
                for period_start, period_end in self._periods_us:
                    if offset < period_end:
                        return local if offset >= period_start else self._at(ordinal, period_start)
            ordinal += 1
            offset = 0
        raise ValueError(f"no working time within ten years after {t.isoformat()}: check the calendar's working days")


def _warn_once(schedule: ChineseYear) -> None:
    if schedule.year in _warned_years:
        return
    _warned_years.add(schedule.year)
    log.warning(
        "chinese-calendar has no official schedule for %s: using statutory holidays from `holidays` (CN) and "
        "weekends; %s. Add that year's holidays and 调休 working days to SVCFLOW_CALENDAR_FILE or the "
        "definition's `calendar:` section once published.",
        schedule.year, schedule.note,
    )

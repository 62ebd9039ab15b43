"""Business time for reports, fast: an instant's business seconds and POSIX timestamp in a few operations.

A review measures millions of intervals; `BusinessCalendar.between` walks the days of each one,
and `datetime.timestamp()` asks the zone for its offset every time. Here both are worked out once
per day and cached, giving the same numbers.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo, UTC

from engine.time.calendar import BusinessCalendar

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class BusinessTime:
    """Business seconds elapsed since a fixed origin, so that a duration is one subtraction.

    `BusinessCalendar.between` walks the days of every interval; a review measures millions of
    intervals, so here each instant is mapped once to "business seconds before it" using a
    per-day cumulative table and a cached UTC offset per quarter hour (DST transitions fall on
    quarter hours). between(a, b) == at(b) - at(a) for the same calendar.
    """

    def __init__(self, calendar: BusinessCalendar) -> None:
        self.calendar = calendar
        self.periods = list(calendar.periods)
        self.day_seconds = calendar.day_seconds
        self._offsets: dict[int, int] = {}
        self._days: dict[int, tuple[int, bool]] = {}  # local epoch day -> (business seconds before it, working)
        self._lo = 0
        self._hi = -1  # covered contiguous range [lo, hi]
        self._cache: dict[float, float] = {}

    def _offset(self, ts: float) -> int:
        bucket = int(ts // 900)
        offset = self._offsets.get(bucket)
        if offset is None:
            local = datetime.fromtimestamp(bucket * 900, UTC).astimezone(self.calendar.tz)
            delta = local.utcoffset()
            offset = int(delta.total_seconds()) if delta is not None else 0
            self._offsets[bucket] = offset
        return offset

    def _working(self, day: int) -> bool:
        return self.calendar.is_working_day(date.fromordinal(day + EPOCH_ORDINAL))

    def _day(self, day: int) -> tuple[int, bool]:
        entry = self._days.get(day)
        if entry is not None:
            return entry
        if self._hi < self._lo:  # empty table: anchor it here
            self._lo = self._hi = day
            self._days[day] = (0, self._working(day))
            return self._days[day]
        while self._hi < day:
            before, working = self._days[self._hi]
            self._hi += 1
            self._days[self._hi] = (before + (self.day_seconds if working else 0), self._working(self._hi))
        while self._lo > day:
            self._lo -= 1
            working = self._working(self._lo)
            before = self._days[self._lo + 1][0] - (self.day_seconds if working else 0)
            self._days[self._lo] = (before, working)
        return self._days[day]

    def at_ts(self, ts: float) -> float:
        """Business seconds before the POSIX timestamp `ts` (relative to an arbitrary origin)."""
        cached = self._cache.get(ts)
        if cached is not None:
            return cached
        local = ts + self._offset(ts)
        day = int(local // 86400)
        second = local - day * 86400
        before, working = self._day(day)
        value = float(before)
        if working:
            for start, end in self.periods:
                if second >= end:
                    value += end - start
                elif second > start:
                    value += second - start
                    break
                else:
                    break
        if len(self._cache) < 2_000_000:
            self._cache[ts] = value
        return value

    def at(self, instant: datetime) -> float:
        return self.at_ts(instant.timestamp())

    def between(self, a: datetime, b: datetime) -> float:
        return max(0.0, self.at(b) - self.at(a))


class Stamps:
    """POSIX timestamps of aware datetimes at a third of the cost of `datetime.timestamp()`.

    `timestamp()` asks the zone for its offset and builds a timedelta on every call (about 1 µs
    with zoneinfo); a review converts millions of instants, almost all in one zone. Here the
    offset is looked up once per local day, for days on which it does not change (checked every
    hour, both folds: a DST change shows as a different offset before and after it); other days,
    other zones and naive datetimes go to `timestamp()`. The result is the same float, microseconds
    divided by 10**6 with one rounding, as `timestamp()` computes it.
    """

    def __init__(self) -> None:
        self.zone: tzinfo | None = None
        self.bases: dict[int, int] = {}  # local day ordinal -> UTC seconds of its local midnight
        self._irregular: set[int] = set()

    def stamp(self, at: datetime) -> float:
        """`at.timestamp()`: from the day table when it has the day, else worked out (and the day learnt)."""
        base = self.bases.get(at.toordinal()) if at.tzinfo is self.zone else None
        if base is None:
            return self.slow(at)
        return ((base + at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000 + at.microsecond) / 1_000_000

    def slow(self, at: datetime) -> float:
        """The first instant of a day, or one the day table cannot answer."""
        zone = at.tzinfo
        if zone is None:
            return at.timestamp()
        if self.zone is None:
            self.zone = zone
        if zone is not self.zone:
            return at.timestamp()
        ordinal = at.toordinal()
        base = self.bases.get(ordinal)
        if base is None:
            if ordinal in self._irregular:
                return at.timestamp()
            base = self._base(zone, ordinal)
            if base is None:
                self._irregular.add(ordinal)
                return at.timestamp()
            self.bases[ordinal] = base
        return ((base + at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000 + at.microsecond) / 1_000_000

    @staticmethod
    def _base(zone: tzinfo, ordinal: int) -> int | None:
        """UTC seconds of the day's local midnight, or None when the offset changes during the day."""
        midnight = datetime.fromordinal(ordinal)
        offsets = {(midnight + timedelta(hours=hour)).replace(tzinfo=zone, fold=fold).utcoffset()
                   for hour in range(25) for fold in (0, 1)}
        if len(offsets) != 1:
            return None
        offset = offsets.pop()
        if offset is None or offset.microseconds:
            return None
        return (ordinal - EPOCH_ORDINAL) * 86400 - offset.days * 86400 - offset.seconds

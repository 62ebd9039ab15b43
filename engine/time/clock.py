"""Injectable clocks: nothing in svcflow calls datetime.now() directly.

Tests and simulations use FakeClock; the demo uses AcceleratedClock so that business
hours pass in seconds and SLA warnings really happen while you watch.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, UTC
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time, timezone-aware (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now = self._now + delta
            return self._now

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("FakeClock needs timezone-aware times")
        with self._lock:
            self._now = instant


class AcceleratedClock:
    """Virtual time running `factor` times faster than the wall clock from a chosen start.

    `real` is injectable so tests can drive it without sleeping.
    """

    def __init__(self, start: datetime, factor: float, real: Clock | None = None,
                 origin: datetime | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("AcceleratedClock needs a timezone-aware start time")
        self._start = start
        self._factor = factor
        self._real = real or SystemClock()
        self._origin = origin or self._real.now()

    def spec(self) -> str:
        """Text for SVCFLOW_CLOCK so other processes (served flows, workers) share this virtual time."""
        return f"accelerated|{self._start.isoformat()}|{self._origin.isoformat()}|{self._factor:g}"

    def now(self) -> datetime:
        elapsed = self._real.now() - self._origin
        return self._start + timedelta(seconds=elapsed.total_seconds() * self._factor)


def clock_from_spec(spec: str | None) -> Clock:
    """SVCFLOW_CLOCK: empty or "system" for wall time; "accelerated|start|origin|factor" for the demo."""
    if not spec or spec == "system":
        return SystemClock()
    parts = spec.split("|")
    if parts[0] == "accelerated" and len(parts) == 4:
        try:
            return AcceleratedClock(datetime.fromisoformat(parts[1]), float(parts[3]),
                                    origin=datetime.fromisoformat(parts[2]))
        except ValueError:
            pass
    raise ValueError(f"cannot read SVCFLOW_CLOCK={spec!r}: use 'system' or 'accelerated|START|ORIGIN|FACTOR'")

"""Scheduled starts: the `schedules:` a definition declares, honoured by the sweep.

A schedule `{id: platinum_monthly, every: 30d, data: {...}}` starts one case of its process per
period. Periods are counted from a fixed epoch, so every sweep — in any process, on any machine —
computes the same period and the same case id for it (`<process>-<schedule>-<period>`); the store
refuses a second case with that id, which makes a scheduled start happen exactly once however many
sweeps run at once. The first sweep after a deployment starts the current period's case at once.

`every` is calendar time (a scheduled visit is due every 30 days, working or not); `cron`
schedules are left to an external scheduler and not started here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.definition.model import ProcessDefinition
from engine.time.durations import parse_duration

EPOCH = datetime(2000, 1, 3, tzinfo=UTC)
"""Where periods are counted from (a Monday); changing it would restart every schedule."""

CALENDAR_DAY_SECONDS = 86_400


@dataclass(frozen=True)
class ScheduledStart:
    """One period's case of one schedule: who starts it, with what data, under which id."""

    process_id: str
    schedule_id: str
    period: int
    due_at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def case_id(self) -> str:
        return f"{self.process_id}-{self.schedule_id}-{self.period}"

    @property
    def actor(self) -> str:
        return f"schedule:{self.schedule_id}"


def interval(every: str) -> timedelta:
    """A schedule's `every` as calendar time: `30d` is thirty days of 24 hours."""
    return timedelta(seconds=parse_duration(every).total_seconds(CALENDAR_DAY_SECONDS))


def due_starts(definitions: Iterable[ProcessDefinition], now: datetime) -> list[ScheduledStart]:
    """The current period's start of every `every` schedule of the given definitions."""
    starts: list[ScheduledStart] = []
    for definition in definitions:
        for schedule in definition.schedules:
            if schedule.every is None:
                continue
            step = interval(schedule.every)
            period = (now - EPOCH) // step
            starts.append(ScheduledStart(definition.id, schedule.id, period, EPOCH + period * step,
                                         dict(schedule.data)))
    return starts


__all__ = ["EPOCH", "ScheduledStart", "due_starts", "interval"]

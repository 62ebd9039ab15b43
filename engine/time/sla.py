"""SLA clock arithmetic in business time: start, pause, resume, retarget, thresholds.

A clock banks the business seconds consumed before each pause, so the instant of any
threshold is `calendar.add(running_since, pct% of target - consumed)`. Only that next
instant is stored (and indexed), which keeps the sweep's work proportional to what is due.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from engine.time.calendar import BusinessCalendar
from engine.definition.model import EscalationLevel
from engine.time.durations import parse_duration
from engine.run.state import SlaClock

BREACH_PCT = 100


def target_seconds(text: str, calendar: BusinessCalendar) -> int:
    return parse_duration(text).total_seconds(calendar.day_seconds)


def thresholds(ladder: list[EscalationLevel]) -> tuple[int, ...]:
    """Percentages at which something happens; the breach at 100 % always counts.

    Computed once per ladder (`ProcessGraph.thresholds`): every schedule reads them.
    """
    return tuple(sorted({level.at for level in ladder} | {BREACH_PCT}))


def elapsed(clock: SlaClock, now: datetime, calendar: BusinessCalendar) -> int:
    """Business seconds consumed so far."""
    if clock.running_since is None:
        return clock.consumed
    return clock.consumed + calendar.between(clock.running_since, now)


CLOCK_STATUSES = ("running", "paused", "met", "breached", "cancelled")


def status_of(clock: SlaClock, now: datetime, calendar: BusinessCalendar) -> str:
    """The one status a person reads for a clock: running, paused, met, breached or cancelled.

    A breach wins over everything: a clock stopped (`met`) after its target, or one still running
    past it, is `breached` even before a sweep fired the 100 % level. A clock stopped without
    being met (case cancelled, task interrupted) is `cancelled`.
    """
    if clock.breached or elapsed(clock, now, calendar) > clock.target:
        return "breached"
    if clock.status == "stopped":
        return "cancelled"
    return clock.status


def percent(clock: SlaClock, now: datetime, calendar: BusinessCalendar) -> float:
    if clock.target <= 0:
        return 100.0
    return 100.0 * elapsed(clock, now, calendar) / clock.target


def _instant_of(clock: SlaClock, pct: int, calendar: BusinessCalendar) -> datetime:
    assert clock.running_since is not None
    remaining = max(0, (clock.target * pct + 99) // 100 - clock.consumed)
    return calendar.add(clock.running_since, remaining)


def schedule(clock: SlaClock, pcts: Sequence[int], calendar: BusinessCalendar, *, due_known: bool = False) -> None:
    """Recompute due_at and the next unfired threshold (of `pcts`, ascending) after any change.

    `due_known`: only a threshold fired, so start, banked time and target - and with them
    due_at - are as they were (saves a calendar walk on every warning and escalation).
    """
    if clock.status != "running" or clock.running_since is None:
        clock.next_at = None
        clock.next_pct = None
        return
    if not due_known or clock.due_at is None:
        clock.due_at = _instant_of(clock, BREACH_PCT, calendar)
    fired = clock.fired
    pending = next((pct for pct in pcts if pct not in fired), None)
    if pending is None:
        clock.next_at = None
        clock.next_pct = None
        return
    clock.next_pct = pending
    clock.next_at = clock.due_at if pending == BREACH_PCT else _instant_of(clock, pending, calendar)


def pause(clock: SlaClock, now: datetime, calendar: BusinessCalendar) -> None:
    if clock.status != "running" or clock.running_since is None:
        return
    clock.consumed += calendar.between(clock.running_since, now)
    clock.running_since = None
    clock.status = "paused"
    clock.next_at = None
    clock.next_pct = None


def resume(clock: SlaClock, now: datetime, pcts: Sequence[int], calendar: BusinessCalendar) -> None:
    if clock.status != "paused":
        return
    clock.running_since = now
    clock.status = "running"
    schedule(clock, pcts, calendar)


def stop(clock: SlaClock, now: datetime, calendar: BusinessCalendar, status: str) -> bool:
    """End the clock ('met' or 'stopped'); returns whether the target was kept."""
    if clock.running_since is not None:
        clock.consumed += calendar.between(clock.running_since, now)
    clock.running_since = None
    clock.status = status
    clock.ended_at = now
    clock.next_at = None
    clock.next_pct = None
    return clock.consumed <= clock.target and not clock.breached

"""Process statistics from the event log: the numbers behind the review report and the simulator.

One pass over the events with plain dicts, because a review must read the log of 100,000 cases
in seconds; nothing here touches the store or changes state. Durations are measured twice:
in business time (the process calendar: working hours, holidays, 调休), which is what SLA targets
are written in and so what a step's status is judged on, and in wall time, which is what the
customer lives through. Every table says which one it shows.
"""

from __future__ import annotations

import gc
import heapq
import math
import multiprocessing
import os
import struct
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, tzinfo, UTC
from itertools import chain, islice
from operator import itemgetter
from typing import Any

from engine.time.calendar import BusinessCalendar
from engine.time.durations import parse_duration
from engine.definition.graph import ProcessGraph
from engine.run.log import LogEntry, first_problem, known_type

GATEWAY_KINDS = frozenset({"exclusive", "parallel", "inclusive"})
# kinds whose entry and completion are the same instant: volume is meaningful, duration is not
INSTANT_KINDS = frozenset({"start", "end", "exclusive", "parallel", "inclusive"})
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_HOUR = 3600.0


# -- business time, fast ------------------------------------------------------------------------
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
        return self.calendar.is_working_day(date.fromordinal(day + _EPOCH_ORDINAL))

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


# -- small statistics ------------------------------------------------------------------------------
def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), so small samples read naturally."""
    n = len(sorted_values)
    if n == 0:
        return None
    position = (n - 1) * q
    low = int(math.floor(position))
    high = min(low + 1, n - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def _kth(runs: Sequence[Sequence[float]], k: int) -> float:
    """The k-th smallest (from 0) of the union of sorted runs, found by bisection instead of a merge."""
    if len(runs) == 1:
        return runs[0][k]
    for run in runs:  # the value is in some run: there, it is the first element with more than k at or below it
        lo, hi = 0, len(run)
        while lo < hi:
            mid = (lo + hi) // 2
            if sum(bisect_right(r, run[mid]) for r in runs) > k:
                hi = mid
            else:
                lo = mid + 1
        if lo < len(run) and sum(bisect_left(r, run[lo]) for r in runs) <= k:
            return run[lo]
    raise IndexError(k)


def quantile_of_runs(runs: Sequence[Sequence[float]], q: float, divisor: int | None = None) -> float | None:
    """`quantile` of the values of several sorted runs taken together: the same number, bit for bit.

    With `divisor`, the quantile of every value divided by it (the same order, as dividing by a
    positive number keeps it), without making that list.
    """
    runs = [run for run in runs if len(run)]
    n = sum(len(run) for run in runs)
    if n == 0:
        return None
    position = (n - 1) * q
    low = int(math.floor(position))
    high = min(low + 1, n - 1)
    fraction = position - low
    value_low = _kth(runs, low)
    value_high = value_low if high == low else _kth(runs, high)
    if divisor is not None:
        value_low, value_high = value_low / divisor, value_high / divisor
    return value_low + (value_high - value_low) * fraction


def status_of(median_ratio: float | None, p90_ratio: float | None) -> str:
    """green: p90 within target; amber: median within, p90 over; red: median over; none: no target/data."""
    if median_ratio is None or p90_ratio is None:
        return "none"
    if p90_ratio <= 1.0:
        return "green"
    if median_ratio <= 1.0:
        return "amber"
    return "red"


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / _HOUR


# -- result records ------------------------------------------------------------------------------------
@dataclass
class StepStats:
    """One node. Durations: node entered -> node completed; business hours drive the status."""

    node: str
    label: str
    kind: str
    lane: str | None
    entered: int = 0
    completed: int = 0
    cases: int = 0
    interrupted: int = 0
    median_business_h: float | None = None
    p90_business_h: float | None = None
    median_wall_h: float | None = None
    p90_wall_h: float | None = None
    targets: list[str] = field(default_factory=list)
    target_h: float | None = None  # the single target, when every instance had the same one
    median_ratio: float | None = None  # business duration / that instance's target
    p90_ratio: float | None = None
    status: str = "none"
    sla_started: int = 0
    sla_breached: int = 0
    escalations: int = 0
    rework_cases: int = 0
    reentries: int = 0

    @property
    def breach_rate(self) -> float | None:
        return self.sla_breached / self.sla_started if self.sla_started else None

    @property
    def target_text(self) -> str:
        return " / ".join(self.targets) if self.targets else ""


@dataclass
class EdgeStats:
    key: str
    source: str
    target: str
    count: int
    escalation: bool = False


@dataclass
class Variant:
    """A path through the process (nodes entered, gateways left out); repeated blocks shown once as ↻."""

    path: tuple[str, ...]
    cases: int
    share: float
    median_cycle_business_h: float | None

    @property
    def text(self) -> str:
        return " → ".join(self.path)


@dataclass
class ReworkRow:
    """Re-entries of a node within a case: the rework loops ESIA wants eliminated."""

    node: str
    label: str
    cases_with_rework: int
    reentries: int
    max_visits: int
    share_of_cases: float


@dataclass
class RoleLoad:
    """Tasks per role. Hours are business hours the tasks stood open (queue + work), summed."""

    role: str
    opened: int = 0
    completed: int = 0
    open_business_h: float = 0.0
    open_wall_h: float = 0.0

    @property
    def mean_business_h(self) -> float | None:
        return self.open_business_h / self.completed if self.completed else None


@dataclass
class ClockStats:
    """A case-level SLA clock; consumed is the clock's own business time (pauses excluded)."""

    clock: str
    name: str
    started: int = 0
    met: int = 0
    breached: int = 0
    median_consumed_business_h: float | None = None
    p90_consumed_business_h: float | None = None

    @property
    def breach_rate(self) -> float | None:
        return self.breached / self.started if self.started else None


@dataclass
class EscalationRow:
    scope: str  # node id for task SLAs, "case:<clock>" for case clocks
    level: int
    percent: int
    kind: str  # warned | breached | escalated
    count: int
    actions: str


@dataclass
class CaseRow:
    case_id: str
    status: str
    outcome: str | None
    started_at: datetime
    cycle_business_h: float
    cycle_wall_h: float
    steps: int
    reentries: int
    escalations: int
    breaches: int


@dataclass
class ProcessStats:
    """Everything a review shows, as plain data (JSON-friendly through `to_dict`)."""

    process_id: str
    name: str
    since: datetime | None
    until: datetime | None
    cases: int = 0
    completed: int = 0
    cancelled: int = 0
    open: int = 0
    incidents: int = 0
    events: int = 0
    first_event: datetime | None = None
    last_event: datetime | None = None
    cycle_median_business_h: float | None = None
    cycle_p90_business_h: float | None = None
    cycle_median_wall_h: float | None = None
    cycle_p90_wall_h: float | None = None
    steps: dict[str, StepStats] = field(default_factory=dict)
    edges: dict[str, EdgeStats] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    variant_count: int = 0
    rework: list[ReworkRow] = field(default_factory=list)
    roles: dict[str, RoleLoad] = field(default_factory=dict)
    clocks: dict[str, ClockStats] = field(default_factory=dict)
    escalations: list[EscalationRow] = field(default_factory=list)
    escalations_by_kind: dict[str, int] = field(default_factory=dict)
    slowest: list[CaseRow] = field(default_factory=list)
    task_sla_started: int = 0
    task_sla_breached: int = 0
    workers: int = field(default=1, compare=False)  # processes that read the log: how, not what, so not in to_dict

    @property
    def escalation_total(self) -> int:
        """Escalations proper (breach and beyond); 50 %/75 % warnings are counted apart."""
        return self.escalations_by_kind.get("breached", 0) + self.escalations_by_kind.get("escalated", 0)

    @property
    def case_clock_breach_rate(self) -> float | None:
        started = sum(c.started for c in self.clocks.values())
        return sum(c.breached for c in self.clocks.values()) / started if started else None

    @property
    def task_breach_rate(self) -> float | None:
        return self.task_sla_breached / self.task_sla_started if self.task_sla_started else None

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        del raw["workers"]
        raw["variants"] = [{**asdict(v), "path": " → ".join(v.path)} for v in self.variants]
        return raw


# -- the pass ---------------------------------------------------------------------------------------------
WORKERS_ENV = "SVCFLOW_REVIEW_WORKERS"  # how many processes read a long log (see review_workers)
PARALLEL_MIN_EVENTS = 500_000  # shorter logs are read in one process: a worker would cost more than it saves
_CHUNKS_PER_READER = 32  # what readers take at a time (see _Plan): the last chunk is how unevenly they can end
_LEFT_TO_PARENT = 2  # chunks the parent's partner leaves it (see _child)
_CHILD_GRACE_SECONDS = 60.0  # on top of 4x the parent's own reading time, before a child is given up


class _Case:
    """One case while the log is read: what the tables need of it, and the visits it has open."""

    __slots__ = ("start", "started_at", "end", "status", "outcome", "path", "escalations", "breaches", "pending",
                 "last", "breached", "born", "business_start", "business_end")

    def __init__(self, start: float, started_at: datetime, business_start: float, born: int = 0) -> None:
        self.start = start
        self.started_at = started_at
        self.business_start = business_start  # BusinessTime.at_ts of start and end: a cycle is one subtraction
        self.end: float | None = None
        self.business_end: float | None = None
        self.status = "running"
        self.outcome: str | None = None
        self.path: list[str] = []
        self.escalations = 0
        self.breaches = 0
        # node -> [node, entered ts, target seconds, breach counted, business seconds at entry]
        self.pending: dict[str, list[Any]] = {}
        self.last: list[Any] | None = None  # the visit entered last (an SLA clock started next belongs to it)
        self.breached: set[str] | None = None  # case clocks already counted as breached
        self.born = born  # index of its case_started row (rows before it are not the case's, as in one pass)

    def state(self, case_id: str) -> tuple[Any, ...]:
        """A plain tuple: what a worker process sends back (pickles in C, unlike slotted objects)."""
        return (case_id, self.start, self.started_at, self.end, self.status, self.outcome, self.path,
                self.escalations, self.breaches, self.pending, self.last, self.breached, self.born,
                self.business_start, self.business_end)

    @classmethod
    def restore(cls, state: tuple[Any, ...]) -> _Case:
        case = cls(state[1], state[2], state[13], state[12])
        (_, _, _, case.end, case.status, case.outcome, case.path, case.escalations, case.breaches, case.pending,
         case.last, case.breached, _, _, case.business_end) = state
        return case


def compress_loops(path: Sequence[str]) -> tuple[str, ...]:
    """Collapse directly repeated blocks (A B C B C D -> A (B → C)↻ D) so loop counts do not split variants."""
    out: list[str] = list(path)
    changed = True
    while changed:
        changed = False
        n = len(out)
        for size in range(1, n // 2 + 1):
            for i in range(0, n - 2 * size + 1):
                block = out[i:i + size]
                if out[i + size:i + 2 * size] != block:
                    continue
                j = i + 2 * size
                while out[j:j + size] == block:
                    j += size
                inner = block[0] if size == 1 else " → ".join(block)
                loop = inner if inner.endswith("↻") and size == 1 else f"({inner})↻"
                out = out[:i] + [loop] + out[j:]
                changed = True
                break
            if changed:
                break
    return tuple(out)


# the event types read, numbered for the pass's dispatch; below 3: events whose node alone may show there is
# nothing to do (see _scan)
_CODES: dict[str, int] = {
    "node_completed": 0, "sla_started": 1, "sla_met": 2, "node_entered": 3, "task_completed": 4, "edge_taken": 5,
    "escalated": 6, "sla_breached": 7, "task_cancelled": 8, "case_completed": 9, "case_cancelled": 9,
    "case_started": 10, "incident": 11,
}


def _rows(events: Iterable[LogEntry]) -> Iterable[tuple[Any, ...]]:
    """Events as plain tuples: a tuple's fields are several times cheaper to read than attributes."""
    if isinstance(events, list) and events and isinstance(events[0], tuple):
        return events  # log entries are NamedTuples: already tuples in this field order
    return ((e.case_id, e.process_id, None, e.at, e.type, e.node, e.data) for e in events)


class _Stamps:
    """POSIX timestamps of aware datetimes at a third of the cost of `datetime.timestamp()`.

    `timestamp()` asks the zone for its offset and builds a timedelta on every call (about 1 µs
    with zoneinfo); a review converts millions of instants, almost all in one zone. Here the
    offset is looked up once per local day, for days on which it does not change (checked every
    hour, both folds: a DST change shows as a different offset before and after it); other days,
    other zones and naive datetimes go to `timestamp()`. The result is the same float, microseconds
    divided by 10**6 with one rounding, as `timestamp()` computes it. `_scan` inlines the fast path.
    """

    def __init__(self) -> None:
        self.zone: tzinfo | None = None
        self.bases: dict[int, int] = {}  # local day ordinal -> UTC seconds of its local midnight
        self._irregular: set[int] = set()

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
        return (ordinal - _EPOCH_ORDINAL) * 86400 - offset.days * 86400 - offset.seconds


class _Context:
    """What every reader of the log needs to know of the process, worked out once from the definition."""

    def __init__(self, graph: ProcessGraph, since: datetime | None, until: datetime | None) -> None:
        definition = graph.definition
        self.process_id = definition.id
        self.day_seconds = graph.calendar.day_seconds
        self.since_ts = since.timestamp() if since else None
        self.until_ts = until.timestamp() if until else None
        kinds = {n: graph.kind(n) for n in graph.nodes}
        self.instant_nodes = frozenset(n for n, k in kinds.items() if k in INSTANT_KINDS)
        # a human step's visit ends at task_completed (same instant as its node_completed, which names the role)
        self.closed_elsewhere = self.instant_nodes | frozenset(n for n, k in kinds.items() if k == "human")
        self.gateway_nodes = frozenset(n for n, k in kinds.items() if k in GATEWAY_KINDS)
        self.fixed_targets: dict[str, int] = {}  # node -> target seconds, for SLAs without policies
        self.fixed_texts: dict[str, str] = {}
        policy_nodes: set[str] = set()
        for node_id, spec in graph.nodes.items():
            sla = getattr(spec, "sla", None)
            if sla is None:
                continue
            if sla.target is not None and not sla.policies:
                self.fixed_texts[node_id] = str(sla.target)
                self.fixed_targets[node_id] = parse_duration(str(sla.target)).total_seconds(self.day_seconds)
            else:
                policy_nodes.add(node_id)
        # sla_started matters only where the target depends on the case, and for case clocks (started at
        # the case start or at their start_on node); elsewhere the definition says what the event would
        self.sla_event_nodes = frozenset(policy_nodes | {c.start_on for c in definition.clocks})
        # likewise sla_met: at a human step where no case clock stops, it is the step's own task clock,
        # judged at its completion (case clocks are met at their stop node, or at the case's end: node None)
        self.task_clock_nodes = frozenset(n for n, k in kinds.items() if k == "human") - set(graph.clocks_stopped_at)
        # where every visit has the definition's one target, duration/target ratios are the business
        # durations divided by it: their quantiles come from those, and no list of ratios is kept
        self.ratio_divisor = {node: seconds for node, seconds in self.fixed_targets.items()
                              if seconds and node not in self.sla_event_nodes}
        self.btime = BusinessTime(graph.calendar)
        self.stamps = _Stamps()


Run = Sequence[float]  # sorted values: a list, or a memoryview of doubles from a worker


def _pack(values: Sequence[float]) -> bytes:
    """Doubles as raw bytes: pickled by copying, where a list pickles float by float (and an
    array('d') is built item by item through argument parsing, slower still)."""
    return struct.pack(f"{len(values)}d", *values)


def _unpack(raw: bytes) -> Run:
    return memoryview(raw).cast("d")


@dataclass
class _Partial:
    """What one reading of a stretch of the log found, in a form where readings combine exactly.

    Counts add up. Values whose quantiles are shown are kept as sorted runs, one per reading:
    combining readings is appending runs, and `quantile_of_runs` finds the same order statistics
    a sort of everything would. Hours per role are summed with `math.fsum` at the end, whose
    result does not depend on the order of the terms (a running `+=` does, in the last bits).
    A worker sends its runs as raw doubles (`packed`), read in place here (`unpacked`).
    """

    first_ts: float | None = None
    last_end: float = float("-inf")
    interrupted: dict[str, int] = field(default_factory=dict)
    durations: dict[str, tuple[list[Run], list[Run], list[Run]]] = field(default_factory=dict)  # business, wall, ratio
    policy_targets: dict[tuple[str, str], int] = field(default_factory=dict)
    target_seconds: dict[str, int] = field(default_factory=dict)
    edges: dict[str, int] = field(default_factory=dict)
    breached_by_node: dict[str, int] = field(default_factory=dict)
    clock_started: dict[str, int] = field(default_factory=dict)
    clock_met: dict[str, int] = field(default_factory=dict)
    clock_breached: dict[str, int] = field(default_factory=dict)
    clock_consumed: dict[str, list[Run]] = field(default_factory=dict)
    escalation_rows: dict[tuple[Any, ...], int] = field(default_factory=dict)
    escalations_by_node: dict[str, int] = field(default_factory=dict)
    escalations_by_kind: dict[str, int] = field(default_factory=dict)
    role_completed: dict[str, int] = field(default_factory=dict)
    role_wall: dict[str, list[Run]] = field(default_factory=dict)
    role_business: dict[str, list[Run]] = field(default_factory=dict)

    def add(self, other: _Partial) -> None:
        """Take in another reading's findings (in any order: the result is the same)."""
        if other.first_ts is not None and (self.first_ts is None or other.first_ts < self.first_ts):
            self.first_ts = other.first_ts
        self.last_end = max(self.last_end, other.last_end)
        for name in ("interrupted", "policy_targets", "edges", "breached_by_node", "clock_started", "clock_met",
                     "clock_breached", "escalation_rows", "escalations_by_node", "escalations_by_kind",
                     "role_completed"):
            mine: dict[Any, int] = getattr(self, name)
            for key, count in getattr(other, name).items():
                mine[key] = mine.get(key, 0) + count
        self.target_seconds.update(other.target_seconds)
        for node, runs in other.durations.items():
            own = self.durations.get(node)
            if own is None:
                self.durations[node] = runs
            else:
                for mine, theirs in zip(own, runs):
                    mine += theirs
        for name in ("clock_consumed", "role_wall", "role_business"):
            runs_by_key: dict[str, list[Run]] = getattr(self, name)
            for key, runs_of_key in getattr(other, name).items():
                runs_by_key.setdefault(key, []).extend(runs_of_key)

    def packed(self) -> _Partial:
        """The same, with every run as bytes: what a worker sends back."""
        return self._convert(_pack)  # type: ignore[arg-type]

    def unpacked(self) -> _Partial:
        """A worker's result made readable again (without copying the values)."""
        return self._convert(_unpack)  # type: ignore[arg-type]

    def _convert(self, convert: Callable[[Any], Any]) -> _Partial:
        self.durations = {node: tuple([convert(run) for run in runs] for runs in lists)  # type: ignore[misc]
                          for node, lists in self.durations.items()}
        for name in ("clock_consumed", "role_wall", "role_business"):
            setattr(self, name, {key: [convert(run) for run in runs] for key, runs in getattr(self, name).items()})
        return self


class _Tally:
    """What the readings of one process add up to, until `seal` sorts it into a `_Partial`."""

    def __init__(self) -> None:
        self.part = _Partial()  # counts and extremes are kept there as they are
        self.durations: dict[str, tuple[list[float], list[float], list[float]]] = {}  # node -> business, wall, ratio
        self.consumed: dict[str, list[float]] = {}  # case clock -> consumed seconds
        self.role_hours: dict[str, tuple[list[float], list[float]]] = {}  # role -> wall, business of its tasks
        self.unmatched_roles: dict[str, int] = {}  # tasks completed whose opening is not in the log read

    def seal(self) -> _Partial:
        part = self.part
        for node, lists in self.durations.items():
            for values in lists:
                values.sort()
            part.durations[node] = ([lists[0]], [lists[1]], [lists[2]])
        for clock, values in self.consumed.items():
            values.sort()
            part.clock_consumed[clock] = [values]
        part.role_wall = {role: [wall] for role, (wall, _) in self.role_hours.items()}
        part.role_business = {role: [business] for role, (_, business) in self.role_hours.items()}
        part.role_completed = {role: len(self.role_hours[role][0]) if role in self.role_hours else 0
                               for role in set(self.role_hours) | set(self.unmatched_roles)}
        for role, count in self.unmatched_roles.items():
            part.role_completed[role] += count
        return part


def _scan(ctx: _Context, source: Iterable[tuple[Any, ...]], cases: dict[str, _Case], tally: _Tally, *,
          create: bool = True, orphans: list[int] | None = None, position: Callable[[], int] | None = None) -> None:
    """One pass over `source`, adding to the cases in `cases` (and creating those started in it) and to `tally`.

    Events of other processes (e.g. sub-process children) are skipped; events at or after
    `until` are ignored, so the report shows the state as it was at `until`. Cases whose start
    is not in the events (started before `since`) are left out rather than half-counted. A
    worker reading a stretch of the log cannot tell such events from events of cases started
    before its stretch: it records their positions in `orphans`, to be replayed where those
    cases are known.

    The loop is written for speed: local names, per-case records, subscripts for the keys the
    interpreter always writes, events of cases not read here skipped before anything else, and
    the timestamp and business time of an instant worked out once per transition (its events
    share their `at`), only for transitions that need them, and kept in the visit they open.
    A review of 100,000 cases reads well over ten million events.
    """
    process_id = ctx.process_id
    btime = ctx.btime
    bat = btime.at_ts
    bget = btime._cache.get
    stamps = ctx.stamps
    bases_get = stamps.bases.get
    zone = stamps.zone
    slow_stamp = stamps.slow
    day_seconds = ctx.day_seconds
    since_ts = ctx.since_ts
    until_ts = ctx.until_ts
    limited = until_ts is not None
    instant_nodes = ctx.instant_nodes
    closed_elsewhere = ctx.closed_elsewhere
    fixed_get = ctx.fixed_targets.get
    sla_event_nodes = ctx.sla_event_nodes
    task_clock_nodes = ctx.task_clock_nodes
    ratio_divisor = ctx.ratio_divisor

    part = tally.part
    interrupted = part.interrupted
    policy_targets = part.policy_targets
    target_seconds = part.target_seconds
    edges = part.edges
    edges_get = edges.get
    breached_by_node = part.breached_by_node
    clock_started = part.clock_started
    clock_met = part.clock_met
    clock_breached = part.clock_breached
    escalation_rows = part.escalation_rows
    escalations_by_node = part.escalations_by_node
    escalations_by_kind = part.escalations_by_kind
    durations = tally.durations
    consumed_by_clock = tally.consumed
    role_hours = tally.role_hours
    unmatched_roles = tally.unmatched_roles
    first_ts = part.first_ts
    last_end = part.last_end

    def parse_target(text: str) -> int:
        value = target_seconds.get(text)
        if value is None:
            value = parse_duration(text).total_seconds(day_seconds)
            target_seconds[text] = value
        return value

    def breach(clock: str, acc: _Case) -> None:
        """Count a case clock once, whether it reached 100 % (sla_breached) or ended over target (sla_met)."""
        if acc.breached is None:
            acc.breached = set()
        elif clock in acc.breached:
            return
        acc.breached.add(clock)
        acc.breaches += 1
        clock_breached[clock] = clock_breached.get(clock, 0) + 1

    escalation_fields = itemgetter("clock", "level", "percent", "kind", "notify")
    cases_get = cases.get
    codes = dict(_CODES)  # a subscript is cheaper than .get; types read here for nothing are learnt as -1
    last_case: Any = object()  # no row's case yet
    acc: Any = None
    ts_at: Any = None  # the instant `ts` (POSIX seconds) was worked out for
    ts = 0.0
    bts_at: Any = None  # the instant `bts` (business seconds) was worked out for
    bts = 0.0
    for row in source:  # fields are read only where needed: each read touches an object in memory
        try:
            code = codes[row[4]]
        except KeyError:  # a type met for the first time: one the log's contract does not know is refused
            known_type(row)
            code = codes[row[4]] = -1
        if code < 3:  # types read for nothing, and events whose node shows they need no reading
            if code < 0:
                continue
            node = row[5]
            if code == 0:  # node_completed: human steps end at task_completed, instant nodes as they start
                if node in closed_elsewhere:
                    continue
            elif code == 1:  # sla_started: a fixed target, known from the definition
                if node not in sla_event_nodes:
                    continue
            elif node in task_clock_nodes:  # sla_met of a task clock: judged when its step completes
                continue
        if row[0] is not last_case:  # a case read here stays `last_case`; rows of any other are looked up anew
            case_id = row[0]
            found = cases_get(case_id)
            if found is None:  # not a case read here: skipped before any other work
                if code != 10 or row[1] != process_id or not create:
                    if orphans is not None and row[1] == process_id:
                        orphans.append(position())  # type: ignore[misc]
                    continue
                at = row[3]
                if at is not ts_at:
                    ts_at = at
                    base = bases_get(at.toordinal()) if at.tzinfo is zone else None
                    ts = ((base + at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000
                          + at.microsecond) / 1_000_000 if base is not None else slow_stamp(at)
                if (limited and ts >= until_ts) or (since_ts is not None and ts < since_ts):
                    continue
                if at is not bts_at:
                    bts_at = at
                    bts = bget(ts)
                    if bts is None:
                        bts = bat(ts)
                acc = cases[case_id] = _Case(ts, at, bts, position() if position is not None else 0)
                last_case = case_id
                if first_ts is None or ts < first_ts:
                    first_ts = ts
                continue
            acc = found
            last_case = case_id
        if limited:
            at = row[3]
            if at is not ts_at:
                ts_at = at
                base = bases_get(at.toordinal()) if at.tzinfo is zone else None
                ts = ((base + at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000 + at.microsecond) / 1_000_000 \
                    if base is not None else slow_stamp(at)
            if ts >= until_ts:
                continue
        if code < 5:
            if code == 3:  # node_entered
                node = row[5]
                acc.path.append(node)
                if node in instant_nodes:
                    continue
                at = row[3]
                if at is not bts_at:
                    if at is not ts_at:
                        ts_at = at
                        base = bases_get(at.toordinal()) if at.tzinfo is zone else None
                        ts = ((base + at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000
                              + at.microsecond) / 1_000_000 if base is not None else slow_stamp(at)
                    bts_at = at
                    bts = bget(ts)
                    if bts is None:
                        bts = bat(ts)
                visit = [node, ts, fixed_get(node, 0), False, bts]
                acc.pending[node] = visit  # by node: one node is never waited at twice at once
                acc.last = visit
                continue
            if code == 2:  # sla_met: task clocks are judged at their step's completion, case clocks here
                data = row[6]
                clock = data["clock"]
                if clock[0] != "t":
                    clock_met[clock] = clock_met.get(clock, 0) + 1
                    if data.get("in_time") is False:
                        breach(clock, acc)
                    consumed = data.get("consumed")
                    if consumed is not None:
                        values = consumed_by_clock.get(clock)
                        if values is None:
                            values = consumed_by_clock[clock] = []
                        values.append(float(consumed))
                continue
            if code == 1:  # sla_started
                data = row[6]
                clock = data["clock"]
                if clock[0] == "t":  # a task's SLA chosen by policy: it belongs to the visit just entered
                    text = data["target"]
                    key_target = (node, text)
                    policy_targets[key_target] = policy_targets.get(key_target, 0) + 1
                    visit = acc.last
                    if visit is not None and visit[0] == node:
                        seconds = target_seconds.get(text)
                        visit[2] = seconds if seconds is not None else parse_target(text)
                else:
                    clock_started[clock] = clock_started.get(clock, 0) + 1
                continue
            # a visit ends: task_completed for a human step (which names the role), else node_completed
            if code == 4:
                node = row[5]
                role = row[6]["role"]
            else:
                role = None
            item = acc.pending.pop(node, None)
            if item is None:
                if role is not None:
                    unmatched_roles[role] = unmatched_roles.get(role, 0) + 1
                continue
            at = row[3]
            if at is not bts_at:
                if at is not ts_at:
                    ts_at = at
                    base = bases_get(at.toordinal()) if at.tzinfo is zone else None
                    ts = ((base + at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000
                          + at.microsecond) / 1_000_000 if base is not None else slow_stamp(at)
                bts_at = at
                bts = bget(ts)
                if bts is None:
                    bts = bat(ts)
            lists = durations.get(node)
            if lists is None:
                lists = durations[node] = ([], [], [])
            start = item[1]
            if ts > start:
                business = bts - item[4]
                wall = ts - start
            else:
                business = wall = 0.0
            lists[0].append(business)
            lists[1].append(wall)
            target = item[2]
            if target:
                ratio = business / target
                if node not in ratio_divisor:
                    lists[2].append(ratio)
                if ratio > 1.0 and not item[3]:  # ended over its target: a breach the sweep did not see
                    acc.breaches += 1
                    breached_by_node[node] = breached_by_node.get(node, 0) + 1
            if role is not None:  # a human task: its hours go to the role that completed it
                hours = role_hours.get(role)
                if hours is None:
                    hours = role_hours[role] = ([], [])
                hours[0].append(wall)
                hours[1].append(business)
        elif code == 5:  # edge_taken
            key = row[6]["edge"]
            edges[key] = edges_get(key, 0) + 1
        elif code == 6:  # escalated
            data = row[6]
            fields = None
            if len(data) == 5:  # the common shape, notify and no other action: its fields in one C call
                try:
                    fields = escalation_fields(data)
                except KeyError:
                    pass
            if fields is not None:
                clock, level, percent, kind, notify = fields
                task_clock = clock[:1] == "t"
                scope = (row[5] or "?") if task_clock else clock
                row_key = (scope, level, percent, kind, tuple(notify) if notify else (), None, None, None)
            else:
                get = data.get
                clock = get("clock", "")
                kind = get("kind", "")
                task_clock = clock[:1] == "t"
                scope = (row[5] or "?") if task_clock else clock
                notify = get("notify")
                row_key = (scope, get("level", 0), get("percent", 0), kind, tuple(notify) if notify else (),
                           get("reassign"), get("raise_priority"), get("route"))
            escalation_rows[row_key] = escalation_rows.get(row_key, 0) + 1
            escalations_by_kind[kind] = escalations_by_kind.get(kind, 0) + 1
            if kind != "warned":
                acc.escalations += 1
                if task_clock:
                    escalations_by_node[scope] = escalations_by_node.get(scope, 0) + 1
        elif code == 7:  # sla_breached: the clock reached 100 % while running
            clock = row[6].get("clock", "?")
            if clock[:1] == "t":
                node = row[5]
                visit = acc.pending.get(node)
                if visit is not None and not visit[3]:
                    visit[3] = True
                    acc.breaches += 1
                    breached_by_node[node] = breached_by_node.get(node, 0) + 1
            else:
                breach(clock, acc)
        elif code == 8:  # task_cancelled: the visit ends without completing (escalation route, cancellation)
            node = row[5]
            acc.pending.pop(node, None)
            key_node = node or ""
            interrupted[key_node] = interrupted.get(key_node, 0) + 1
        elif code == 9:  # case_completed / case_cancelled
            at = row[3]
            if at is not bts_at:
                if at is not ts_at:
                    ts_at = at
                    base = bases_get(at.toordinal()) if at.tzinfo is zone else None
                    ts = ((base + at.hour * 3600 + at.minute * 60 + at.second) * 1_000_000
                          + at.microsecond) / 1_000_000 if base is not None else slow_stamp(at)
                bts_at = at
                bts = bget(ts)
                if bts is None:
                    bts = bat(ts)
            acc.end = ts
            acc.business_end = bts
            if ts > last_end:
                last_end = ts
            acc.status = "completed" if row[4] == "case_completed" else "cancelled"
            acc.outcome = row[6].get("outcome")
        elif code == 11:  # incident
            if acc.status == "running":
                acc.status = "incident"

    part.first_ts = first_ts
    part.last_end = last_end


@dataclass
class _Cases:
    """The cases one reader created, summed up as far as they can be without the others' cases.

    Cycle times are sorted runs (see `_Partial`); the slowest finished cases are the reader's
    own top `slowest` (the overall top is among them); cases still open are kept whole, because
    their age is measured at a horizon only the combined log knows.
    """

    count: int = 0
    completed: int = 0
    cancelled: int = 0
    incidents: int = 0
    last_seen: float = float("-inf")  # latest case start or open visit's start
    cycles_b: list[Run] = field(default_factory=list)
    cycles_w: list[Run] = field(default_factory=list)
    # raw path -> [number of cases, [runs of the business cycle times of those finished]]
    paths: dict[tuple[str, ...], list[Any]] = field(default_factory=dict)
    slowest_finished: list[tuple[Any, ...]] = field(default_factory=list)  # (business cycle, case id, row fields...)
    open_cases: list[tuple[Any, ...]] = field(default_factory=list)  # (case id, start, business start, row fields...)

    def add(self, other: _Cases) -> None:
        """Take in another reader's cases (in any order: the result is the same)."""
        self.count += other.count
        self.completed += other.completed
        self.cancelled += other.cancelled
        self.incidents += other.incidents
        self.last_seen = max(self.last_seen, other.last_seen)
        self.cycles_b += other.cycles_b
        self.cycles_w += other.cycles_w
        for path, (count, runs) in other.paths.items():
            group = self.paths.get(path)
            if group is None:
                self.paths[path] = [count, runs]
            else:
                group[0] += count
                group[1] += runs
        self.slowest_finished += other.slowest_finished
        self.open_cases += other.open_cases

    def packed(self) -> _Cases:
        """As `_Partial.packed`."""
        return self._convert(_pack)

    def unpacked(self) -> _Cases:
        return self._convert(_unpack)

    def _convert(self, convert: Callable[[Any], Any]) -> _Cases:
        self.cycles_b = [convert(run) for run in self.cycles_b]
        self.cycles_w = [convert(run) for run in self.cycles_w]
        for group in self.paths.values():
            group[1] = [convert(run) for run in group[1]]
        return self


def _summarize(cases: Iterable[tuple[str, _Case]], slowest: int) -> _Cases:
    """Sum up cases whose events have all been read (see `_Cases`)."""
    out = _Cases()
    cycles_b: list[float] = []
    cycles_w: list[float] = []
    paths: dict[tuple[str, ...], list[float]] = {}
    counts: dict[tuple[str, ...], int] = {}
    finished: list[tuple[float, str, _Case, tuple[str, ...]]] = []
    last_seen = out.last_seen
    completed = cancelled = incidents = 0
    for case_id, case in cases:
        status = case.status
        if status == "completed":
            completed += 1
        elif status == "cancelled":
            cancelled += 1
        elif status == "incident":
            incidents += 1
        start = case.start
        if start > last_seen:
            last_seen = start
        if case.pending:
            for visit in case.pending.values():
                if visit[1] > last_seen:
                    last_seen = visit[1]
        path = tuple(case.path)
        cycles = paths.get(path)
        if cycles is None:
            cycles = paths[path] = []
            counts[path] = 1
        else:
            counts[path] += 1
        if case.end is not None:
            business = case.business_end - case.business_start
            cycles_b.append(business)
            cycles_w.append(case.end - start)
            cycles.append(business)
            finished.append((business, case_id, case, path))
        else:
            out.open_cases.append((case_id, start, case.business_start, status, case.outcome, case.started_at, path,
                                   case.escalations, case.breaches))
    for business, case_id, case, path in heapq.nlargest(slowest, finished, key=lambda item: (item[0], item[1])):
        out.slowest_finished.append((business, case_id, case.status, case.outcome, case.started_at,
                                     case.end - case.start, path, case.escalations, case.breaches))
    out.count = len(finished) + len(out.open_cases)
    out.completed, out.cancelled, out.incidents, out.last_seen = completed, cancelled, incidents, last_seen
    cycles_b.sort()
    cycles_w.sort()
    out.cycles_b, out.cycles_w = [cycles_b], [cycles_w]
    for path, cycles in paths.items():
        cycles.sort()
        out.paths[path] = [counts[path], [cycles]]
    return out


def _can_fork() -> bool:
    """Whether this process may fork workers (a daemonic multiprocessing worker may not have children)."""
    return "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def review_workers(events: int, workers: int | None = None, *, min_events: int = PARALLEL_MIN_EVENTS) -> int:
    """How many processes read a log of `events` events.

    `workers` (or the environment variable SVCFLOW_REVIEW_WORKERS when it is None) sets the
    number; unset, it is the number of CPUs this process may use. 1 means one process. A log
    shorter than `min_events` is read in one process whatever the setting, because starting a
    worker costs more than it saves there; so is any log where processes cannot be forked.
    """
    if workers is None:
        raw = os.environ.get(WORKERS_ENV, "").strip()
        if raw:
            try:
                workers = int(raw)
            except ValueError:
                raise ValueError(f"{WORKERS_ENV} must be a whole number of processes, got {raw!r}") from None
    if workers is not None and workers < 1:
        raise ValueError(f"the number of review workers must be at least 1, got {workers}")
    count = workers if workers is not None else _cpus()
    if count <= 1 or events < max(min_events, 2) or not _can_fork():
        return 1
    return min(count, events)


def compute_stats(graph: ProcessGraph, events: Iterable[LogEntry], *, since: datetime | None = None,
                  until: datetime | None = None, slowest: int = 10, variants: int = 15, workers: int | None = None,
                  min_parallel_events: int = PARALLEL_MIN_EVENTS) -> ProcessStats:
    """Statistics of the cases of `graph`'s process that started in [since, until).

    A long log (a list of at least `min_parallel_events` events) is read by several processes
    when more than one CPU is available (see `review_workers`; `workers=1` or
    SVCFLOW_REVIEW_WORKERS=1 keeps it in this one). The log is cut into consecutive stretches,
    not dealt out by case: a forked process that touches an object copies the memory page it
    lives on, so each process must touch only its own rows. Each worker reads the cases started
    in its stretch; the events it meets of earlier stretches' cases are replayed here afterwards,
    in order. Where stretches end is settled as the reading goes (see `_Plan`), so a worker that
    runs slower reads less. The result is the same as one process's, to the last bit.

    The cyclic garbage collector is paused meanwhile: the pass creates only acyclic records, and
    over a log of ten million events its full collections would otherwise cost more than the pass.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _compute(graph, events, since, until, slowest, variants, workers, min_parallel_events)
    except (KeyError, TypeError, AttributeError, IndexError):
        # the fast pass reads payload fields by subscript; when one is missing, say which event lacks it
        found = first_problem(events) if isinstance(events, Sequence) else None
        if found is None:
            raise
        raise found from None
    finally:
        if enabled:
            gc.enable()


def _compute(graph: ProcessGraph, events: Iterable[LogEntry], since: datetime | None, until: datetime | None,
             slowest: int, variants: int, workers: int | None, min_parallel_events: int) -> ProcessStats:
    if True:
        ctx = _Context(graph, since, until)
        rows = _rows(events)
        first: tuple[Any, ...] | None
        if isinstance(rows, list):
            first = rows[0] if rows else None
            count = review_workers(len(rows), workers, min_events=min_parallel_events)
            n_events = len(rows)
        else:
            stream = iter(rows)
            first = next(stream, None)
            rows = stream if first is None else chain((first,), stream)
            count, n_events = 1, 0
        if first is not None:
            # the zone of the log, and business time counted from its first day, whoever reads which stretch
            # (business seconds are floats whose last bits depend on where the count starts)
            ctx.stamps.zone = first[3].tzinfo
            ctx.btime.at_ts(first[3].timestamp())
        if count > 1:
            part, summary = _read_parallel(ctx, rows, count, slowest)  # type: ignore[arg-type]
        else:
            cases: dict[str, _Case] = {}
            tally = _Tally()
            _scan(ctx, rows, cases, tally)
            part = tally.seal()
            summary = _summarize(cases.items(), slowest)
        stats = _assemble(graph, ctx, part, summary, since, until, slowest, variants, n_events)
        stats.workers = count
        return stats


class _Plan:
    """How a log is shared out among `count` readers, with what each has taken so far (in shared memory).

    The log is cut into consecutive segments, one per pair of readers. In a segment one reader
    goes forwards from its start and the other backwards from its end, a chunk at a time, until
    they meet: wherever one runs slower, the other reads more, and neither waits. What a reader
    takes is thus one stretch of the log. With an odd count the last segment has one reader.
    """

    def __init__(self, n: int, count: int, context: Any) -> None:
        self.n = n
        self.readers: list[tuple[int, bool]] = []  # (segment, forwards); the parent is the first
        for reader in range(count):
            self.readers.append((reader // 2, reader % 2 == 0))
        segments = (count + 1) // 2
        readers_in = [2] * (count // 2) + [1] * (count % 2)
        self.starts = [round(n * sum(readers_in[:s]) / count) for s in range(segments + 1)]
        self.chunk = max(1, n // (count * _CHUNKS_PER_READER))
        self.chunks = [-(-(self.starts[s + 1] - self.starts[s]) // self.chunk) for s in range(segments)]
        claims: list[int] = []
        for count_s in self.chunks:
            claims += [0, count_s - 1]  # next chunk from the front, next from the back
        self.claims = context.RawArray("q", claims)
        self.lock = context.Lock()

    def claim(self, segment: int, forwards: bool, leave: int = 0) -> int | None:
        """The next chunk of the segment for a reader going that way, or None when the readers have met
        (or only `leave` chunks are left, which the reader leaves to the other)."""
        with self.lock:
            front, back = self.claims[2 * segment], self.claims[2 * segment + 1]
            if back - front < leave:
                return None
            if forwards:
                self.claims[2 * segment] = front + 1
                return front
            self.claims[2 * segment + 1] = back - 1
            return back

    def rows_of(self, segment: int, chunk: int) -> tuple[int, int]:
        lo = self.starts[segment] + chunk * self.chunk
        return lo, min(lo + self.chunk, self.starts[segment + 1])

    def stretch(self, reader: tuple[int, bool]) -> tuple[int, int]:
        """The rows a reader took, once the reading is over: the segment's forward reader has all up to the
        first chunk the backward one took (chunks nobody took, when both failed, included)."""
        segment, forwards = reader
        if (segment, not forwards) not in self.readers:
            return self.starts[segment], self.starts[segment + 1]
        meet = min(self.rows_of(segment, self.claims[2 * segment + 1] + 1)[0], self.starts[segment + 1])
        return (self.starts[segment], meet) if forwards else (meet, self.starts[segment + 1])

    def ends_log(self, reader: tuple[int, bool]) -> bool:
        """Whether the reader's stretch runs to the end of the log: its cases can have no events after it."""
        segment, forwards = reader
        return segment == len(self.chunks) - 1 and not (forwards and (segment, False) in self.readers)


def _window(rows: list[tuple[Any, ...]], lo: int, hi: int) -> tuple[Iterable[tuple[Any, ...]], Callable[[], int]]:
    """rows[lo:hi] without copying, and a function telling the position of the row last handed out."""
    it = iter(rows)
    it.__setstate__(lo)  # type: ignore[attr-defined]
    n = len(rows)
    hint = it.__length_hint__  # type: ignore[attr-defined]
    return islice(it, hi - lo), lambda: n - hint() - 1


def _read_forwards(ctx: _Context, rows: list[tuple[Any, ...]], chunks: Iterable[tuple[int, int]],
                   cases: dict[str, _Case], tally: _Tally, orphans: list[int] | None) -> None:
    """Consecutive chunks, in order: as one pass over their stretch."""
    for lo, hi in chunks:
        source, position = _window(rows, lo, hi)
        _scan(ctx, source, cases, tally, orphans=orphans, position=position)


def _read_backwards(ctx: _Context, rows: list[tuple[Any, ...]], chunks: Iterable[tuple[int, int]],
                    cases: dict[str, _Case], tally: _Tally, orphans: list[int]) -> None:
    """Chunks from the end of a stretch backwards, with the result of one forward pass over it.

    A chunk is read for the cases started in it; the events it holds of other cases wait. Once
    a chunk's cases are known, the waiting events of those cases (all further on in the log) are
    read, in log order, so every case sees its events in order. Events still waiting at the end
    belong to cases started before the stretch: they go to the parent as orphans.
    """
    pending: list[int] = []
    for lo, hi in chunks:
        source, position = _window(rows, lo, hi)
        started: dict[str, _Case] = {}
        found: list[int] = []
        _scan(ctx, source, started, tally, orphans=found, position=position)
        cases.update(started)
        ready: list[int] = []
        waiting: list[int] = []
        for index in pending:
            case = started.get(rows[index][0])
            if case is None:
                waiting.append(index)
            elif index > case.born:
                ready.append(index)
        if ready:
            ready.sort()
            _scan(ctx, map(rows.__getitem__, ready), cases, tally, create=False)
        pending = waiting + found
    orphans += pending


def _claimed(plan: _Plan, segment: int, forwards: bool, leave: int = 0) -> Iterator[tuple[int, int]]:
    while (chunk := plan.claim(segment, forwards, leave)) is not None:
        yield plan.rows_of(segment, chunk)


_Reading = tuple[_Partial, _Cases | None, list[tuple[Any, ...]], list[int]]  # what a worker sends back


def _read_stretch(ctx: _Context, rows: list[tuple[Any, ...]], chunks: Iterable[tuple[int, int]], forwards: bool,
                  ends_log: bool, slowest: int) -> _Reading:
    """A worker's reading, as plain data cheap to send: its counts and runs; its cases summed up when no
    event can follow its stretch, else their state for the replay; the orphans' positions."""
    cases: dict[str, _Case] = {}
    tally = _Tally()
    orphans: list[int] = []
    if forwards:
        _read_forwards(ctx, rows, chunks, cases, tally, orphans)
    else:
        _read_backwards(ctx, rows, chunks, cases, tally, orphans)
    part = tally.seal().packed()
    if ends_log:
        return part, _summarize(cases.items(), slowest).packed(), [], orphans
    return part, None, [case.state(case_id) for case_id, case in cases.items()], orphans


def _child(conn: Any, ctx: _Context, rows: list[tuple[Any, ...]], plan: _Plan, reader: tuple[int, bool],
           slowest: int) -> None:
    """A forked worker: pure computation on what it inherited; the result goes back through the pipe."""
    try:
        segment, forwards = reader
        # the parent's partner leaves it the last chunks: it has more to do after reading than the parent has
        # before the children's results come in (sorting, packing and summing up against sorting and summing up)
        leave = _LEFT_TO_PARENT if segment == 0 else 0
        chunks = _claimed(plan, segment, forwards, leave)
        conn.send(_read_stretch(ctx, rows, chunks, forwards, plan.ends_log(reader), slowest))
    except BaseException:  # the parent reads this stretch itself: same code, so a real error shows there
        pass
    finally:
        conn.close()


def _read_parallel(ctx: _Context, rows: list[tuple[Any, ...]], count: int, slowest: int) -> tuple[_Partial, _Cases]:
    """This process reads the first stretch, forked children the others (see `_Plan`); then the orphans
    are replayed here, in log order, against the cases they belong to.

    A child that fails, dies or hangs has its stretch read here instead, so a review never
    depends on the children: they only make it faster.
    """
    fork = multiprocessing.get_context("fork")
    plan = _Plan(len(rows), count, fork)
    children: list[tuple[tuple[int, bool], Any, Any]] = []
    readings: list[_Reading] = []
    failed: list[tuple[int, bool]] = []
    finished = False
    try:
        for reader in plan.readers[1:]:
            receiver, sender = fork.Pipe(duplex=False)
            process = fork.Process(target=_child, args=(sender, ctx, rows, plan, reader, slowest), daemon=True)
            try:
                process.start()
            except OSError:  # no process to be had (limits, memory): its partner reads more, the rest is read here
                pass
            sender.close()
            children.append((reader, process, receiver))
        cases: dict[str, _Case] = {}
        tally = _Tally()
        started = time.perf_counter()
        _read_forwards(ctx, rows, _claimed(plan, 0, True), cases, tally, None)
        # the children read about as much: one that takes far longer is stuck (or starved), not waited for
        patience = _CHILD_GRACE_SECONDS + 4 * (time.perf_counter() - started)
        # while the children finish: sort, and sum up the cases that have ended (no event follows a case's
        # end; should one turn up among the orphans, everything is summed up again below)
        part = tally.seal()
        ended = {case_id for case_id, case in cases.items() if case.end is not None}
        early = _summarize(((case_id, cases[case_id]) for case_id in ended), slowest)
        for reader, process, receiver in children:
            result = None
            try:
                if process.pid is not None and receiver.poll(patience):
                    result = receiver.recv()
            except (EOFError, OSError):  # died without a result
                pass
            receiver.close()
            if result is None:
                failed.append(reader)
                if process.pid is not None:  # gone for good before what it took is worked out
                    process.kill()
                    process.join()
            else:
                readings.append(result)
        finished = True
    finally:
        if not finished:
            for _, process, _receiver in children:
                if process.pid is not None:
                    process.kill()
                    process.join()
    for reader in failed:  # every reader has stopped taking chunks: what each took is settled
        readings.append(_read_stretch(ctx, rows, [plan.stretch(reader)], True, plan.ends_log(reader), slowest))
    summary = _Cases()
    orphans: list[int] = []
    for child_part, child_cases, states, child_orphans in readings:
        part.add(child_part.unpacked())
        if child_cases is not None:
            summary.add(child_cases.unpacked())
        for state in states:  # cases of a stretch inside the log: they may have events further on
            cases[state[0]] = _Case.restore(state)
        orphans += child_orphans
    # a case's events before its case_started are not its own, as in one pass
    replay = [index for index in sorted(orphans)
              if (case := cases.get(rows[index][0])) is not None and index > case.born]
    if replay:
        replayed = _Tally()
        _scan(ctx, map(rows.__getitem__, replay), cases, replayed, create=False)
        part.add(replayed.seal())
        if any(rows[index][0] in ended for index in replay):
            ended = set()
            early = _Cases()
    summary.add(early)
    summary.add(_summarize(((case_id, case) for case_id, case in cases.items() if case_id not in ended), slowest))
    for _, process, _receiver in children:  # reaped only now: a child's exit (its memory freed) takes a while
        if process.pid is not None and process.exitcode is None:
            process.join()
    return part, summary


def _assemble(graph: ProcessGraph, ctx: _Context, part: _Partial, summary: _Cases, since: datetime | None,
              until: datetime | None, slowest: int, variant_limit: int, n_events: int) -> ProcessStats:
    """The tables, from the combined readings: the counts and the summed-up cases."""
    definition = graph.definition
    bat = ctx.btime.at_ts
    stats = ProcessStats(definition.id, definition.name.both(), since, until, events=n_events)
    tz = graph.calendar.tz

    # cases and cycle times; the last instant seen: a case end, or the start of what is still open
    stats.cases = summary.count
    stats.completed = summary.completed
    stats.cancelled = summary.cancelled
    stats.open = summary.count - summary.completed - summary.cancelled
    stats.incidents = summary.incidents
    first_ts = part.first_ts
    last_ts = max(part.last_end, summary.last_seen) if first_ts is not None else None
    stats.first_event = datetime.fromtimestamp(first_ts, tz) if first_ts is not None else None
    stats.last_event = datetime.fromtimestamp(last_ts, tz) if last_ts is not None else stats.first_event
    horizon = until.timestamp() if until else (last_ts if last_ts is not None else 0.0)
    stats.cycle_median_business_h = _hours(quantile_of_runs(summary.cycles_b, 0.5))
    stats.cycle_p90_business_h = _hours(quantile_of_runs(summary.cycles_b, 0.9))
    stats.cycle_median_wall_h = _hours(quantile_of_runs(summary.cycles_w, 0.5))
    stats.cycle_p90_wall_h = _hours(quantile_of_runs(summary.cycles_w, 0.9))

    # variants and rework, computed once per distinct raw path
    # (the recorded path has every node entered; variants and rework leave gateways out)
    gateways = ctx.gateway_nodes
    entered: dict[str, int] = {}
    entered_cases: dict[str, int] = {}
    variant_cases: dict[tuple[str, ...], list[Any]] = {}  # variant -> [cases, runs of finished' cycles]
    node_rework_cases: dict[str, int] = {}
    node_reentries: dict[str, int] = {}
    node_max: dict[str, int] = {}
    shape_of: dict[tuple[str, ...], tuple[int, int]] = {}  # raw path -> (steps, re-entries)
    for raw, (members, runs) in summary.paths.items():
        for node in raw:
            entered[node] = entered.get(node, 0) + members
        for node in set(raw):
            entered_cases[node] = entered_cases.get(node, 0) + members
        path = tuple(node for node in raw if node not in gateways)
        variant = variant_cases.setdefault(compress_loops(path), [0, []])
        variant[0] += members
        variant[1] += runs
        visits: dict[str, int] = {}
        for node in path:
            visits[node] = visits.get(node, 0) + 1
        extra = 0
        for node, count in visits.items():
            if count > 1:
                node_rework_cases[node] = node_rework_cases.get(node, 0) + members
                node_reentries[node] = node_reentries.get(node, 0) + (count - 1) * members
                node_max[node] = max(node_max.get(node, 0), count)
                extra += count - 1
        shape_of[raw] = (len(path), extra)
    total = max(stats.cases, 1)
    ranked = sorted(variant_cases.items(), key=lambda item: (-item[1][0], item[0]))
    stats.variant_count = len(ranked)
    for path, (members, runs) in ranked[:variant_limit]:
        stats.variants.append(Variant(path, members, members / total, _hours(quantile_of_runs(runs, 0.5))))
    for node in sorted(node_rework_cases, key=lambda n: (-node_reentries[n], n)):
        stats.rework.append(ReworkRow(node, _label(graph, node), node_rework_cases[node], node_reentries[node],
                                      node_max[node], node_rework_cases[node] / total))

    # steps
    durations = part.durations
    fixed_texts = ctx.fixed_texts
    target_seconds = part.target_seconds
    policy_counts: dict[str, dict[str, int]] = {}
    for (node, text), count in part.policy_targets.items():
        policy_counts.setdefault(node, {})[str(text)] = count
    order = [n.id for n in definition.nodes]
    seen = set(order)
    order += sorted(n for n in entered if n not in seen)
    for node_id in order:
        node = graph.nodes.get(node_id)
        kind = node.kind if node is not None else "?"  # type: ignore[attr-defined]
        step = StepStats(node_id, _label(graph, node_id), kind, getattr(node, "lane", None))
        step.entered = entered.get(node_id, 0)
        runs = durations.get(node_id, ([], [], []))
        step.completed = sum(len(run) for run in runs[0])
        step.interrupted = part.interrupted.get(node_id, 0)
        step.cases = entered_cases.get(node_id, 0)
        if kind not in INSTANT_KINDS:
            b, w = runs[0], runs[1]
            step.median_business_h = _hours(quantile_of_runs(b, 0.5))
            step.p90_business_h = _hours(quantile_of_runs(b, 0.9))
            step.median_wall_h = _hours(quantile_of_runs(w, 0.5))
            step.p90_wall_h = _hours(quantile_of_runs(w, 0.9))
        if node_id in fixed_texts:
            step.targets = [fixed_texts[node_id]] if step.entered else []
        else:
            per_target = policy_counts.get(node_id, {})
            step.targets = sorted(per_target, key=lambda t: (target_seconds.get(t, 0), t))
        if len(step.targets) == 1:
            step.target_h = _target_seconds(step.targets[0], graph) / _HOUR
        elif not step.targets and getattr(node, "sla", None) is not None:
            policies = node.sla.effective_policies()  # type: ignore[attr-defined]
            step.targets = [str(p.target) for p in policies]
        divisor = ctx.ratio_divisor.get(node_id)
        if divisor is not None:
            step.median_ratio = quantile_of_runs(runs[0], 0.5, divisor)
            step.p90_ratio = quantile_of_runs(runs[0], 0.9, divisor)
        else:
            step.median_ratio = quantile_of_runs(runs[2], 0.5)
            step.p90_ratio = quantile_of_runs(runs[2], 0.9)
        step.status = status_of(step.median_ratio, step.p90_ratio)
        # every visit of a human step with an SLA opens a task and starts its clock
        step.sla_started = step.entered if kind == "human" and getattr(node, "sla", None) is not None else 0
        step.sla_breached = part.breached_by_node.get(node_id, 0)
        step.escalations = part.escalations_by_node.get(node_id, 0)
        step.rework_cases = node_rework_cases.get(node_id, 0)
        step.reentries = node_reentries.get(node_id, 0)
        stats.steps[node_id] = step
    stats.task_sla_started = sum(step.sla_started for step in stats.steps.values())
    stats.task_sla_breached = sum(part.breached_by_node.values())

    # edges (ones the definition does not have, in a fixed order)
    known: dict[str, EdgeStats] = {}
    for edge in definition.edges:
        known[edge.key] = EdgeStats(edge.key, edge.source, edge.target, 0, edge.kind == "escalation")
    for key, count in sorted(part.edges.items()):
        if key in known:
            known[key].count = count
        else:
            source, _, target = key.partition("->")
            known[key] = EdgeStats(key, source, target, count)
    stats.edges = known

    # roles, clocks, escalations
    roles: dict[str, RoleLoad] = {}
    for role in sorted(part.role_completed):
        business_h = math.fsum(chain.from_iterable(part.role_business.get(role, ()))) / _HOUR
        wall_h = math.fsum(chain.from_iterable(part.role_wall.get(role, ()))) / _HOUR
        roles[role] = RoleLoad(role, 0, part.role_completed[role], business_h, wall_h)
    for step in stats.steps.values():  # a task is opened for its lane at every visit of a human step
        if step.kind == "human" and step.lane and step.entered:
            load = roles.get(step.lane)
            if load is None:
                load = roles[step.lane] = RoleLoad(step.lane)
            load.opened += step.entered
    stats.roles = dict(sorted(roles.items()))
    names = {f"case:{c.id}": (c.name.both() if c.name else c.id) for c in definition.clocks}
    for clock in sorted(set(part.clock_started) | set(names)):
        consumed = part.clock_consumed.get(clock, [])
        stats.clocks[clock] = ClockStats(
            clock, names.get(clock, clock), part.clock_started.get(clock, 0), part.clock_met.get(clock, 0),
            part.clock_breached.get(clock, 0), _hours(quantile_of_runs(consumed, 0.5)),
            _hours(quantile_of_runs(consumed, 0.9)),
        )
    rows_out: dict[tuple[str, int, int, str, str], int] = {}
    for (scope, level, percent, kind, notify, reassign, raise_priority, route), count in \
            part.escalation_rows.items():
        actions = [f"notify: {', '.join(notify)}"] if notify else []
        actions += [f"{name}: {value}" for name, value in (("reassign", reassign), ("raise_priority", raise_priority),
                                                            ("route", route)) if value]
        key = (str(scope), int(level or 0), int(percent or 0), str(kind), "; ".join(actions))
        rows_out[key] = rows_out.get(key, 0) + count
    for (scope, level, percent, kind, actions), count in sorted(
            rows_out.items(), key=lambda item: (item[0][0], item[0][2], item[0][3], item[0][4])):
        stats.escalations.append(EscalationRow(scope, level, percent, kind, count, actions))
    stats.escalations_by_kind = dict(sorted(part.escalations_by_kind.items()))

    # slowest cases: finished ones by cycle time, open ones by age at the horizon
    candidates = list(summary.slowest_finished)
    for case_id, start, business_start, status, outcome, started_at, path, escalations, breaches in \
            summary.open_cases:
        end = max(horizon, start)
        candidates.append((bat(end) - business_start, case_id, status, outcome, started_at, end - start, path,
                           escalations, breaches))
    for business, case_id, status, outcome, started_at, wall, path, escalations, breaches in heapq.nlargest(
            slowest, candidates, key=lambda item: (item[0], item[1])):
        steps, reentries = shape_of[path]
        stats.slowest.append(CaseRow(case_id, status, outcome, started_at, business / _HOUR, wall / _HOUR, steps,
                                     reentries, escalations, breaches))
    return stats


def _target_seconds(text: str, graph: ProcessGraph) -> int:
    return parse_duration(text).total_seconds(graph.calendar.day_seconds)


def _label(graph: ProcessGraph, node_id: str) -> str:
    node = graph.nodes.get(node_id)
    return node.label() if node is not None else node_id

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
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Protocol

from engine.calendar import BusinessCalendar
from engine.durations import parse_duration
from engine.graph import ProcessGraph

GATEWAY_KINDS = frozenset({"exclusive", "parallel", "inclusive"})
# kinds whose entry and completion are the same instant: volume is meaningful, duration is not
INSTANT_KINDS = frozenset({"start", "end", "exclusive", "parallel", "inclusive"})
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_HOUR = 3600.0


class LogEvent(Protocol):
    """What the statistics read of an event: StoredEvent from the store, or the simulator's records."""

    @property
    def case_id(self) -> str: ...
    @property
    def process_id(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def type(self) -> str: ...
    @property
    def node(self) -> str | None: ...
    @property
    def data(self) -> dict[str, Any]: ...


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
            local = datetime.fromtimestamp(bucket * 900, timezone.utc).astimezone(self.calendar.tz)
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
        raw["variants"] = [{**asdict(v), "path": " → ".join(v.path)} for v in self.variants]
        return raw


# -- the pass ---------------------------------------------------------------------------------------------
class _Case:
    __slots__ = ("start", "end", "status", "outcome", "path", "escalations", "breaches", "started_at", "pending",
                 "last")

    def __init__(self, start: float, started_at: datetime) -> None:
        self.start = start
        self.started_at = started_at
        self.end: float | None = None
        self.status = "running"
        self.outcome: str | None = None
        self.path: list[str] = []
        self.escalations = 0
        self.breaches = 0
        self.pending: dict[str, list[Any]] = {}  # node -> [node, entered ts, target seconds, breach counted]
        self.last: list[Any] | None = None  # the visit entered last (an SLA clock started next belongs to it)


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


_CODES: dict[str, int] = {
    "node_entered": 0, "node_completed": 1, "task_completed": 2, "edge_taken": 3, "sla_met": 4, "sla_started": 5,
    "escalated": 6, "sla_breached": 7, "task_cancelled": 8, "case_completed": 9, "case_cancelled": 9,
    "case_started": 10, "incident": 11,
}


def _rows(events: Iterable[LogEvent]) -> Iterable[tuple[Any, ...]]:
    """Events as plain tuples: unpacking a tuple is several times cheaper than reading six attributes."""
    if isinstance(events, list) and events and isinstance(events[0], tuple):
        return events  # the simulator's records are NamedTuples in StoredEvent's field order
    return ((e.case_id, e.process_id, None, e.at, e.type, e.node, e.data) for e in events)


def compute_stats(graph: ProcessGraph, events: Iterable[LogEvent], *, since: datetime | None = None,
                  until: datetime | None = None, slowest: int = 10, variants: int = 15) -> ProcessStats:
    """Statistics of the cases of `graph`'s process that started in [since, until).

    The cyclic garbage collector is paused meanwhile: the pass creates only acyclic records, and
    over a log of ten million events its full collections would otherwise cost more than the pass.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _compute(graph, events, since, until, slowest, variants)
    finally:
        if enabled:
            gc.enable()


def _compute(graph: ProcessGraph, events: Iterable[LogEvent], since: datetime | None, until: datetime | None,
             slowest: int, variants: int) -> ProcessStats:
    """The single pass (see compute_stats).

    Events of other processes (e.g. sub-process children) are skipped; events at or after
    `until` are ignored, so the report shows the state as it was at `until`. Cases whose start
    is not in the events (started before `since`) are left out rather than half-counted.
    The loop is written for speed (one pass, local names, per-case dicts, one timestamp per
    transition, subscripts for the keys the interpreter always writes): a review of 100,000
    cases reads well over ten million events.
    """
    definition = graph.definition
    process_id = definition.id
    btime = BusinessTime(graph.calendar)
    bat = btime.at_ts
    bget = btime._cache.get
    day_seconds = graph.calendar.day_seconds
    since_ts = since.timestamp() if since else None
    until_ts = until.timestamp() if until else None
    instant_nodes = frozenset(n for n in graph.nodes if graph.kind(n) in INSTANT_KINDS)
    # a human step's visit ends at task_completed (same instant as its node_completed, which names the role)
    closed_elsewhere = instant_nodes | frozenset(n for n in graph.nodes if graph.kind(n) == "human")
    gateway_nodes = frozenset(n for n in graph.nodes if graph.kind(n) in GATEWAY_KINDS)

    cases: dict[str, _Case] = {}
    interrupted: defaultdict[str, int] = defaultdict(int)
    per_node: defaultdict[str, tuple[list[float], list[float], list[float]]] = defaultdict(lambda: ([], [], []))
    policy_targets: defaultdict[tuple[str, str], int] = defaultdict(int)  # (node, target text) -> task clocks
    fixed_targets: dict[str, int] = {}  # node -> target seconds, for SLAs without policies
    fixed_texts: dict[str, str] = {}
    policy_nodes: set[str] = set()
    for node_id, spec in graph.nodes.items():
        sla = getattr(spec, "sla", None)
        if sla is None:
            continue
        if sla.target is not None and not sla.policies:
            fixed_texts[node_id] = str(sla.target)
            fixed_targets[node_id] = parse_duration(str(sla.target)).total_seconds(day_seconds)
        else:
            policy_nodes.add(node_id)
    # sla_started matters only where the target depends on the case, and for case clocks (started at
    # the case start or at their start_on node); elsewhere the definition says what the event would
    sla_event_nodes = frozenset(policy_nodes | {c.start_on for c in definition.clocks})
    breached_clocks: set[tuple[str, str]] = set()
    breached_by_node: defaultdict[str, int] = defaultdict(int)
    case_clock_started: defaultdict[str, int] = defaultdict(int)
    case_clock_met: defaultdict[str, int] = defaultdict(int)
    case_clock_consumed: defaultdict[str, list[float]] = defaultdict(list)
    case_clock_breached: defaultdict[str, int] = defaultdict(int)
    escalation_rows: defaultdict[tuple[Any, ...], int] = defaultdict(int)
    escalations_by_node: defaultdict[str, int] = defaultdict(int)
    escalations_by_kind: defaultdict[str, int] = defaultdict(int)
    role_completed: defaultdict[str, int] = defaultdict(int)
    role_wall: defaultdict[str, float] = defaultdict(float)
    role_business: defaultdict[str, float] = defaultdict(float)
    target_seconds: dict[str, int] = {}
    n_events = 0
    first_ts: float | None = None
    last_ts: float = float("-inf")

    def parse_target(text: str) -> int:
        value = target_seconds.get(text)
        if value is None:
            value = parse_duration(text).total_seconds(day_seconds)
            target_seconds[text] = value
        return value

    def breach(case_id: str, clock: str, acc: _Case) -> None:
        """Count a case clock once, whether it reached 100 % (sla_breached) or ended over target (sla_met)."""
        key = (case_id, clock)
        if key in breached_clocks:
            return
        breached_clocks.add(key)
        acc.breaches += 1
        case_clock_breached[clock] += 1

    last_case: Any = None
    acc: Any = None
    last_at: Any = None
    ts = 0.0
    beyond = False
    edges: list[str] = []
    add_edge = edges.append
    codes = _CODES.get
    rows = _rows(events)
    for case_id, pid, _seq, at, typ, node, data in rows:
        code = codes(typ)
        if code is None or pid != process_id:
            continue
        if case_id is not last_case:
            last_case = case_id
            acc = cases.get(case_id)
        if at is not last_at:  # events of one transition share their instant: one timestamp per transition
            last_at = at
            ts = at.timestamp()
            beyond = until_ts is not None and ts >= until_ts
        if acc is None or beyond:
            if beyond or code != 10 or (since_ts is not None and ts < since_ts):
                continue
            acc = cases[case_id] = _Case(ts, at)
            if first_ts is None or ts < first_ts:
                first_ts = ts
            continue
        if code < 5:
            if code == 0:  # node_entered
                acc.path.append(node)
                if node in instant_nodes:
                    continue
                visit = [node, ts, fixed_targets.get(node, 0), False]
                acc.pending[node] = visit  # by node: one node is never waited at twice at once
                acc.last = visit
            elif code < 3:  # node_completed, or task_completed for a human step
                if code == 2:
                    role = data["role"]
                    role_completed[role] += 1
                elif node in closed_elsewhere:
                    continue
                else:
                    role = None
                item = acc.pending.pop(node, None)
                if item is None:
                    continue
                start = item[1]
                lists = per_node[node]
                if ts > start:
                    b1 = bget(ts)
                    if b1 is None:
                        b1 = bat(ts)
                    b0 = bget(start)
                    if b0 is None:
                        b0 = bat(start)
                    business = b1 - b0
                    wall = ts - start
                else:
                    business = wall = 0.0
                lists[0].append(business)
                lists[1].append(wall)
                target = item[2]
                if target:
                    ratio = business / target
                    lists[2].append(ratio)
                    if ratio > 1.0 and not item[3]:  # ended over its target: a breach the sweep did not see
                        acc.breaches += 1
                        breached_by_node[node] += 1
                if role is not None:  # a human task: its hours go to the role that completed it
                    role_wall[role] += wall
                    role_business[role] += business
            elif code == 3:  # edge_taken
                add_edge(data["edge"])
            else:  # sla_met: task clocks are judged at node_completed, case clocks here
                clock = data["clock"]
                if clock[0] != "t":
                    case_clock_met[clock] += 1
                    if data.get("in_time") is False:
                        breach(case_id, clock, acc)
                    consumed = data.get("consumed")
                    if consumed is not None:
                        case_clock_consumed[clock].append(float(consumed))
        elif code < 8:
            if code == 5:  # sla_started
                if node not in sla_event_nodes:
                    continue  # a fixed target, known from the definition
                clock = data["clock"]
                if clock[0] == "t":  # a task's SLA chosen by policy: it belongs to the visit just entered
                    text = data["target"]
                    policy_targets[(node, text)] += 1
                    visit = acc.last
                    if visit is not None and visit[0] == node:
                        seconds = target_seconds.get(text)
                        visit[2] = seconds if seconds is not None else parse_target(text)
                else:
                    case_clock_started[clock] += 1
            elif code == 6:  # escalated
                clock = data.get("clock", "")
                kind = data.get("kind", "")
                task_clock = clock[:1] == "t"
                scope = (node or "?") if task_clock else clock
                notify = data.get("notify")
                escalation_rows[(scope, data.get("level", 0), data.get("percent", 0), kind,
                                 tuple(notify) if notify else (), data.get("reassign"), data.get("raise_priority"),
                                 data.get("route"))] += 1
                escalations_by_kind[kind] += 1
                if kind != "warned":
                    acc.escalations += 1
                    if task_clock:
                        escalations_by_node[scope] += 1
            else:  # sla_breached: the clock reached 100 % while running
                clock = data.get("clock", "?")
                if clock[:1] == "t":
                    visit = acc.pending.get(node)
                    if visit is not None and not visit[3]:
                        visit[3] = True
                        acc.breaches += 1
                        breached_by_node[node] += 1
                else:
                    breach(case_id, clock, acc)
        elif code == 8:  # task_cancelled: the visit ends without completing (escalation route, cancellation)
            acc.pending.pop(node, None)
            interrupted[node or ""] += 1
        elif code == 9:  # case_completed / case_cancelled
            acc.end = ts
            if ts > last_ts:
                last_ts = ts
            acc.status = "completed" if typ == "case_completed" else "cancelled"
            acc.outcome = data.get("outcome")
        elif code == 11:  # incident
            if acc.status == "running":
                acc.status = "incident"

    n_events = len(rows) if isinstance(rows, list) else 0
    for case in cases.values():  # the last instant seen: a case end, or the start of what is still open
        last_ts = max(last_ts, case.start, *(visit[1] for visit in case.pending.values()))
    roles: dict[str, RoleLoad] = {}
    for role in sorted(role_completed):
        roles[role] = RoleLoad(role, 0, role_completed[role], role_business.get(role, 0.0) / _HOUR,
                               role_wall.get(role, 0.0) / _HOUR)
    policy_counts: dict[str, dict[str, int]] = {}
    for (node, text), count in policy_targets.items():
        policy_counts.setdefault(node, {})[str(text)] = count
    rows_out: dict[tuple[str, int, int, str, str], int] = {}
    for (scope, level, percent, kind, notify, reassign, raise_priority, route), count in escalation_rows.items():
        actions = [f"notify: {', '.join(notify)}"] if notify else []
        actions += [f"{name}: {value}" for name, value in (("reassign", reassign), ("raise_priority", raise_priority),
                                                            ("route", route)) if value]
        key = (str(scope), int(level or 0), int(percent or 0), str(kind), "; ".join(actions))
        rows_out[key] = rows_out.get(key, 0) + count
    return _assemble(graph, btime, cases, since, until, slowest, variants, n_events, first_ts,
                     last_ts if first_ts is not None else None,
                     gateway_nodes=gateway_nodes, completed={n: len(v[0]) for n, v in per_node.items()},
                     interrupted=dict(interrupted), durations_b={n: v[0] for n, v in per_node.items()},
                     durations_w={n: v[1] for n, v in per_node.items()},
                     ratios={n: v[2] for n, v in per_node.items()},
                     policy_counts=policy_counts, fixed_texts=fixed_texts, policy_nodes=policy_nodes,
                     edge_counts=dict(Counter(edges)), breached_by_node=dict(breached_by_node),
                     case_clock_started=dict(case_clock_started), case_clock_met=dict(case_clock_met),
                     case_clock_consumed=dict(case_clock_consumed), case_clock_breached=dict(case_clock_breached),
                     escalation_rows=rows_out, escalations_by_node=dict(escalations_by_node),
                     escalations_by_kind=dict(escalations_by_kind), roles=roles, target_seconds=target_seconds)


def _assemble(graph: ProcessGraph, btime: BusinessTime, cases: dict[str, _Case], since: datetime | None,
              until: datetime | None, slowest: int, variant_limit: int, n_events: int, first_ts: float | None,
              last_ts: float | None, **acc: Any) -> ProcessStats:
    definition = graph.definition
    stats = ProcessStats(definition.id, definition.name.both(), since, until, events=n_events)
    tz = graph.calendar.tz
    stats.first_event = datetime.fromtimestamp(first_ts, tz) if first_ts is not None else None
    stats.last_event = datetime.fromtimestamp(last_ts, tz) if last_ts is not None else stats.first_event
    horizon = until.timestamp() if until else (last_ts if last_ts is not None else 0.0)

    # cases, cycle times, paths
    cycles_b: list[float] = []
    cycles_w: list[float] = []
    by_path: dict[tuple[str, ...], list[_Case]] = {}
    for case in cases.values():
        stats.cases += 1
        if case.status == "completed":
            stats.completed += 1
        elif case.status == "cancelled":
            stats.cancelled += 1
        else:
            stats.open += 1
            if case.status == "incident":
                stats.incidents += 1
        if case.end is not None:
            cycles_b.append(btime.at_ts(case.end) - btime.at_ts(case.start))
            cycles_w.append(case.end - case.start)
        by_path.setdefault(tuple(case.path), []).append(case)
    cycles_b.sort()
    cycles_w.sort()
    stats.cycle_median_business_h = _hours(quantile(cycles_b, 0.5))
    stats.cycle_p90_business_h = _hours(quantile(cycles_b, 0.9))
    stats.cycle_median_wall_h = _hours(quantile(cycles_w, 0.5))
    stats.cycle_p90_wall_h = _hours(quantile(cycles_w, 0.9))

    # variants and rework, computed once per distinct raw path
    # (the recorded path has every node entered; variants and rework leave gateways out)
    gateways: frozenset[str] = acc["gateway_nodes"]
    entered: dict[str, int] = {}
    entered_cases: dict[str, int] = {}
    variant_cases: dict[tuple[str, ...], list[_Case]] = {}
    node_rework_cases: dict[str, int] = {}
    node_reentries: dict[str, int] = {}
    node_max: dict[str, int] = {}
    reentries_of: dict[int, int] = {}
    steps_of: dict[int, int] = {}
    for raw, members in by_path.items():
        for node in raw:
            entered[node] = entered.get(node, 0) + len(members)
        for node in set(raw):
            entered_cases[node] = entered_cases.get(node, 0) + len(members)
        path = tuple(node for node in raw if node not in gateways)
        variant_cases.setdefault(compress_loops(path), []).extend(members)
        visits: dict[str, int] = {}
        for node in path:
            visits[node] = visits.get(node, 0) + 1
        extra = 0
        for node, count in visits.items():
            if count > 1:
                node_rework_cases[node] = node_rework_cases.get(node, 0) + len(members)
                node_reentries[node] = node_reentries.get(node, 0) + (count - 1) * len(members)
                node_max[node] = max(node_max.get(node, 0), count)
                extra += count - 1
        for case in members:
            reentries_of[id(case)] = extra
            steps_of[id(case)] = len(path)
    total = max(stats.cases, 1)
    ranked = sorted(variant_cases.items(), key=lambda item: (-len(item[1]), item[0]))
    stats.variant_count = len(ranked)
    for path, members in ranked[:variant_limit]:
        done = sorted(btime.at_ts(c.end) - btime.at_ts(c.start) for c in members if c.end is not None)
        stats.variants.append(Variant(path, len(members), len(members) / total, _hours(quantile(done, 0.5))))
    for node in sorted(node_rework_cases, key=lambda n: (-node_reentries[n], n)):
        stats.rework.append(ReworkRow(node, _label(graph, node), node_rework_cases[node], node_reentries[node],
                                      node_max[node], node_rework_cases[node] / total))

    # steps
    order = [n.id for n in definition.nodes]
    seen = set(order)
    order += sorted(n for n in entered if n not in seen)
    target_seconds: dict[str, int] = acc["target_seconds"]
    for node_id in order:
        node = graph.nodes.get(node_id)
        kind = node.kind if node is not None else "?"  # type: ignore[attr-defined]
        step = StepStats(node_id, _label(graph, node_id), kind, getattr(node, "lane", None))
        step.entered = entered.get(node_id, 0)
        step.completed = acc["completed"].get(node_id, 0)
        step.interrupted = acc["interrupted"].get(node_id, 0)
        step.cases = entered_cases.get(node_id, 0)
        if kind not in INSTANT_KINDS:
            b = sorted(acc["durations_b"].get(node_id, []))
            w = sorted(acc["durations_w"].get(node_id, []))
            step.median_business_h = _hours(quantile(b, 0.5))
            step.p90_business_h = _hours(quantile(b, 0.9))
            step.median_wall_h = _hours(quantile(w, 0.5))
            step.p90_wall_h = _hours(quantile(w, 0.9))
        if node_id in acc["fixed_texts"]:
            step.targets = [acc["fixed_texts"][node_id]] if step.entered else []
        else:
            per_target = acc["policy_counts"].get(node_id, {})
            step.targets = sorted(per_target, key=lambda t: (target_seconds.get(t, 0), t))
        if len(step.targets) == 1:
            step.target_h = _target_seconds(step.targets[0], graph) / _HOUR
        elif not step.targets and getattr(node, "sla", None) is not None:
            policies = node.sla.effective_policies()  # type: ignore[attr-defined]
            step.targets = [str(p.target) for p in policies]
        r = sorted(acc["ratios"].get(node_id, []))
        step.median_ratio = quantile(r, 0.5)
        step.p90_ratio = quantile(r, 0.9)
        step.status = status_of(step.median_ratio, step.p90_ratio)
        # every visit of a human step with an SLA opens a task and starts its clock
        step.sla_started = step.entered if kind == "human" and getattr(node, "sla", None) is not None else 0
        step.sla_breached = acc["breached_by_node"].get(node_id, 0)
        step.escalations = acc["escalations_by_node"].get(node_id, 0)
        step.rework_cases = node_rework_cases.get(node_id, 0)
        step.reentries = node_reentries.get(node_id, 0)
        stats.steps[node_id] = step
    stats.task_sla_started = sum(step.sla_started for step in stats.steps.values())
    stats.task_sla_breached = sum(acc["breached_by_node"].values())

    # edges
    known: dict[str, EdgeStats] = {}
    for edge in definition.edges:
        known[edge.key] = EdgeStats(edge.key, edge.source, edge.target, 0, edge.kind == "escalation")
    for key, count in acc["edge_counts"].items():
        if key in known:
            known[key].count = count
        else:
            source, _, target = key.partition("->")
            known[key] = EdgeStats(key, source, target, count)
    stats.edges = known

    # roles, clocks, escalations
    roles: dict[str, RoleLoad] = dict(acc["roles"])
    for step in stats.steps.values():  # a task is opened for its lane at every visit of a human step
        if step.kind == "human" and step.lane and step.entered:
            load = roles.get(step.lane)
            if load is None:
                load = roles[step.lane] = RoleLoad(step.lane)
            load.opened += step.entered
    stats.roles = dict(sorted(roles.items()))
    names = {f"case:{c.id}": (c.name.both() if c.name else c.id) for c in definition.clocks}
    for clock in sorted(set(acc["case_clock_started"]) | set(names)):
        consumed = sorted(acc["case_clock_consumed"].get(clock, []))
        stats.clocks[clock] = ClockStats(
            clock, names.get(clock, clock), acc["case_clock_started"].get(clock, 0),
            acc["case_clock_met"].get(clock, 0), acc["case_clock_breached"].get(clock, 0),
            _hours(quantile(consumed, 0.5)), _hours(quantile(consumed, 0.9)),
        )
    for (scope, level, percent, kind, actions), count in sorted(
            acc["escalation_rows"].items(), key=lambda item: (item[0][0], item[0][2], item[0][3], item[0][4])):
        stats.escalations.append(EscalationRow(scope, level, percent, kind, count, actions))
    stats.escalations_by_kind = dict(sorted(acc["escalations_by_kind"].items()))

    # slowest cases: finished ones by cycle time, open ones by age at the horizon
    def cycle(case: _Case) -> float:
        end = case.end if case.end is not None else max(horizon, case.start)
        return btime.at_ts(end) - btime.at_ts(case.start)

    ids = {id(case): case_id for case_id, case in cases.items()}
    for case in heapq.nlargest(slowest, cases.values(), key=lambda c: (cycle(c), ids[id(c)])):
        end = case.end if case.end is not None else max(horizon, case.start)
        stats.slowest.append(CaseRow(
            ids[id(case)], case.status, case.outcome, case.started_at, cycle(case) / _HOUR,
            (end - case.start) / _HOUR, steps_of.get(id(case), 0), reentries_of.get(id(case), 0), case.escalations,
            case.breaches,
        ))
    return stats


def _target_seconds(text: str, graph: ProcessGraph) -> int:
    return parse_duration(text).total_seconds(graph.calendar.day_seconds)


def _label(graph: ProcessGraph, node_id: str) -> str:
    node = graph.nodes.get(node_id)
    return node.label() if node is not None else node_id

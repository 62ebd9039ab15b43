"""The single pass over the log: one loop, plain tuples and dicts, fast enough for ten million events.

It reads each event once, keeps per case only what the tables need (`CaseReading`), and adds
to a `Tally` (analytics/readings.py). The event types and payload fields it reads are those the
log's contract declares (engine/run/log.py); a type it does not know is refused when first met.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from datetime import datetime
from operator import itemgetter
from typing import Any

from analytics.business_time import BusinessTime, Stamps
from analytics.readings import CaseSummary, Tally
from engine.definition.graph import ProcessGraph
from engine.run.log import LogEntry, known_type
from engine.time.durations import parse_duration

GATEWAY_KINDS = frozenset({"exclusive", "parallel", "inclusive"})
# kinds whose entry and completion are the same instant: volume is meaningful, duration is not
INSTANT_KINDS = frozenset({"start", "end", "exclusive", "parallel", "inclusive"})


class CaseReading:
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
    def restore(cls, state: tuple[Any, ...]) -> CaseReading:
        case = cls(state[1], state[2], state[13], state[12])
        (_, _, _, case.end, case.status, case.outcome, case.path, case.escalations, case.breaches, case.pending,
         case.last, case.breached, _, _, case.business_end) = state
        return case


# the event types read, numbered for the pass's dispatch; below 3: events whose node alone may show there is
# nothing to do (see scan)
_CODES: dict[str, int] = {
    "node_completed": 0, "sla_started": 1, "sla_met": 2, "node_entered": 3, "task_completed": 4, "edge_taken": 5,
    "escalated": 6, "sla_breached": 7, "task_cancelled": 8, "case_completed": 9, "case_cancelled": 9,
    "case_started": 10, "incident": 11, "sla_stopped": 12,
}


def rows_of(events: Iterable[LogEntry]) -> Iterable[tuple[Any, ...]]:
    """Events as plain tuples: a tuple's fields are several times cheaper to read than attributes."""
    if isinstance(events, list) and events and isinstance(events[0], tuple):
        return events  # log entries are NamedTuples: already tuples in this field order
    return ((e.case_id, e.process_id, None, e.at, e.type, e.node, e.data) for e in events)


class ReadContext:
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
        self.stamps = Stamps()

    def instant(self, at: datetime) -> tuple[float, float]:
        """(POSIX seconds, business seconds) of an instant: what a visit or a case keeps of its start and end."""
        ts = self.stamps.stamp(at)
        return ts, self.btime.at_ts(ts)


def scan(ctx: ReadContext, source: Iterable[tuple[Any, ...]], cases: dict[str, CaseReading], tally: Tally, *,
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
    stamps = ctx.stamps
    stamp = stamps.stamp
    instant = ctx.instant
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
    clock_cancelled = part.clock_cancelled
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

    def breach(clock: str, acc: CaseReading) -> None:
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
            elif code == 1:  # sla_started: a fixed target, known from the definition (a case clock always counts,
                if node not in sla_event_nodes and row[6]["clock"][0] == "t":  # wherever an older definition started it)
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
                    ts = stamp(at)
                if (until_ts is not None and ts >= until_ts) or (since_ts is not None and ts < since_ts):
                    continue
                if at is not bts_at:
                    bts_at = at
                    bts = bat(ts)
                acc = cases[case_id] = CaseReading(ts, at, bts, position() if position is not None else 0)
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
                ts = stamp(at)
            if ts >= until_ts:  # type: ignore[operator]  # `limited`: until_ts is a float
                continue
        if code < 5:
            if code == 3:  # node_entered
                node = row[5]
                acc.path.append(node)
                if node in instant_nodes:
                    continue
                at = row[3]
                if at is not bts_at:  # once per instant: a transition's events share it
                    ts_at = bts_at = at
                    ts, bts = instant(at)
                visit = [node, ts, fixed_get(node, 0), False, bts]
                acc.pending[node] = visit  # by node: one node is never waited at twice at once
                acc.last = visit
                continue
            if code == 2:  # sla_met: task clocks are judged at their step's completion, case clocks here
                data = row[6]
                clock = data["clock"]
                if clock[0] != "t":
                    # one status per clock: met means stopped in time; a late stop is a breach, never also "met"
                    if data.get("in_time") is False:
                        breach(clock, acc)
                    elif acc.breached is None or clock not in acc.breached:
                        clock_met[clock] = clock_met.get(clock, 0) + 1
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
            if at is not bts_at:  # once per instant: a transition's events share it
                ts_at = bts_at = at
                ts, bts = instant(at)
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
            if at is not bts_at:  # once per instant: a transition's events share it
                ts_at = bts_at = at
                ts, bts = instant(at)
            acc.end = ts
            acc.business_end = bts
            if ts > last_end:
                last_end = ts
            acc.status = "completed" if row[4] == "case_completed" else "cancelled"
            acc.outcome = row[6].get("outcome")
        elif code == 11:  # incident
            if acc.status == "running":
                acc.status = "incident"
        elif code == 12:  # sla_stopped: a case clock ended by cancellation (one already breached stays breached)
            clock = row[6].get("clock", "?")
            if clock[:1] != "t" and (acc.breached is None or clock not in acc.breached):
                clock_cancelled[clock] = clock_cancelled.get(clock, 0) + 1

    part.first_ts = first_ts
    part.last_end = last_end


def summarize(cases: Iterable[tuple[str, CaseReading]], slowest: int) -> CaseSummary:
    """Sum up cases whose events have all been read (see `CaseSummary`)."""
    out = CaseSummary()
    cycles_b: list[float] = []
    cycles_w: list[float] = []
    paths: dict[tuple[str, ...], list[float]] = {}
    counts: dict[tuple[str, ...], int] = {}
    finished: list[tuple[float, str, CaseReading, tuple[str, ...]]] = []
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
        if case.end is not None and case.business_end is not None:
            business = case.business_end - case.business_start
            cycles_b.append(business)
            cycles_w.append(case.end - start)
            cycles.append(business)
            finished.append((business, case_id, case, path))
        else:
            out.open_cases.append((case_id, start, case.business_start, status, case.outcome, case.started_at, path,
                                   case.escalations, case.breaches))
    for business, case_id, case, path in heapq.nlargest(slowest, finished, key=lambda item: (item[0], item[1])):
        wall = (case.end or case.start) - case.start  # finished: end is set
        out.slowest_finished.append((business, case_id, case.status, case.outcome, case.started_at,
                                     wall, path, case.escalations, case.breaches))
    out.count = len(finished) + len(out.open_cases)
    out.completed, out.cancelled, out.incidents, out.last_seen = completed, cancelled, incidents, last_seen
    cycles_b.sort()
    cycles_w.sort()
    out.cycles_b, out.cycles_w = [cycles_b], [cycles_w]
    for path, cycles in paths.items():
        cycles.sort()
        out.paths[path] = [counts[path], [cycles]]
    return out

"""What process-mining tools show beside the step statistics: time on arcs, breakdowns, weekly trends, and
the cases behind a dotted chart and a performance spectrum.

One lean pass over the log of a process (visualize/review.py draws the results):
- arcs: for each pair of activities that directly follow each other in a case (gateways left out), the
  time from the first one's completion to the next one's completion, in business hours: where a case waits
  between steps, not only inside them;
- breakdowns by tier and by category (read from the case data as the case records them): cases, finished,
  median cycle time and the breach rate of each case clock (breached ÷ met + breached);
- weekly trends: the same per ISO week in which the case started;
- a sample of at most `sample` cases, evenly spread over the period, with the instant each activity ended:
  the dots of a dotted chart and the lines of a performance spectrum.
Working out business time for every step of a long log would double a review's cost, so arcs and charts
follow at most about `TRACED_CASES` cases (a fixed sample by case id); breakdowns and trends count all.
"""

from __future__ import annotations

from collections.abc import Iterable
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from analytics.business_time import BusinessTime
from analytics.quantiles import HOUR, quantile
from engine.definition.graph import ProcessGraph
from engine.run.log import LogEntry

ACTIVITY_KINDS = frozenset({"human", "auto", "timer", "message", "subprocess"})
GROUP_FIELDS = ("tier", "category")
TRACED_CASES = 1000  # arcs and charts of a longer log follow a sample of about this many cases
UNRECORDED = "(未记录 not recorded)"


@dataclass
class Arc:
    """Two activities in direct succession within cases, and the time between their completions."""

    source: str
    target: str
    count: int = 0
    median_h: float | None = None
    p90_h: float | None = None


@dataclass
class Group:
    """Cases sharing a tier, a category or a start week."""

    key: str
    cases: int = 0
    finished: int = 0
    median_cycle_h: float | None = None
    clock_met: dict[str, int] = field(default_factory=dict)
    clock_breached: dict[str, int] = field(default_factory=dict)

    def breach_rate(self, clock: str) -> float | None:
        decided = self.clock_met.get(clock, 0) + self.clock_breached.get(clock, 0)
        return self.clock_breached.get(clock, 0) / decided if decided else None


@dataclass
class SampleCase:
    case_id: str
    started: datetime
    ended: datetime | None
    activities: list[tuple[str, datetime]]  # (node, completed at), in order


@dataclass
class Views:
    arcs: list[Arc] = field(default_factory=list)
    by_field: dict[str, list[Group]] = field(default_factory=dict)  # "tier" / "category" -> groups
    weeks: list[Group] = field(default_factory=list)
    sample: list[SampleCase] = field(default_factory=list)
    clocks: list[str] = field(default_factory=list)
    cases: int = 0
    traced: int = 0  # cases whose activities the arcs and charts follow


class _Case:
    __slots__ = ("started", "ended", "cycle", "values", "last", "activities", "met", "breached", "traced")

    def __init__(self, started: datetime, traced: bool) -> None:
        self.traced = traced  # its activities are followed (arcs, charts): every case, or a sample of a long log
        self.started = started
        self.ended: datetime | None = None
        self.cycle: float | None = None
        self.values: dict[str, str] = {}
        self.last: tuple[str, datetime] | None = None
        self.activities: list[tuple[str, datetime]] = []
        self.met: set[str] = set()
        self.breached: set[str] = set()


def compute_views(graph: ProcessGraph, events: Iterable[LogEntry], *, since: datetime | None = None,
                  until: datetime | None = None, sample: int = 300, expected_cases: int = 0,
                  traced_cases: int = TRACED_CASES) -> Views:
    """The views of the cases of `graph`'s process started in [since, until).

    Breakdowns and trends count every case. Arcs and charts follow every case's activities up to
    `traced_cases`; beyond (`expected_cases`, e.g. the statistics' count, says how many there are) a
    fixed sample by case id, so a long log's review stays fast: `Views.traced` says how many.
    """
    every = max(1, -(-expected_cases // traced_cases)) if traced_cases > 0 else 1
    process = graph.process_id
    kinds = {node.id: node.kind for node in graph.definition.nodes}
    activities = frozenset(n for n, k in kinds.items() if k in ACTIVITY_KINDS)
    humans = frozenset(n for n, k in kinds.items() if k == "human")
    business = BusinessTime(graph.calendar)
    cases: dict[str, _Case] = {}
    arc_times: dict[tuple[str, str], list[float]] = {}
    # a type not listed is never looked at: one dict lookup is all most events cost
    codes = {"case_started": 0, "task_completed": 1, "node_completed": 2, "sla_met": 3, "sla_breached": 4,
             "case_completed": 5, "case_cancelled": 5}
    code_of = codes.get
    auto_activities = activities - humans
    data_nodes = frozenset(n.id for n in graph.definition.nodes  # steps whose form records a grouping field
                           if any(f.id in GROUP_FIELDS for f in getattr(n, "form", ())))
    cases_get = cases.get
    for e in events:
        code = code_of(e[4])
        if code is None or e[1] != process:
            continue
        if code == 0:
            at = e[3]
            if (since is not None and at < since) or (until is not None and at >= until):
                continue
            case = cases[e[0]] = _Case(at, every == 1 or zlib.crc32(e[0].encode()) % every == 0)
            _take(case, e[6].get("data"))
            continue
        if code == 2 and e[5] not in auto_activities:
            continue
        case = cases_get(e[0])  # type: ignore[assignment]
        if case is None:
            continue
        if code < 3:  # an activity ended: a task completed, or an automatic step, timer or message done
            node = e[5] or ""
            if code == 1 and node in data_nodes:
                _take(case, e[6].get("output"))
            if not case.traced:
                continue
            at = e[3]
            if case.last is not None:
                arc_times.setdefault((case.last[0], node), []).append(business.between(case.last[1], at))
            case.last = (node, at)
            case.activities.append((node, at))
        elif code < 5:  # sla_met / sla_breached
            clock = e[6].get("clock", "")
            if clock[:5] == "case:":
                if code == 4 or e[6].get("in_time") is False:
                    case.breached.add(clock)
                else:
                    case.met.add(clock)
        else:
            case.ended = e[3]
            case.cycle = business.between(case.started, e[3]) / HOUR
    views = Views(clocks=[f"case:{c.id}" for c in graph.definition.clocks], cases=len(cases))
    for (source, target), times in sorted(arc_times.items(), key=lambda item: (-len(item[1]), item[0])):
        times.sort()
        views.arcs.append(Arc(source, target, len(times), _h(quantile(times, 0.5)), _h(quantile(times, 0.9))))
    for name in GROUP_FIELDS:
        views.by_field[name] = _groups(cases.values(), lambda c, name=name: c.values.get(name, UNRECORDED))
    views.weeks = sorted(_groups(cases.values(), _week), key=lambda g: g.key)
    ordered = sorted(((case_id, c) for case_id, c in cases.items() if c.traced), key=lambda item: (item[1].started,
                                                                                                   item[0]))
    views.traced = len(ordered)
    step = max(1, -(-len(ordered) // sample)) if sample > 0 else len(ordered) + 1
    views.sample = [SampleCase(case_id, c.started, c.ended, c.activities) for case_id, c in ordered[::step]]
    return views


def _take(case: _Case, values: Any) -> None:
    if isinstance(values, dict):
        for name in GROUP_FIELDS:
            value = values.get(name)
            if value not in (None, ""):
                case.values[name] = str(value)


def _week(case: _Case) -> str:
    year, week, _ = case.started.isocalendar()
    return f"{year}-W{week:02d}"


def _h(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / HOUR


def _groups(cases: Iterable[_Case], key_of: Any) -> list[Group]:
    groups: dict[str, Group] = {}
    cycles: dict[str, list[float]] = {}
    for case in cases:
        key = key_of(case)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(key)
            cycles[key] = []
        group.cases += 1
        if case.cycle is not None:
            group.finished += 1
            cycles[key].append(case.cycle)
        for clock in case.breached:
            group.clock_breached[clock] = group.clock_breached.get(clock, 0) + 1
        for clock in case.met - case.breached:
            group.clock_met[clock] = group.clock_met.get(clock, 0) + 1
    for key, group in groups.items():
        values = sorted(cycles[key])
        group.median_cycle_h = quantile(values, 0.5)
    return sorted(groups.values(), key=lambda g: (-g.cases, g.key))

"""The weekly complaint report managers get (001 报告机制): open, closed, overdue and escalated complaints.

Ordinary complaints reach managers only through this report (escalation tells them about the
late ones as they happen), so it answers per owner, department, category and cause: how many
are open at the end of the week, how many were closed in it, how many are overdue and how many
were escalated to a manager during it. It is computed from the event log alone, replayed up to
the end of the week, so a past week's report reads the same whenever it is run.

The words mean what a manager means by them:
- open: not yet closed with the customer. A complaint is closed when its closing step is done
  (`close`; `close_case` of a major complaint), even while the analysis and the return visit are still
  to come; a dissatisfied return visit that sends it back to handling opens it again.
- overdue: open and past due now, at the end of the week: some clock (the complaint's or its open
  task's) still running with its due time passed. A clock that breached once and has since stopped
  does not make a complaint overdue.
- closed: closed with the customer during the week.
Each count comes with last week's, for the trend.

A major complaint started from a complaint (the `handle_major` sub-process) is the same
complaint: its child case is folded into the complaint it came from, never counted twice.

The counting lives here; visualize/weekly.py renders it (Markdown and HTML).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from engine.errors import InputError
from engine.run import log
from engine.run.log import LogEntry

PROCESSES: tuple[str, ...] = ("complaint_handling", "major_complaint")
#: the task whose performer owns the complaint, per process (专人负责)
HANDLING_NODES: dict[str, str] = {"complaint_handling": "handle", "major_complaint": "investigate"}
#: the step after which the complaint is closed with the customer, per process (结案)
CLOSING_NODES: dict[str, str] = {"complaint_handling": "close", "major_complaint": "close_case"}
#: the case-data fields whose choices the report groups by
CATEGORY_FIELD, CAUSE_FIELD = "category", "cause_category"
UNASSIGNED = "(未指派 unassigned)"
UNKNOWN = "(未记录 not recorded)"
_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)
_TRACKED = ("category", "cause_category", "owner", "tier", "customer_name")


def parse_week(text: str) -> tuple[int, int]:
    """'2025-W39' -> (2025, 39); ISO weeks start on Monday."""
    match = _WEEK.match(text.strip())
    if not match:
        raise InputError(f"cannot read week {text!r}", hint="write an ISO week such as 2025-W39")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        raise InputError(f"{text!r} is not a week of {year}", hint="ISO weeks run from W01 to W52 or W53") from None
    return year, week


def week_bounds(year: int, week: int, tz: tzinfo) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) in the managers' time zone."""
    monday = date.fromisocalendar(year, week, 1)
    start = datetime.combine(monday, time(0), tzinfo=tz)
    return start, datetime.combine(monday + timedelta(days=7), time(0), tzinfo=tz)


def previous_week(now: datetime, tz: tzinfo) -> tuple[int, int]:
    """The last complete week before `now`: what a Monday-morning report is about."""
    year, week, _ = (now.astimezone(tz) - timedelta(days=7)).isocalendar()
    return year, week


@dataclass
class Counts:
    open: int = 0
    closed: int = 0
    overdue: int = 0
    escalated: int = 0
    new: int = 0

    def add(self, row: ComplaintRow) -> None:
        self.open += row.open
        self.closed += row.closed_in_week
        self.overdue += row.overdue
        self.escalated += row.escalated
        self.new += row.new


@dataclass
class ComplaintRow:
    """One complaint as it stood at the end of the week."""

    case_id: str
    process_id: str
    started_at: datetime
    ended_at: datetime | None
    status: str  # open | closed | cancelled (at the end of the week)
    owner: str
    department: str
    category: str
    cause: str
    tier: str
    new: bool
    closed_in_week: bool
    overdue: bool
    escalated: bool
    escalation_level: int
    major: bool
    waiting_at: str
    overdue_since: datetime | None

    @property
    def open(self) -> bool:
        return self.status == "open"


@dataclass
class Labels:
    """Display names from the definitions: category and cause choices, roles (lanes), processes.

    Tables stay keyed by the codes the log holds; reports show these names beside them.
    """

    category: dict[str, str] = field(default_factory=dict)
    cause: dict[str, str] = field(default_factory=dict)
    role: dict[str, str] = field(default_factory=dict)
    process: dict[str, str] = field(default_factory=dict)

    def of(self, kind: str, code: str) -> str:
        """'产品质量 Product quality' for ('category', 'product_quality'); the code itself when unnamed."""
        return getattr(self, kind).get(code, code)


def labels_from(definitions: Iterable[Any]) -> Labels:
    """Collect the names a report shows from process definitions (engine.definition.model.ProcessDefinition)."""
    out = Labels()

    def both(text: Any) -> str:
        return text.zh if text.zh == text.en else f"{text.zh} {text.en}"

    for definition in definitions:
        out.process.setdefault(definition.id, both(definition.name))
        for lane in definition.lanes:
            if lane.name is not None:
                out.role.setdefault(lane.id, both(lane.name))
        for name, kind in ((CATEGORY_FIELD, "category"), (CAUSE_FIELD, "cause")):
            spec = definition.data.get(name)
            for code, text in ((spec.choice_labels or {}) if spec is not None else {}).items():
                getattr(out, kind).setdefault(code, both(text))
    return out


@dataclass
class WeeklyReport:
    week: str
    start: datetime
    end: datetime
    rows: list[ComplaintRow] = field(default_factory=list)
    total: Counts = field(default_factory=Counts)
    by_owner: dict[str, Counts] = field(default_factory=dict)
    by_department: dict[str, Counts] = field(default_factory=dict)
    by_category: dict[str, Counts] = field(default_factory=dict)
    by_cause: dict[str, Counts] = field(default_factory=dict)
    by_process: dict[str, Counts] = field(default_factory=dict)
    cancelled: int = 0
    previous: WeeklyReport | None = None  # last week's report, for the trend
    labels: Labels = field(default_factory=Labels)

    def trend(self, table: str, key: str | None = None) -> Counts | None:
        """Last week's counts for the total (`table` 'total') or one row of a table; None without last week."""
        if self.previous is None:
            return None
        if table == "total":
            return self.previous.total
        return getattr(self.previous, table).get(key, Counts())


class _Case:
    __slots__ = ("case_id", "process_id", "parent", "started", "ended", "status", "data", "handler_actor",
                 "handler_role", "handler_task", "open_tasks", "last_role", "clocks", "breached", "escalated", "level", "major",
                 "first_breach", "closed_at", "handled_at")

    def __init__(self, case_id: str, process_id: str, started: datetime, parent: str | None,
                 data: dict[str, Any]) -> None:
        self.case_id = case_id
        self.process_id = process_id
        self.parent = parent
        self.started = started
        self.ended: datetime | None = None
        self.status = "open"
        self.data = {k: data.get(k) for k in _TRACKED if data.get(k) not in (None, "")}
        self.handler_actor: str | None = None
        self.handler_role: str | None = None
        self.handler_task: str | None = None
        self.open_tasks: dict[str, tuple[str, str, datetime]] = {}  # task id -> (node, role, since)
        self.last_role: str | None = None
        self.clocks: dict[str, tuple[str, datetime | None]] = {}  # clock -> (running|paused|ended, due)
        self.breached = False
        self.first_breach: datetime | None = None
        self.escalated = False
        self.level = 0
        self.major = False
        self.closed_at: datetime | None = None  # closed with the customer (None again once reopened)
        self.handled_at: datetime | None = None  # the handling step last entered


def _due(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _track(case: _Case, values: Any) -> None:
    if isinstance(values, dict):
        for key in _TRACKED:
            value = values.get(key)
            if value not in (None, ""):
                case.data[key] = value


def build_weekly(events: Iterable[LogEntry], week: str, tz: tzinfo | str = "Asia/Shanghai",
                 processes: Sequence[str] = PROCESSES, *, definitions: Iterable[Any] | None = None,
                 trend: bool = True) -> WeeklyReport:
    """Replay the complaint events up to the end of `week` and count per owner, department, category, cause.

    `definitions` give the display names (default: the library's complaint processes); with `trend`, the
    week before is counted from the same events for the comparison.
    """
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    year, number = parse_week(week)
    start, end = week_bounds(year, number, zone)
    events = events if isinstance(events, list) else list(events)
    report = WeeklyReport(f"{year}-W{number:02d}", start, end)
    report.labels = labels_from(_definitions(processes) if definitions is None else definitions)
    if trend:
        last_year, last_week, _ = (start - timedelta(days=7)).isocalendar()
        report.previous = build_weekly(events, f"{last_year}-W{last_week:02d}", zone, processes,
                                       definitions=(), trend=False)
    wanted = set(processes)
    cases: dict[str, _Case] = {}
    for e in log.checked(events):  # an event the contract does not describe is an error, not a miscount
        if e.process_id not in wanted or e.at >= end:
            continue
        typ = e.type
        case = cases.get(e.case_id)
        if case is None:
            if typ != "case_started":
                continue
            data = e.data.get("data") if isinstance(e.data.get("data"), dict) else {}
            cases[e.case_id] = _Case(e.case_id, e.process_id, e.at, e.data.get("parent_case"), data or {})
            continue
        data = e.data
        if typ == "task_opened":
            role = str(data.get("role", ""))
            case.open_tasks[str(data.get("task_id", ""))] = (e.node or "", role, e.at)
            if e.node == HANDLING_NODES.get(case.process_id) and case.handler_actor is None:
                case.handler_role = role
                case.handler_task = str(data.get("task_id", ""))
        elif typ == "task_completed":
            case.open_tasks.pop(str(data.get("task_id", "")), None)
            role = str(data.get("role", ""))
            case.last_role = role
            _track(case, data.get("output"))
            if e.node == HANDLING_NODES.get(case.process_id):
                case.handler_actor = str(data.get("actor") or "") or None
                case.handler_role = role
            elif e.node == CLOSING_NODES.get(case.process_id):
                case.closed_at = e.at
        elif typ == "node_entered":
            if e.node == HANDLING_NODES.get(case.process_id):
                case.handled_at = e.at
                case.closed_at = None  # back to handling: reopened after a dissatisfied return visit
        elif typ == "task_cancelled":
            case.open_tasks.pop(str(data.get("task_id", "")), None)
        elif typ in ("step_completed", "subprocess_completed"):
            _track(case, data.get("output"))
        elif typ == "message_received":
            _track(case, data.get("payload"))
        elif typ == "data_updated":
            _track(case, data.get("changes"))
        elif typ == "subprocess_started":
            case.major = case.major or data.get("process") == "major_complaint"
        elif typ == "sla_started" or typ == "sla_resumed" or typ == "sla_retargeted":
            clock = str(data.get("clock", ""))
            state = case.clocks.get(clock, ("running", None))[0]
            case.clocks[clock] = ("running" if typ != "sla_retargeted" else state, _due(data.get("due_at")))
        elif typ == "sla_paused":
            clock = str(data.get("clock", ""))
            case.clocks[clock] = ("paused", None)
        elif typ == "sla_met" or typ == "sla_stopped":
            clock = str(data.get("clock", ""))
            case.clocks[clock] = ("ended", None)
            if typ == "sla_met" and data.get("in_time") is False:
                case.breached = True
                case.first_breach = case.first_breach or e.at
        elif typ == "sla_breached":
            case.breached = True
            case.first_breach = case.first_breach or e.at
        elif typ == "escalated":
            if data.get("kind") in ("breached", "escalated") and e.at >= start:
                case.escalated = True
                case.level = max(case.level, int(data.get("level", 0) or 0))
            if data.get("reassign"):
                clock = str(data.get("clock", ""))
                targets = [clock[5:]] if clock.startswith("task:") else list(case.open_tasks)
                for task_id in targets:
                    if task_id in case.open_tasks:
                        node, _role, since = case.open_tasks[task_id]
                        case.open_tasks[task_id] = (node, str(data["reassign"]), since)
                        if task_id == case.handler_task and case.handler_actor is None:
                            case.handler_role = str(data["reassign"])  # the manager now holds it
        elif typ == "case_completed" or typ == "case_cancelled":
            case.ended = e.at
            case.status = "closed" if typ == "case_completed" else "cancelled"
    _roll_up(cases)
    for case in sorted(cases.values(), key=lambda c: (c.started, c.case_id)):
        if case.parent is not None and case.parent in cases:
            continue  # folded into the complaint it came from
        closed = case.closed_at or (case.ended if case.status == "closed" else None)
        if (closed is not None and closed < start) or (case.ended is not None and case.ended < start):
            continue  # closed with the customer (or cancelled) before the week: not this week's business
        row = _row(case, start, end)
        report.rows.append(row)
        if row.status == "cancelled":
            report.cancelled += 1
        for table, key in ((report.by_owner, row.owner), (report.by_department, row.department),
                           (report.by_category, row.category), (report.by_cause, row.cause),
                           (report.by_process, row.process_id)):
            table.setdefault(key, Counts()).add(row)
        report.total.add(row)
    for name in ("by_owner", "by_department", "by_category", "by_cause", "by_process"):
        table = getattr(report, name)
        setattr(report, name, dict(sorted(table.items(), key=lambda item: (-item[1].open - item[1].closed, item[0]))))
    return report


def _roll_up(cases: dict[str, _Case]) -> None:
    """Fold child cases (major complaints of a complaint) into their root: late or escalated child, late complaint."""
    def root_of(case: _Case) -> _Case:
        seen = 0
        while case.parent is not None and case.parent in cases and seen < 20:
            case = cases[case.parent]
            seen += 1
        return case

    for case in list(cases.values()):
        if case.parent is None or case.parent not in cases:
            continue
        root = root_of(case)
        root.major = True
        if case.closed_at is not None and root.closed_at is None and (
                root.handled_at is None or root.handled_at <= case.closed_at):
            root.closed_at = case.closed_at  # the major complaint closed with the customer closes the complaint
        root.breached = root.breached or case.breached
        if case.first_breach and (root.first_breach is None or case.first_breach < root.first_breach):
            root.first_breach = case.first_breach
        root.escalated = root.escalated or case.escalated
        root.level = max(root.level, case.level)
        if root.handler_actor is None and case.handler_actor is not None:
            root.handler_actor, root.handler_role = case.handler_actor, case.handler_role
        for key, value in case.data.items():
            if key == "cause_category" or key not in root.data:
                root.data[key] = value
        if case.status == "open":
            for clock, clock_state in case.clocks.items():
                root.clocks[f"{case.case_id}/{clock}"] = clock_state
            for task_id, task in case.open_tasks.items():
                root.open_tasks[f"{case.case_id}/{task_id}"] = task


def _row(case: _Case, start: datetime, end: datetime) -> ComplaintRow:
    if case.closed_at is not None or case.status == "closed":
        status = "closed"
    else:
        status = case.status if case.ended is not None else "open"
    closed_at = case.closed_at or (case.ended if status == "closed" else None)
    overdue_since: datetime | None = None
    if status == "open":  # past due now: a clock still running whose due time has passed
        for state, due in case.clocks.values():
            if state == "running" and due is not None and due < end:
                overdue_since = min(overdue_since, due) if overdue_since else due
    waiting = sorted(case.open_tasks.values(), key=lambda t: (t[2], t[0]))
    owner = case.handler_actor or str(case.data.get("owner") or "") or UNASSIGNED
    department = case.handler_role or (waiting[0][1] if waiting else None) or case.last_role or UNKNOWN
    cause = str(case.data.get("cause_category") or "")
    if not cause or (cause == "other" and status == "open"):
        cause = UNKNOWN if status == "open" else (cause or UNKNOWN)
    return ComplaintRow(
        case_id=case.case_id, process_id=case.process_id, started_at=case.started, ended_at=case.ended,
        status=status, owner=owner, department=department,
        category=str(case.data.get("category") or UNKNOWN), cause=cause, tier=str(case.data.get("tier") or ""),
        new=start <= case.started < end, closed_in_week=closed_at is not None and start <= closed_at < end,
        overdue=status == "open" and overdue_since is not None, escalated=case.escalated,
        escalation_level=case.level, major=case.major,
        waiting_at=", ".join(f"{node} ({role})" for node, role, _since in waiting), overdue_since=overdue_since,
    )


def _definitions(processes: Sequence[str]) -> list[Any]:
    """The library's definitions of `processes` (those it has): where the report's display names come from."""
    from engine.definition.library import DEFAULT_DIR
    from engine.definition.loader import load_file

    files = [DEFAULT_DIR / f"{process}.yaml" for process in processes]
    return [load_file(file).definition for file in files if file.exists()]


def _change(now: int, before: int | None) -> str:
    """'+3' / '-2' / '±0' against last week; '' without last week."""
    if before is None:
        return ""
    diff = now - before
    return "±0" if diff == 0 else f"{diff:+d}"


def _top(table: dict[str, Counts], count: str, skip: tuple[str, ...] = (UNKNOWN, UNASSIGNED)) -> tuple[str, int] | None:
    """The row with the most of `count` (ties: the first by code), if any has one."""
    rows = [(key, getattr(c, count)) for key, c in table.items() if key not in skip and getattr(c, count)]
    return min(rows, key=lambda item: (-item[1], item[0])) if rows else None


def analysis(report: WeeklyReport) -> tuple[str, str]:
    """A short summary of the week in Chinese and in English (简单扼要、总结分析到位), from the counts alone."""
    t, before = report.total, (report.previous.total if report.previous is not None else None)

    def vs(attr: str, zh: bool) -> str:
        change = _change(getattr(t, attr), getattr(before, attr) if before is not None else None)
        if not change:
            return ""
        return f"（较上周{change}）" if zh else f" ({change} on last week)"

    zh = [f"本周新增投诉{t.new}件{vs('new', True)}，结案{t.closed}件{vs('closed', True)}；"
          f"周末未结{t.open}件{vs('open', True)}，其中逾期{t.overdue}件{vs('overdue', True)}，"
          f"本周升级{t.escalated}件。"]
    en = [f"{t.new} new complaint(s){vs('new', False)} and {t.closed} closed with the customer{vs('closed', False)}; "
          f"{t.open} open at the end of the week{vs('open', False)}, {t.overdue} of them overdue"
          f"{vs('overdue', False)}; {t.escalated} escalated."]
    labels = report.labels
    late = _top(report.by_department, "overdue")
    if late is not None:
        zh.append(f"逾期主要在{labels.of('role', late[0])}（{late[1]}件）。")
        en.append(f"Most overdue ones wait with {labels.of('role', late[0])} ({late[1]}).")
    category = _top(report.by_category, "new")
    if category is not None:
        zh.append(f"新增以{labels.of('category', category[0])}类为主（{category[1]}件）。")
        en.append(f"The most frequent new category is {labels.of('category', category[0])} ({category[1]}).")
    cause = _top(report.by_cause, "closed")
    if cause is not None:
        zh.append(f"已结案投诉的主要原因是{labels.of('cause', cause[0])}（{cause[1]}件）。")
        en.append(f"The main cause among closed complaints is {labels.of('cause', cause[0])} ({cause[1]}).")
    if t.overdue:
        zh.append("建议优先跟进逾期投诉。")
        en.append("Follow up the overdue complaints first.")
    return "".join(zh), " ".join(en)

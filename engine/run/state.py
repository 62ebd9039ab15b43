"""The state of one running case: everything the interpreter needs, and nothing else.

Plain dataclasses (not pydantic) because the interpreter copies and serialises the state on
every transition; it is stored as JSON in the case row and is the source of truth. A field
renamed or removed here needs a step in engine/store/migrations.py, or stored cases break.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(slots=True)
class Token:
    """A position in the graph. Tokens wait at tasks, timers, messages and sub-processes."""

    id: str
    node: str
    since: datetime
    task_id: str | None = None
    timer_due: datetime | None = None
    message: str | None = None
    child_case: str | None = None
    attempt: int = 0
    incident: str | None = None

    def copy(self) -> Token:
        """A shallow copy without __init__: explicit assignments, the cheapest copy in CPython."""
        new = object.__new__(Token)
        new.id = self.id
        new.node = self.node
        new.since = self.since
        new.task_id = self.task_id
        new.timer_due = self.timer_due
        new.message = self.message
        new.child_case = self.child_case
        new.attempt = self.attempt
        new.incident = self.incident
        return new


@dataclass(slots=True)
class Task:
    """A human task. Closed tasks stay (for `show` and reports) until the case ends."""

    id: str
    node: str
    token: str
    role: str
    created_at: datetime
    status: str = "open"  # open | completed | cancelled
    assignee: str | None = None
    due_at: datetime | None = None
    priority: str = "normal"
    escalation_level: int = 0
    escalation_roles: list[str] = field(default_factory=list)
    completed_at: datetime | None = None
    completed_by: str | None = None
    visit: int = 1

    def copy(self) -> Task:
        """A shallow copy without __init__: explicit assignments, the cheapest copy in CPython."""
        new = object.__new__(Task)
        new.id = self.id
        new.node = self.node
        new.token = self.token
        new.role = self.role
        new.created_at = self.created_at
        new.status = self.status
        new.assignee = self.assignee
        new.due_at = self.due_at
        new.priority = self.priority
        new.escalation_level = self.escalation_level
        new.escalation_roles = self.escalation_roles
        new.completed_at = self.completed_at
        new.completed_by = self.completed_by
        new.visit = self.visit
        return new


@dataclass(slots=True)
class SlaClock:
    """A running SLA measured in business seconds; pausing banks the consumed time."""

    id: str  # "case:first_response" or "task:<task id>"
    scope: str  # case | task
    name: str
    target: int  # business seconds
    target_text: str
    started_at: datetime
    ladder: str  # where the escalation levels come from: "clock:<id>" or "node:<id>"
    consumed: int = 0
    running_since: datetime | None = None
    status: str = "running"  # running | paused | met | stopped
    breached: bool = False
    fired: list[int] = field(default_factory=list)  # thresholds (percent) already fired
    next_at: datetime | None = None
    next_pct: int | None = None
    due_at: datetime | None = None
    ended_at: datetime | None = None
    task_id: str | None = None

    def copy(self) -> SlaClock:
        """A shallow copy without __init__: explicit assignments, the cheapest copy in CPython."""
        new = object.__new__(SlaClock)
        new.id = self.id
        new.scope = self.scope
        new.name = self.name
        new.target = self.target
        new.target_text = self.target_text
        new.started_at = self.started_at
        new.ladder = self.ladder
        new.consumed = self.consumed
        new.running_since = self.running_since
        new.status = self.status
        new.breached = self.breached
        new.fired = self.fired
        new.next_at = self.next_at
        new.next_pct = self.next_pct
        new.due_at = self.due_at
        new.ended_at = self.ended_at
        new.task_id = self.task_id
        return new


@dataclass(slots=True)
class InstanceState:
    """One case. `seq` numbers its log events; `version` is the store's optimistic lock."""

    case_id: str
    process_id: str
    definition_hash: str
    started_at: datetime
    status: str = "running"  # running | completed | cancelled | incident
    outcome: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    clocks: dict[str, SlaClock] = field(default_factory=dict)
    joins: dict[str, dict[str, int]] = field(default_factory=dict)  # join node -> expected, arrived
    visits: dict[str, int] = field(default_factory=dict)
    priority: str = "normal"
    escalation_level: int = 0
    counter: int = 0  # for token and task ids
    seq: int = 0
    parent_case: str | None = None
    parent_token: str | None = None
    ended_at: datetime | None = None

    @property
    def tier(self) -> str | None:
        tier = self.data.get("tier")
        return str(tier) if tier is not None else None

    def next_due_at(self) -> datetime | None:
        """The earliest instant the sweep must look at this case: a timer or an SLA threshold."""
        earliest: datetime | None = None
        for token in self.tokens.values():
            due = token.timer_due
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        for clock in self.clocks.values():  # ended clocks have no next_at
            due = clock.next_at
            if due is not None and clock.status == "running" and (earliest is None or due < earliest):
                earliest = due
        return earliest

    def open_tasks(self) -> list[Task]:
        return [task for task in self.tasks.values() if task.status == "open"]

    def clone(self) -> InstanceState:
        """A copy the interpreter may change without touching the caller's state.

        Closed tasks and ended clocks are never changed again, so they are shared rather than
        copied: a long case's history then costs nothing per transition. Likewise the interpreter
        only ever replaces top-level values of `data` and `steps` (never changes a nested list or
        map in place), so one level of copying keeps the original intact.
        """
        new = self.copy()
        new.data = dict(self.data)
        new.steps = dict(self.steps)
        new.tokens = {k: v.copy() for k, v in self.tokens.items()}
        new.tasks = {k: (_task_copy(v) if v.status == "open" else v) for k, v in self.tasks.items()}
        new.clocks = {k: (_clock_copy(v) if v.status in ("running", "paused") else v) for k, v in self.clocks.items()}
        new.joins = {k: dict(v) for k, v in self.joins.items()}
        new.visits = dict(self.visits)
        return new

    # -- serialisation (the stored form, with its version, is engine/store/serializer.py) --------
    def to_dict(self) -> dict[str, Any]:
        """Hand-written (not dataclasses.asdict): this runs on every stored transition."""
        out: dict[str, Any] = {}
        for name in _STATE_FIELDS:
            value = getattr(self, name)
            if name in ("tokens", "tasks", "clocks"):
                value = {k: _flat(v) for k, v in value.items()}
            elif isinstance(value, datetime):
                value = value.isoformat()
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InstanceState:
        """The inverse of to_dict. Stored states are read through engine/store/serializer.py, which
        checks their keys and schema version first."""
        raw = dict(raw)
        raw["tokens"] = {k: Token(**_decode(v, _TOKEN_DT)) for k, v in raw.get("tokens", {}).items()}
        raw["tasks"] = {k: Task(**_decode(v, _TASK_DT)) for k, v in raw.get("tasks", {}).items()}
        raw["clocks"] = {k: SlaClock(**_decode(v, _CLOCK_DT)) for k, v in raw.get("clocks", {}).items()}
        for name in ("started_at", "ended_at"):
            raw[name] = _dt(raw.get(name))
        return cls(**raw)

    def copy(self) -> InstanceState:
        """A shallow copy without __init__: explicit assignments, the cheapest copy in CPython."""
        new = object.__new__(InstanceState)
        new.case_id = self.case_id
        new.process_id = self.process_id
        new.definition_hash = self.definition_hash
        new.started_at = self.started_at
        new.status = self.status
        new.outcome = self.outcome
        new.data = self.data
        new.steps = self.steps
        new.tokens = self.tokens
        new.tasks = self.tasks
        new.clocks = self.clocks
        new.joins = self.joins
        new.visits = self.visits
        new.priority = self.priority
        new.escalation_level = self.escalation_level
        new.counter = self.counter
        new.seq = self.seq
        new.parent_case = self.parent_case
        new.parent_token = self.parent_token
        new.ended_at = self.ended_at
        return new


def _flat(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in obj.__slots__:
        value = getattr(obj, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


_STATE_FIELDS = tuple(f.name for f in fields(InstanceState))
_TOKEN_DT = ("since", "timer_due")
_TASK_DT = ("created_at", "due_at", "completed_at")
_CLOCK_DT = ("started_at", "running_since", "next_at", "due_at", "ended_at")


def _decode(raw: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out = dict(raw)
    for name in names:
        out[name] = _dt(out.get(name))
    return out


def _task_copy(task: Task) -> Task:
    new = task.copy()
    new.escalation_roles = list(task.escalation_roles)
    return new


def _clock_copy(clock: SlaClock) -> SlaClock:
    new = clock.copy()
    new.fired = list(clock.fired)
    return new

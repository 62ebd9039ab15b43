"""The state of one running case: everything the interpreter needs, and nothing else.

Plain dataclasses (not pydantic) because the interpreter copies and serialises the state on
every transition; it is stored as JSON in the case row and is the source of truth.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
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
        candidates = [t.timer_due for t in self.tokens.values() if t.timer_due is not None]
        candidates += [c.next_at for c in self.clocks.values() if c.next_at is not None and c.status == "running"]
        return min(candidates) if candidates else None

    def open_tasks(self) -> list[Task]:
        return [task for task in self.tasks.values() if task.status == "open"]

    def clone(self) -> InstanceState:
        """A copy the interpreter may change without touching the caller's state."""
        return replace(
            self,
            data=_copy(self.data),
            steps=_copy(self.steps),
            tokens={k: replace(v) for k, v in self.tokens.items()},
            tasks={k: replace(v, escalation_roles=list(v.escalation_roles)) for k, v in self.tasks.items()},
            clocks={k: replace(v, fired=list(v.fired)) for k, v in self.clocks.items()},
            joins={k: dict(v) for k, v in self.joins.items()},
            visits=dict(self.visits),
        )

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        return _encode(raw)  # type: ignore[no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InstanceState:
        raw = dict(raw)
        raw["tokens"] = {k: Token(**_decode(v, _TOKEN_DT)) for k, v in raw.get("tokens", {}).items()}
        raw["tasks"] = {k: Task(**_decode(v, _TASK_DT)) for k, v in raw.get("tasks", {}).items()}
        raw["clocks"] = {k: SlaClock(**_decode(v, _CLOCK_DT)) for k, v in raw.get("clocks", {}).items()}
        for name in ("started_at", "ended_at"):
            raw[name] = _dt(raw.get(name))
        return cls(**raw)

    @classmethod
    def from_json(cls, text: str) -> InstanceState:
        return cls.from_dict(json.loads(text))


_TOKEN_DT = ("since", "timer_due")
_TASK_DT = ("created_at", "due_at", "completed_at")
_CLOCK_DT = ("started_at", "running_since", "next_at", "due_at", "ended_at")


def _decode(raw: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out = dict(raw)
    for name in names:
        out[name] = _dt(out.get(name))
    return out


def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _copy(value: Any) -> Any:
    """Deep copy of JSON-like data; much cheaper than copy.deepcopy on the hot path."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value

"""The event log's contract: every event type, the fields of its payload, and the payload version.

The interpreter writes these payloads and every reader (statistics, weekly report, overlays,
artifacts, the store's escalation projection) reads them, so the fields are declared once, here,
as TypedDicts: plain dicts at run time (a simulation writes over a million events and a review
reads over ten million, so nothing here may cost per event on those paths), checked by mypy
where they are built and read. `SCHEMA` maps each type name to its payload declaration; a
reader that meets a type or a field the contract does not know gets a `LogError` naming the
case, the event and the fix, never a KeyError from deep inside a report.

Versions: `LOG_SCHEMA_VERSION` is the version of the payloads written now. The store keeps the
version of each row (rows written before the log was versioned have none: they are version 1,
today's payloads) and upgrades old rows on reading through `LOG_MIGRATIONS`, one function per
step from version N to N + 1, so readers only ever see the current shape. A row newer than this
code is refused with a clear error rather than misread.
"""

# no `from __future__ import annotations`: TypedDict must see NotRequired[...] itself to know optional fields
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, Final, Literal, NamedTuple, NotRequired, TypedDict

from engine.errors import LogError
from engine.versioning import walk

LOG_SCHEMA_VERSION: Final = 1
"""Version 1: the payloads of the first release, as written before the log had a schema."""


class LogEntry(NamedTuple):
    """One line of the event log: as the interpreter writes it, the store returns it, the simulator
    keeps it and every report reads it (the one record of the log; there is no other name for it).

    A NamedTuple because a transition makes several and reports read millions. `seq` numbers the
    case's events (None for refusals, which change nothing); `at` is when it was recorded, never
    back-dated; `data` is the payload declared for `type` in `SCHEMA`.
    """

    case_id: str
    process_id: str
    seq: int | None
    at: datetime
    type: str
    node: str | None = None
    data: dict[str, Any] = {}


# -- the payloads ----------------------------------------------------------------------------------------
# Times inside payloads are ISO 8601 strings (the entry's own `at` is a datetime). Optional fields
# (NotRequired) are those some writers leave out; readers use .get for them.
class CaseStarted(TypedDict):
    data: dict[str, Any]
    parent_case: str | None
    actor: str | None


class CaseEndedPayload(TypedDict):
    """case_completed and case_cancelled: the end node's outcome, or the cancellation's reason."""

    outcome: str | None


class Incident(TypedDict):
    message: str


class NodeEntered(TypedDict):
    token: str
    kind: str


class NodeCompleted(TypedDict):
    token: str
    branches: NotRequired[list[str]]  # gateways: the edges chosen


class EdgeTaken(TypedDict):
    edge: str
    to: str


class JoinWaiting(TypedDict):
    arrived: int
    expected: int


class JoinCompleted(TypedDict):
    arrived: int


class TaskOpenedPayload(TypedDict):
    task_id: str
    role: str
    due_at: str | None
    priority: str


class TaskAssigned(TypedDict):
    task_id: str
    assignee: str
    previous: str | None
    actor: str
    role: str


class TaskCompleted(TypedDict):
    task_id: str
    actor: str
    role: str
    output: dict[str, Any]


class TaskCancelled(TypedDict):
    task_id: str
    reason: str


class StepStarted(TypedDict):
    handler: str
    attempt: int


class StepCompleted(TypedDict):
    handler: str
    attempt: int
    output: dict[str, Any]


class StepFailed(TypedDict):
    attempt: int
    error: str
    output: NotRequired[dict[str, Any]]  # a handler output that did not fit its declared outputs


class TimerStarted(TypedDict):
    due: str


class TimerFired(TypedDict):
    due: str


class MessageAwaited(TypedDict):
    message: str


class MessageReceived(TypedDict):
    message: str
    payload: dict[str, Any]
    actor: str | None


class SubprocessStarted(TypedDict):
    process: str
    child_case: str | None


class SubprocessCompleted(TypedDict):
    child_case: str
    outcome: str | None
    output: dict[str, Any]


class DataUpdated(TypedDict):
    changes: dict[str, Any]
    actor: str | None


class PriorityRaised(TypedDict):
    old: str
    new: str


class SlaStarted(TypedDict):
    clock: str  # "case:<clock id>" or "task:<task id>"
    target: str
    due_at: str | None


class SlaEnded(TypedDict):
    """sla_met and sla_stopped. A clock stopped by cancellation says only which clock it was."""

    clock: str
    in_time: NotRequired[bool]
    consumed: NotRequired[int]  # business seconds
    target: NotRequired[int]  # business seconds


class SlaPaused(TypedDict):
    clock: str
    consumed: NotRequired[int]  # absent when a clock is paused the instant it starts


class SlaResumed(TypedDict):
    clock: str
    due_at: str | None


class SlaRetargeted(TypedDict):
    clock: str
    old: str
    new: str
    started_at: str
    due_at: str | None


class SlaThreshold(TypedDict):
    """sla_warned and sla_breached: the clock passed a percentage of its target."""

    clock: str
    percent: int
    level: int
    due: str | None


class Escalated(TypedDict):
    """A level of an escalation ladder applied; its actions are the fields present besides the first four."""

    clock: str
    level: int
    percent: int
    kind: str  # warned | breached | escalated
    notify: NotRequired[list[str]]
    reassign: NotRequired[str]
    raise_priority: NotRequired[str]
    route: NotRequired[str]


class Refused(TypedDict):
    """An action refused: nothing changed, but who tried what, and why, is kept."""

    reason: str
    event: str  # what was tried: an event type (CompleteTask...) or a directory-checked action (update, cancel...)
    task_id: NotRequired[str]
    actor: NotRequired[str]
    role: NotRequired[str]
    actor_kind: NotRequired[str]  # the directory's view of the actor: user, unknown, disabled, token


ESCALATION_ACTIONS: Final = ("notify", "reassign", "raise_priority", "route")

EventType = Literal[
    "case_started", "case_completed", "case_cancelled", "incident", "node_entered", "node_completed", "edge_taken",
    "join_waiting", "join_completed", "task_opened", "task_assigned", "task_completed", "task_cancelled",
    "step_started", "step_completed", "step_failed", "timer_started", "timer_fired", "message_awaited",
    "message_received", "subprocess_started", "subprocess_completed", "data_updated", "priority_raised",
    "sla_started", "sla_met", "sla_stopped", "sla_paused", "sla_resumed", "sla_retargeted", "sla_warned",
    "sla_breached", "escalated", "refused",
]

SCHEMA: Final[Mapping[str, type]] = {
    "case_started": CaseStarted,
    "case_completed": CaseEndedPayload,
    "case_cancelled": CaseEndedPayload,
    "incident": Incident,
    "node_entered": NodeEntered,
    "node_completed": NodeCompleted,
    "edge_taken": EdgeTaken,
    "join_waiting": JoinWaiting,
    "join_completed": JoinCompleted,
    "task_opened": TaskOpenedPayload,
    "task_assigned": TaskAssigned,
    "task_completed": TaskCompleted,
    "task_cancelled": TaskCancelled,
    "step_started": StepStarted,
    "step_completed": StepCompleted,
    "step_failed": StepFailed,
    "timer_started": TimerStarted,
    "timer_fired": TimerFired,
    "message_awaited": MessageAwaited,
    "message_received": MessageReceived,
    "subprocess_started": SubprocessStarted,
    "subprocess_completed": SubprocessCompleted,
    "data_updated": DataUpdated,
    "priority_raised": PriorityRaised,
    "sla_started": SlaStarted,
    "sla_met": SlaEnded,
    "sla_stopped": SlaEnded,
    "sla_paused": SlaPaused,
    "sla_resumed": SlaResumed,
    "sla_retargeted": SlaRetargeted,
    "sla_warned": SlaThreshold,
    "sla_breached": SlaThreshold,
    "escalated": Escalated,
    "refused": Refused,
}
"""Each event type and its payload declaration: the whole vocabulary of the log."""


class _Fields(NamedTuple):
    required: frozenset[str]
    allowed: frozenset[str]


_FIELDS: dict[str, _Fields] = {
    name: _Fields(frozenset(spec.__required_keys__), frozenset(spec.__required_keys__ | spec.__optional_keys__))  # type: ignore[attr-defined]
    for name, spec in SCHEMA.items()
}

# -- versions ------------------------------------------------------------------------------------------------
Migration = Callable[[str, dict[str, Any]], dict[str, Any]]
"""(event type, payload of version N) -> payload of version N + 1; returns the payload unchanged if its type did not change."""

LOG_MIGRATIONS: Final[Mapping[int, Migration]] = {}
"""Version N -> the function taking a payload from N to N + 1. Empty while version 1 is current."""


def upgrade(type_: str, payload: dict[str, Any], version: int | None, *, where: str = "",
            migrations: Mapping[int, Migration] = LOG_MIGRATIONS, current: int = LOG_SCHEMA_VERSION) -> dict[str, Any]:
    """A stored payload in the current version. `version` None is a row written before versions (1)."""
    version = 1 if version is None else version
    if version == current:
        return payload
    steps = {n: partial(step, type_) for n, step in migrations.items()}
    return walk(payload, version, current, steps, what=f"{where or 'an event'} ('{type_}')", error=LogError,
                registry="LOG_MIGRATIONS (engine/run/log.py)")


# -- checking ------------------------------------------------------------------------------------------------
def describe(entry: LogEntry) -> str:
    """Where an event is, in words a reader of an error message can find it by."""
    seq = f" #{entry.seq}" if entry.seq is not None else ""
    node = f" at node '{entry.node}'" if entry.node else ""
    return f"case {entry.case_id} ({entry.process_id}), event{seq} '{entry.type}'{node}"


def problem(entry: LogEntry) -> str | None:
    """What is wrong with an entry by the contract, or None when it conforms."""
    fields = _FIELDS.get(entry.type)
    if fields is None:
        return f"{describe(entry)}: unknown event type '{entry.type}'"
    data = entry.data
    if not isinstance(data, dict):
        return f"{describe(entry)}: the payload is {type(data).__name__}, not an object"
    keys = data.keys()
    if not fields.required <= keys:
        missing = ", ".join(sorted(fields.required - keys))
        return f"{describe(entry)}: missing field(s) {missing}"
    if not keys <= fields.allowed:
        unknown = ", ".join(sorted(keys - fields.allowed))
        return f"{describe(entry)}: field(s) {unknown} not in the contract of '{entry.type}'"
    return None


_HINT = ("the log was not written by this svcflow's interpreter (or was edited): fix or remove the event, "
         "or add its type and fields to engine/run/log.py with a migration")


def check(entry: LogEntry) -> None:
    """Raise LogError if the entry does not conform to the contract."""
    found = problem(entry)
    if found is not None:
        raise LogError(found, hint=_HINT)


def checked(entries: Iterable[LogEntry]) -> list[LogEntry]:
    """The entries as a list, each checked: what the small folds (weekly, overlay, artifacts) read."""
    out = list(entries)
    for entry in out:
        found = problem(entry)
        if found is not None:
            raise LogError(found, hint=_HINT)
    return out


def first_problem(entries: Iterable[LogEntry]) -> LogError | None:
    """The first entry that breaks the contract, as an error, or None: how a fast fold that stumbled says why."""
    for entry in entries:
        found = problem(entry)
        if found is not None:
            return LogError(found, hint=_HINT)
    return None


def known_type(row: tuple[Any, ...]) -> None:
    """Refuse an event type the contract does not know: fast folds call this once per type they meet
    (`row` is a LogEntry or a plain tuple in its field order)."""
    if row[4] not in _FIELDS:
        raise LogError(f"{describe(LogEntry._make(row))}: unknown event type '{row[4]}'", hint=_HINT)

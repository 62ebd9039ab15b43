"""What goes into the interpreter (events), and what comes out (commands and log entries).

Events are facts that happened to a case; commands are what the adapters (local runner,
Prefect flows) must do next; log entries are the append-only history the store keeps (their
record and payloads are declared in engine/run/log.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union

from engine.run.log import LogEntry as LogEntry  # the log's record lives with its contract


# -- events (input) ------------------------------------------------------------------------
@dataclass(frozen=True)
class StartCase:
    case_id: str
    data: dict[str, Any]
    parent_case: str | None = None
    parent_token: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class CompleteTask:
    task_id: str
    actor: str
    role: str
    output: dict[str, Any]


@dataclass(frozen=True)
class AssignTask:
    """Claim a task, or hand it to a named person (the dedicated owner, 专人负责)."""

    task_id: str
    assignee: str
    actor: str
    role: str


@dataclass(frozen=True)
class AutoStepDone:
    token_id: str
    attempt: int
    output: dict[str, Any]


@dataclass(frozen=True)
class AutoStepFailed:
    token_id: str
    attempt: int
    error: str


@dataclass(frozen=True)
class MessageArrived:
    message: str
    payload: dict[str, Any]
    actor: str | None = None


@dataclass(frozen=True)
class ChildFinished:
    token_id: str
    child_case: str
    child_data: dict[str, Any]
    outcome: str | None


@dataclass(frozen=True)
class Tick:
    """Apply what is due at the event's time: timers, SLA warnings, breaches, escalations."""


@dataclass(frozen=True)
class UpdateData:
    """Reclassification (tier, category, priority...): SLA targets are re-chosen, start times kept."""

    data: dict[str, Any]
    actor: str | None = None


@dataclass(frozen=True)
class CancelCase:
    reason: str
    actor: str | None = None


@dataclass(frozen=True)
class RecordIncident:
    """Something failed while the system acted for the case (not a person's input): park it for an operator."""

    message: str
    node: str | None = None
    token_id: str | None = None


Event = Union[StartCase, CompleteTask, AssignTask, AutoStepDone, AutoStepFailed, MessageArrived, ChildFinished, Tick,
              UpdateData, CancelCase, RecordIncident]


# -- commands (output) -----------------------------------------------------------------------
@dataclass(frozen=True)
class RunAutoStep:
    token_id: str
    node: str
    handler: str
    attempt: int
    retries: int
    retry_delay_seconds: float
    timeout_seconds: float | None
    idempotency_key: str


@dataclass(frozen=True)
class TaskOpened:
    task_id: str
    node: str
    role: str
    due_at: datetime | None


@dataclass(frozen=True)
class TaskClosed:
    task_id: str
    status: str


@dataclass(frozen=True)
class StartChild:
    token_id: str
    process: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Notify:
    """Tell roles about an SLA event: level-by-level escalation with the current status."""

    kind: str  # warned | breached | escalated
    roles: tuple[str, ...]
    clock: str
    level: int
    percent: int
    message: str


@dataclass(frozen=True)
class CaseEnded:
    status: str
    outcome: str | None
    parent_case: str | None
    parent_token: str | None


Command = Union[RunAutoStep, TaskOpened, TaskClosed, StartChild, Notify, CaseEnded]

"""The store's tables (SQLModel). The case row's `state` JSON is the source of truth; the
other tables are projections written in the same transaction, for queries and reports.

Times are aware datetimes stored in UTC (SQLModel's UTCDateTime), read back in UTC.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 4  # 2: events.log_version; 3: ix_cases_due holds only cases with something due;
# 4: the task indexes hold open tasks only


DUE_WHERE = "next_due_at IS NOT NULL"
"""The cases in ix_cases_due: those with a timer or SLA threshold ahead (the due query says so too)."""


OPEN_TASKS_WHERE = "status = 'open'"
"""The tasks in ix_tasks_role_open / ix_tasks_due_open; a query meaning to use them says so literally
(a bound status parameter does not let SQLite prove the query implies the index's WHERE)."""


class SchemaMeta(SQLModel, table=True):
    __tablename__ = "svcflow_schema"

    id: int = Field(default=1, primary_key=True)
    version: int


class DefinitionRow(SQLModel, table=True):
    """Every definition version a case ever ran on, by content hash: old cases keep theirs."""

    __tablename__ = "definitions"

    hash: str = Field(primary_key=True, max_length=64)
    process_id: str = Field(index=True, max_length=100)
    version: int
    file: str = Field(max_length=500)
    source: str = Field(sa_column=Column(Text, nullable=False))
    loaded_at: datetime


class CaseRow(SQLModel, table=True):
    __tablename__ = "cases"
    # The sweep's index: partial, so ended cases (most of a store, next_due_at NULL) are not in it and
    # cost nothing to the sweep's range scan nor to their own updates.
    __table_args__ = (Index("ix_cases_due", "next_due_at", postgresql_where=text(DUE_WHERE),
                            sqlite_where=text(DUE_WHERE)),)

    id: str = Field(primary_key=True, max_length=100)
    process_id: str = Field(index=True, max_length=100)
    definition_hash: str = Field(max_length=64)
    status: str = Field(index=True, max_length=20)
    outcome: str | None = Field(default=None, max_length=100)
    priority: str = Field(max_length=20)
    tier: str | None = Field(default=None, max_length=50)
    escalation_level: int = 0
    current_nodes: str = Field(default="", max_length=1000)
    parent_case: str | None = Field(default=None, index=True, max_length=100)
    created_at: datetime = Field(index=True)
    updated_at: datetime
    ended_at: datetime | None = None
    next_due_at: datetime | None = None
    version: int = 1
    state: str = Field(sa_column=Column(Text, nullable=False))


class TaskRow(SQLModel, table=True):
    __tablename__ = "tasks"
    # Partial on open tasks: a completion then only deletes the closed task's entries instead of
    # moving them to the 'completed' range, and closed tasks (most of a store) cost these indexes nothing.
    __table_args__ = (Index("ix_tasks_role_open", "role", postgresql_where=text(OPEN_TASKS_WHERE),
                            sqlite_where=text(OPEN_TASKS_WHERE)),
                      Index("ix_tasks_due_open", "due_at", postgresql_where=text(OPEN_TASKS_WHERE),
                            sqlite_where=text(OPEN_TASKS_WHERE)))

    id: str = Field(primary_key=True, max_length=120)
    case_id: str = Field(index=True, max_length=100)
    process_id: str = Field(max_length=100)
    node: str = Field(max_length=100)
    role: str = Field(max_length=100)
    assignee: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=20)
    priority: str = Field(max_length=20)
    escalation_level: int = 0
    created_at: datetime
    due_at: datetime | None = None
    completed_at: datetime | None = None
    completed_by: str | None = Field(default=None, max_length=100)


class SlaClockRow(SQLModel, table=True):
    __tablename__ = "sla_clocks"

    case_id: str = Field(primary_key=True, max_length=100)
    clock_id: str = Field(primary_key=True, max_length=200)
    scope: str = Field(max_length=10)
    name: str = Field(max_length=300)
    target: str = Field(max_length=30)
    started_at: datetime
    due_at: datetime | None = None
    status: str = Field(max_length=20)
    breached: bool = False
    consumed_seconds: int = 0
    ended_at: datetime | None = None


class EscalationRow(SQLModel, table=True):
    __tablename__ = "escalations"

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True, max_length=100)
    clock_id: str = Field(max_length=200)
    level: int
    percent: int
    kind: str = Field(max_length=20)
    node: str | None = Field(default=None, max_length=100)
    at: datetime = Field(index=True)
    actions: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class EventRow(SQLModel, table=True):
    """The append-only log. `seq` is the case's own counter; refusals have none (no state change).

    Two indexes only, because every transition appends several rows: (case_id, seq) serves a
    case's history, (process_id, at) serves reports over a period.
    """

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("case_id", "seq", name="uq_events_case_seq"),
                      Index("ix_events_process_at", "process_id", "at"))

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(max_length=100)
    process_id: str = Field(max_length=100)
    seq: int | None = None
    at: datetime
    type: str = Field(max_length=50)
    node: str | None = Field(default=None, max_length=100)
    payload: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    log_version: int | None = None  # the payload's version (engine/run/log.py); NULL: written before versions, 1

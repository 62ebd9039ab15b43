"""The SQL store: definitions, cases, tasks, SLA clocks, escalations and the event log.

Each transition is one transaction: the new state, its projections and its log entries are
written together, guarded by the case row's version (optimistic locking), so two processes
acting on the same case cannot both win. The log is append-only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, UTC
from typing import Any

from sqlalchemy import and_, delete, event, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel, create_engine

from engine.errors import ConcurrentModification, LogError, NotFound
from engine.run.log import ESCALATION_ACTIONS, LOG_SCHEMA_VERSION, LogEntry, check, upgrade
from engine.definition.loader import LoadedDefinition
from engine.run.state import InstanceState, SlaClock, Task
from engine.store import codec
from engine.store.serializer import state_from_json, state_json
from engine.store.tables import (
    DUE_WHERE, OPEN_TASKS_WHERE, SCHEMA_VERSION, CaseRow, DefinitionRow, EscalationRow, EventRow, SchemaMeta,
    SlaClockRow, TaskRow,
)

CASES = CaseRow.__table__  # type: ignore[attr-defined]
TASKS = TaskRow.__table__  # type: ignore[attr-defined]
CLOCKS = SlaClockRow.__table__  # type: ignore[attr-defined]
ESCALATIONS = EscalationRow.__table__  # type: ignore[attr-defined]
EVENTS = EventRow.__table__  # type: ignore[attr-defined]
DEFINITIONS = DefinitionRow.__table__  # type: ignore[attr-defined]
META = SchemaMeta.__table__  # type: ignore[attr-defined]


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC for storage (SQLModel's UTCDateTime refuses naive values)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value.astimezone(UTC)


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _dumps(value: Any) -> str:
    return codec.dumps(value, default=str)


PING_AFTER_IDLE_SECONDS = 5.0
"""A pooled PostgreSQL connection idle longer than this is pinged before use (see Store._ping_if_idle)."""

MANY_ROWS = 20
"""From this many rows of one statement on, PostgreSQL gets them in one COPY or array UPDATE."""

BatchItem = tuple[InstanceState | None, InstanceState, list[LogEntry], int]
"""One transition of a batch: (state read, new state, its log entries, version read)."""

TIER_CHARS: int = CASES.c.tier.type.length
"""Width of cases.tier: the tier is a data value (any text a definition allows), clipped in this projection."""


def _clip(text: str | None, chars: int) -> str | None:
    return text[:chars] if text is not None else None


STATES_REMEMBERED = 4096
"""Cases whose last written state a Store keeps for the next read of the same text (Store._parsed_state)."""


# Each migration takes the schema from version N-1 to N; create_all makes new tables.
MIGRATIONS: dict[int, Sequence[str]] = {
    2: ("ALTER TABLE events ADD COLUMN log_version INTEGER",),  # the payload version of each row (NULL: 1)
    3: ("DROP INDEX IF EXISTS ix_cases_due",  # the sweep's index, partial: ended cases leave it
        f"CREATE INDEX ix_cases_due ON cases (next_due_at) WHERE {DUE_WHERE}"),
    # 4: the task indexes cover open tasks only
    4: ("DROP INDEX IF EXISTS ix_tasks_open_role", "DROP INDEX IF EXISTS ix_tasks_due",
        f"CREATE INDEX IF NOT EXISTS ix_tasks_role_open ON tasks (role) WHERE {OPEN_TASKS_WHERE}",
        f"CREATE INDEX IF NOT EXISTS ix_tasks_due_open ON tasks (due_at) WHERE {OPEN_TASKS_WHERE}"),
}


def _compress_states_with_lz4(conn: Connection) -> None:
    """On PostgreSQL 14+ built with lz4, case states (about 2 kB, compressed inside the row) with lz4
    rather than pglz: a sweep pass rewrites and rereads thousands of them, and lz4 costs the server a
    fraction of pglz's CPU both ways. Part of schema version 3; other servers keep pglz."""
    if conn.dialect.name != "postgresql":
        return
    lz4 = conn.exec_driver_sql("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                               "WHERE name = 'default_toast_compression'").scalar()
    if lz4:
        conn.exec_driver_sql("ALTER TABLE cases ALTER COLUMN state SET COMPRESSION lz4")


class Store:
    """One database. SQLite file by default, PostgreSQL through SVCFLOW_DATABASE_URL."""

    def __init__(self, url: str) -> None:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine, "connect", _mark_used)
            event.listen(self.engine, "checkout", self._ping_if_idle)
            event.listen(self.engine, "checkin", _mark_used)
        self._sql = _HotSql(self.engine.dialect.name)
        self._pinned = threading.local()  # the connection of the command running on this thread (see command())
        self._saved: set[str] = set()  # definition hashes known to be stored
        self._states: dict[str, tuple[str, InstanceState]] = {}  # see _parsed_state
        self._states_lock = threading.Lock()
        self._integrity_errors = (IntegrityError, self.engine.dialect.dbapi.IntegrityError)  # type: ignore[union-attr]
        self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Create missing tables and apply pending migrations; safe to call on every start."""
        SQLModel.metadata.create_all(self.engine, tables=[
            META, DEFINITIONS, CASES, TASKS, CLOCKS, ESCALATIONS, EVENTS,
        ])
        with self.engine.begin() as conn:
            row = conn.execute(select(META.c.version).where(META.c.id == 1)).first()
            current = row[0] if row else 0
            if current == 0:
                conn.execute(insert(META).values(id=1, version=SCHEMA_VERSION))
                _compress_states_with_lz4(conn)
                return
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database schema is version {current}, newer than this svcflow ({SCHEMA_VERSION}): upgrade svcflow"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(version, ()):
                    conn.exec_driver_sql(statement)
                if version == 3:
                    _compress_states_with_lz4(conn)
            conn.execute(update(META).where(META.c.id == 1).values(version=SCHEMA_VERSION))

    def dispose(self) -> None:
        self.engine.dispose()

    def _ping_if_idle(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        """Ping a pooled connection only when it sat idle for a while (pool_pre_ping pinged at every
        checkout: one more round trip per command). A server restart or an idle timeout closes idle
        connections; one used moments ago is live, and if it is not the command fails cleanly (its
        transaction is rolled back, nothing is stored) and the broken connection leaves the pool."""
        used = record.info.get(_USED_AT)
        if used is not None and time.monotonic() - used <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = self.engine.dialect.do_ping(dbapi_connection)
        except self.engine.dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            raise DisconnectionError("the pooled connection is closed; the pool reconnects")

    @contextmanager
    def command(self) -> Iterator[None]:
        """One connection for the reads and the write of one command on this thread.

        Engine wraps each decision (read the case, apply, write) in it: the case is read on the
        connection its write then uses, so a completion costs one pool checkout and, on PostgreSQL,
        one transaction (the read and the guarded write commit together). Nested calls share the
        outer one's connection. Nothing slow may run inside: a handler or a notification runs after.
        """
        if getattr(self._pinned, "connection", None) is not None:
            yield
            return
        connection = self.engine.raw_connection()
        self._pinned.connection = connection
        try:
            yield
        finally:
            self._pinned.connection = None
            connection.close()  # the pool rolls back a read not followed by a write (a refusal)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- definitions ------------------------------------------------------------------------------
    def save_definition(self, loaded: LoadedDefinition, now: datetime) -> None:
        if loaded.hash in self._saved:
            return
        self._saved.add(loaded.hash)
        with self.transaction() as conn:
            exists = conn.execute(select(DEFINITIONS.c.hash).where(DEFINITIONS.c.hash == loaded.hash)).first()
            if exists:
                return
            try:
                conn.execute(insert(DEFINITIONS).values(
                    hash=loaded.hash, process_id=loaded.definition.id, version=loaded.definition.version,
                    file=loaded.source.file, source=loaded.source.text, loaded_at=utc(now),
                ))
            except IntegrityError:  # saved meanwhile by another process: same content, fine
                pass

    def definition_source(self, definition_hash: str) -> tuple[str, str]:
        with self.engine.connect() as conn:
            row = conn.execute(select(DEFINITIONS.c.source, DEFINITIONS.c.file)
                               .where(DEFINITIONS.c.hash == definition_hash)).first()
        if row is None:
            raise NotFound(f"definition version {definition_hash} is not in the store")
        return row[0], row[1]

    # -- cases -----------------------------------------------------------------------------------
    @contextmanager
    def _driver_transaction(self) -> Iterator[Any]:
        """A cursor of a pooled driver connection, committed on success and rolled back on error.

        The hot path (every transition, every sweep batch) goes to the driver directly: the
        SQLAlchemy Connection wrapped around each checkout and its begin/commit bookkeeping were
        a fifth of a transition's cost. The pool still gives the connection back reset.
        """
        pinned = getattr(self._pinned, "connection", None)
        connection = pinned if pinned is not None else self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
            connection.commit()
        except BaseException:
            _roll_back(connection)
            raise
        finally:
            if pinned is None:
                connection.close()

    def _fetch_one(self, sql: str, params: dict[str, Any]) -> Any:
        """One row through the driver's cursor: the read half of every transition. Inside a command
        it is not committed on its own: it belongs to the transaction the command's write commits."""
        pinned = getattr(self._pinned, "connection", None)
        if pinned is None:
            with self._driver_transaction() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchone()
        cursor = pinned.cursor()
        try:
            if self._sql.sqlite:
                cursor.execute(sql, params)
            else:
                with pinned.dbapi_connection.pipeline():  # the transaction's BEGIN goes with the query
                    cursor.execute(sql, params)
            return cursor.fetchone()
        except BaseException:
            _roll_back(pinned)
            raise
        finally:
            cursor.close()

    def load_case(self, case_id: str) -> tuple[InstanceState, int]:
        row = self._fetch_one(self._sql.load_case, {"id": case_id})
        if row is None:
            raise NotFound(f"no case with id '{case_id}'", hint="list cases with `svcflow cases`")
        return self._parsed_state(row[0], case_id), row[1]

    def load_case_of_task(self, task_id: str) -> tuple[InstanceState, int, str]:
        """The case a task belongs to, with the task's node: one query for `svcflow complete`."""
        row = self._fetch_one(self._sql.load_case_of_task, {"id": task_id})
        if row is None:
            raise NotFound(f"no task with id '{task_id}'", hint="list open tasks with `svcflow tasks`")
        return self._parsed_state(row[0], row[3]), row[1], row[2]

    def _parsed_state(self, text: str, case_id: str) -> InstanceState:
        """The state stored as `text`. Parsing a case's JSON was a seventh of a completion, and the
        next command on a case usually reads exactly the text this process wrote for it last: then
        a clone of the state that text was made from is returned instead. The stored text itself is
        the key (compared in full), so a write by another process, a rolled-back write or a sweep
        in between simply misses; the clones keep callers from changing the remembered state."""
        remembered = self._states.get(case_id)
        if remembered is not None and remembered[0] == text:
            return remembered[1].clone()
        return state_from_json(text, case_id)

    def _remember_state(self, text: str, state: InstanceState) -> None:
        """Keep the state written as `text` for _parsed_state (the last STATES_REMEMBERED cases)."""
        with self._states_lock:
            self._states.pop(state.case_id, None)
            self._states[state.case_id] = (text, state.clone())
            if len(self._states) > STATES_REMEMBERED:
                del self._states[next(iter(self._states))]

    def case_exists(self, case_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(CASES.c.id).where(CASES.c.id == case_id)).first() is not None

    def write(self, old: InstanceState | None, new: InstanceState, log: list[LogEntry],
              expected_version: int | None, now: datetime) -> int:
        """Store one transition atomically; returns the new version. Raises ConcurrentModification.

        The statements go straight to the driver's cursor inside SQLAlchemy's transaction: this
        runs for every step of every case, and SQLAlchemy's per-statement work was most of its cost.
        """
        changes = self._changes()
        changes.add(old, new, log)
        values = self._case_values(new, now)
        with self._driver_transaction() as cursor:
            if self._sql.sqlite or expected_version is None or changes.has_many():
                version = self._write_case(cursor, old, new, expected_version, now, values)
                changes.write(cursor)
            else:
                version = self._write_pipelined(cursor, old, new, changes, expected_version, now, values)
        self._remember_state(values["state"], new)
        return version

    def _write_pipelined(self, cursor: Any, old: InstanceState | None, new: InstanceState, changes: _Changes,
                         expected_version: int, now: datetime, values: dict[str, Any] | None = None) -> int:
        """PostgreSQL: the guarded case UPDATE, the projections and the log rows sent in one pipeline,
        one round trip instead of one per statement; the guard's row count is checked when the
        results are in, before the commit, so a case changed meanwhile still stores nothing."""
        guard = cursor.connection.cursor()
        try:
            with cursor.connection.pipeline():
                guard.execute(self._case_update(old, new), self._case_update_values(new, expected_version, now, values))
                changes.write(cursor)
            matched = guard.rowcount  # known once the pipeline is through (closing the cursor forgets it)
        except self._integrity_errors:
            raise ConcurrentModification(f"case {new.case_id}: its log moved on meanwhile; nothing was stored") \
                from None
        finally:
            guard.close()
        if matched != 1:
            raise _changed_meanwhile(new.case_id)
        return expected_version + 1

    def _write_case(self, cursor: Any, old: InstanceState | None, new: InstanceState,
                    expected_version: int | None, now: datetime, values: dict[str, Any] | None = None) -> int:
        sql = self._sql
        if values is None:
            values = self._case_values(new, now)
        if expected_version is None:
            try:
                cursor.execute(sql.insert_case, dict(
                    id=new.case_id, process_id=new.process_id, definition_hash=new.definition_hash,
                    parent_case=new.parent_case, created_at=sql.dt(new.started_at), version=1, **values,
                ))
            except self._integrity_errors:
                raise ConcurrentModification(f"case {new.case_id} already exists") from None
            return 1
        cursor.execute(self._case_update(old, new), self._case_update_values(new, expected_version, now, values))
        if cursor.rowcount != 1:
            raise _changed_meanwhile(new.case_id)
        return expected_version + 1

    def _case_update(self, old: InstanceState | None, new: InstanceState) -> str:
        """The guarded UPDATE of a case row, leaving out the indexed columns whose value stays."""
        if old is None:
            return self._sql.update_case
        return self._sql.update_case_keeping(status=old.status == new.status,
                                             next_due_at=old.next_due_at() == new.next_due_at())

    def _case_update_values(self, new: InstanceState, expected_version: int, now: datetime,
                            values: dict[str, Any] | None = None) -> dict[str, Any]:
        return dict(b_id=new.case_id, b_version=expected_version, version=expected_version + 1,
                    **(values if values is not None else self._case_values(new, now)))

    def _case_values(self, new: InstanceState, now: datetime) -> dict[str, Any]:
        """The case row's columns of a state (all but id, version and the creation columns)."""
        dt = self._sql.dt
        return dict(
            status=new.status, outcome=new.outcome, priority=new.priority, tier=_clip(new.tier, TIER_CHARS),
            escalation_level=new.escalation_level,
            current_nodes=",".join(sorted({t.node for t in new.tokens.values()}))[:1000],
            updated_at=dt(now), ended_at=dt(new.ended_at), next_due_at=dt(new.next_due_at()),
            state=state_json(new),
        )

    def _changes(self) -> _Changes:
        return _Changes(self._sql, self._integrity_errors)

    def record_refusal(self, case_id: str, process_id: str, at: datetime, kind: str, node: str | None,
                       data: dict[str, Any]) -> None:
        """A refused action changes nothing but is recorded (who tried what, and why it was refused)."""
        check(LogEntry(case_id, process_id, None, at, kind, node, data))
        row = dict(case_id=case_id, process_id=process_id, seq=None, at=self._sql.dt(utc(at)), type=kind, node=node,
                   payload=_dumps(data), log_version=LOG_SCHEMA_VERSION)
        with self._driver_transaction() as cursor:  # inside a command: on its connection
            cursor.execute(self._sql.insert_event, row)

    # -- bulk loading ------------------------------------------------------------------------------
    def rows_of(self, state: InstanceState, version: int, now: datetime) -> dict[str, list[dict[str, Any]]]:
        """The rows a case is stored as (cases, tasks, sla_clocks), by table name, with the values
        Store.write would give them: for bulk loads of cases made elsewhere (imports, benchmarks)."""
        dt = self._sql.dt
        case = dict(id=state.case_id, process_id=state.process_id, definition_hash=state.definition_hash,
                    parent_case=state.parent_case, created_at=dt(state.started_at), version=version,
                    **self._case_values(state, now))
        return {
            CASES.name: [case],
            TASKS.name: [{**_task_values(state, task, dt), "id": task.id} for task in state.tasks.values()],
            CLOCKS.name: [{**_clock_values(clock, dt), "case_id": state.case_id, "clock_id": key}
                          for key, clock in state.clocks.items()],
        }

    def bulk_load(self, table: str, columns: Sequence[str], rows: Iterator[Sequence[Any]]) -> int:
        """Insert many rows into one table in one transaction (PostgreSQL: COPY); returns how many.

        No checks beyond the database's own: the rows are expected to come from `rows_of`."""
        count = 0
        with self._driver_transaction() as cursor:
            if self._sql.sqlite:
                marks = ", ".join("?" for _ in columns)
                statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                while chunk := [row for _, row in zip(range(10_000), rows)]:
                    cursor.executemany(statement, chunk)
                    count += len(chunk)
            else:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        count += 1
        return count

    # -- the sweep's batches -------------------------------------------------------------------------
    def due_states(self, now: datetime, limit: int = 500) -> list[tuple[str, str, int]]:
        """(id, state JSON, version) of the cases with something due, earliest first: one index range
        scan, so its cost grows with the number due, not with the number of open cases."""
        with self._driver_transaction() as cursor:
            cursor.execute(self._sql.due_states, {"now": self._sql.dt(utc(now)), "limit": limit})
            return [(row[0], row[1], row[2]) for row in cursor.fetchall()]

    def write_batch(self, batch: Sequence[BatchItem], now: datetime) -> set[str]:
        """Store many transitions in one transaction; returns the ids of the cases written.

        Each case is written only if its row still has the version it was read at and nobody
        holds it: a case changed (or being changed) meanwhile is skipped, left for the next pass
        and never overwritten. Rows are locked in id order, so two sweeps cannot deadlock.
        """
        if not batch:
            return set()
        sql = self._sql
        by_id = {item[1].case_id: item for item in batch}
        with self._driver_transaction() as cursor:
            if sql.sqlite:  # one writer at a time: the version check of each UPDATE is the lock
                written = set()
                for case_id in sorted(by_id):
                    old, new, _log, version = by_id[case_id]
                    cursor.execute(sql.update_case, dict(b_id=case_id, b_version=version, version=version + 1,
                                                         **self._case_values(new, now)))
                    if cursor.rowcount == 1:
                        written.add(case_id)
            else:
                values = {case_id: self._case_values(item[1], now) for case_id, item in by_id.items()}  # before the
                # locks: they are held for the statements only, not for encoding a thousand states
                cursor.execute(sql.lock_cases, {"ids": sorted(by_id)})
                written = {case_id for case_id, version in cursor.fetchall() if by_id[case_id][3] == version}
                rows = [dict(id=case_id, version=by_id[case_id][3] + 1, **values[case_id])
                        for case_id in sorted(written)]  # locked above and at the version read: no guard needed
                if rows:
                    cursor.execute(sql.update_cases, {name: [row[name] for row in rows] for name in rows[0]})
            changes = self._changes()
            for case_id in sorted(written):
                old, new, log, _version = by_id[case_id]
                changes.add(old, new, log)
            changes.write(cursor)  # one executemany per statement for the whole batch
        return written

    # -- queries ---------------------------------------------------------------------------------
    def due_cases(self, now: datetime, limit: int = 500) -> list[str]:
        """Cases with a timer or SLA threshold due: an index range scan, cost ~ number due."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(CASES.c.id).where(and_(CASES.c.next_due_at.is_not(None), CASES.c.next_due_at <= utc(now)))
                .order_by(CASES.c.next_due_at).limit(limit)
            ).all()
        return [r[0] for r in rows]

    def task(self, task_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(TASKS).where(TASKS.c.id == task_id)).mappings().first()
        if row is None:
            raise NotFound(f"no task with id '{task_id}'", hint="list open tasks with `svcflow tasks`")
        return _aware_row(row)

    def tasks(self, *, role: str | None = None, status: str | None = "open", overdue_at: datetime | None = None,
              case_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = select(TASKS)
        if status == "open":
            query = query.where(text(f"tasks.{OPEN_TASKS_WHERE}"))  # literal: lets SQLite use the partial indexes
        elif status:
            query = query.where(TASKS.c.status == status)
        if role:
            query = query.where(TASKS.c.role == role)
        if case_id:
            query = query.where(TASKS.c.case_id == case_id)
        if overdue_at is not None:
            query = query.where(and_(TASKS.c.due_at.is_not(None), TASKS.c.due_at < utc(overdue_at)))
        query = query.order_by(TASKS.c.due_at.is_(None), TASKS.c.due_at, TASKS.c.created_at).limit(limit)
        with self.engine.connect() as conn:
            return [_aware_row(r) for r in conn.execute(query).mappings().all()]

    def cases(self, *, process_id: str | None = None, status: str | None = None, parent: str | None = None,
              limit: int = 1000) -> list[dict[str, Any]]:
        columns = [c for c in CASES.c if c.name != "state"]
        query = select(*columns)
        if process_id:
            query = query.where(CASES.c.process_id == process_id)
        if status:
            query = query.where(CASES.c.status == status)
        if parent:
            query = query.where(CASES.c.parent_case == parent)
        query = query.order_by(CASES.c.created_at, CASES.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [_aware_row(r) for r in conn.execute(query).mappings().all()]

    def clocks(self, case_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(CLOCKS).where(CLOCKS.c.case_id == case_id)
                                .order_by(CLOCKS.c.started_at, CLOCKS.c.clock_id)).mappings().all()
        return [_aware_row(r) for r in rows]

    def escalations(self, case_id: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        query = select(ESCALATIONS)
        if case_id:
            query = query.where(ESCALATIONS.c.case_id == case_id)
        if since:
            query = query.where(ESCALATIONS.c.at >= utc(since))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(ESCALATIONS.c.id)).mappings().all()
        return [_aware_row(r) for r in rows]

    def events(self, case_id: str | None = None, *, process_id: str | None = None, since: datetime | None = None,
               until: datetime | None = None, types: Sequence[str] | None = None) -> list[LogEntry]:
        """Log entries in the order written, each in the current payload version and checked against
        the log's contract (engine/run/log.py): a row it does not describe is a LogError naming it."""
        query = select(EVENTS.c.case_id, EVENTS.c.process_id, EVENTS.c.seq, EVENTS.c.at, EVENTS.c.type,
                       EVENTS.c.node, EVENTS.c.payload, EVENTS.c.log_version)
        if case_id:
            query = query.where(EVENTS.c.case_id == case_id)
        if process_id:
            query = query.where(EVENTS.c.process_id == process_id)
        if since:
            query = query.where(EVENTS.c.at >= utc(since))
        if until:
            query = query.where(EVENTS.c.at < utc(until))
        if types:
            query = query.where(EVENTS.c.type.in_(list(types)))
        query = query.order_by(EVENTS.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [entry_of_row(r) for r in rows]

    def delete_everything(self) -> None:
        """For tests and the demo's fresh start only."""
        with self.transaction() as conn:
            for table in (EVENTS, ESCALATIONS, CLOCKS, TASKS, CASES, DEFINITIONS):
                conn.execute(delete(table))


def _changed_meanwhile(case_id: str) -> ConcurrentModification:
    return ConcurrentModification(f"case {case_id} was changed by someone else meanwhile; nothing was stored",
                                  hint="reload the case and try again")


def entry_of_row(row: Any) -> LogEntry:
    """A stored row (case, process, seq, at, type, node, payload, log version) as a log entry of the current
    version, or a LogError saying which row is wrong. Every reader of the events table goes through it."""
    case_id, process_id, seq, at, type_, node, payload, version = row
    where = f"case {case_id} ({process_id}), event #{seq}"
    try:
        data = codec.loads(payload)
    except ValueError as exc:
        raise LogError(f"{where} '{type_}': its payload is not JSON ({exc})",
                       hint="the row was not written by svcflow: fix or remove it") from None
    if version != LOG_SCHEMA_VERSION:
        data = upgrade(type_, data, version, where=where)
    entry = LogEntry(case_id, process_id, seq, aware(at), type_, node, data)  # type: ignore[arg-type]
    check(entry)
    return entry


class _Changes:
    """The projection and log rows of one or more transitions, written with one executemany per
    statement: a sweep batch of a thousand cases costs a handful of round trips, not thousands."""

    def __init__(self, sql: _HotSql, integrity_errors: tuple[type[BaseException], ...]) -> None:
        self.sql = sql
        self.integrity_errors = integrity_errors
        self.batches: dict[str, list[dict[str, Any]]] = {}
        self.cases: list[str] = []

    def _put(self, statement: str, row: dict[str, Any]) -> None:
        self.batches.setdefault(statement, []).append(row)

    def add(self, old: InstanceState | None, new: InstanceState, log: list[LogEntry]) -> None:
        """Mirror the tasks and clocks that changed into their query tables; append the log entries."""
        sql, dt = self.sql, self.sql.dt
        old_tasks = old.tasks if old else {}
        for key, task in new.tasks.items():
            previous = old_tasks.get(key)
            if previous is task or previous == task:
                continue  # unchanged ones cost nothing
            self._put(sql.update_task if previous is not None else sql.insert_task,
                      {**_task_values(new, task, dt), "id": task.id})
        old_clocks = old.clocks if old else {}
        for key, clock in new.clocks.items():
            before = old_clocks.get(key)
            if before is clock or before == clock:
                continue
            self._put(sql.update_clock if before is not None else sql.insert_clock,
                      {**_clock_values(clock, dt), "case_id": new.case_id, "clock_id": key})
        if log:
            self.cases.append(new.case_id)
        for entry in log:
            at = dt(entry.at)
            self._put(sql.insert_event, dict(case_id=new.case_id, process_id=new.process_id, seq=entry.seq, at=at,
                                             type=entry.type, node=entry.node, payload=_dumps(entry.data),
                                             log_version=LOG_SCHEMA_VERSION))
            if entry.type == "escalated":  # the projection of log.Escalated
                data = entry.data
                actions = {k: data[k] for k in ESCALATION_ACTIONS if k in data}
                self._put(sql.insert_escalation, dict(
                    case_id=new.case_id, clock_id=data["clock"], level=data["level"], percent=data["percent"],
                    kind=data["kind"], node=entry.node, at=at, actions=_dumps(actions)))

    def has_many(self) -> bool:
        """True when a statement has MANY_ROWS rows or more (run_many then COPYs, which a pipeline cannot)."""
        return any(len(rows) >= MANY_ROWS for rows in self.batches.values())

    def write(self, cursor: Any) -> None:
        sql = self.sql
        for statement in (sql.update_task, sql.insert_task, sql.update_clock, sql.insert_clock):
            if rows := self.batches.get(statement):
                sql.run_many(cursor, statement, rows)
        if rows := self.batches.get(sql.insert_event):
            try:
                sql.run_many(cursor, sql.insert_event, rows)
            except self.integrity_errors:
                raise ConcurrentModification(f"case {', '.join(self.cases)}: its log moved on meanwhile; "
                                             "nothing was stored") from None
        if rows := self.batches.get(sql.insert_escalation):
            sql.run_many(cursor, sql.insert_escalation, rows)


def _task_values(state: InstanceState, task: Task, dt: Callable[[datetime | None], Any]) -> dict[str, Any]:
    return dict(case_id=state.case_id, process_id=state.process_id, node=task.node, role=task.role,
                assignee=task.assignee, status=task.status, priority=task.priority,
                escalation_level=task.escalation_level, created_at=dt(task.created_at), due_at=dt(task.due_at),
                completed_at=dt(task.completed_at), completed_by=task.completed_by)


def _clock_values(clock: SlaClock, dt: Callable[[datetime | None], Any]) -> dict[str, Any]:
    return dict(scope=clock.scope, name=clock.name[:300], target=clock.target_text, started_at=dt(clock.started_at),
                due_at=dt(clock.due_at), status=clock.status, breached=clock.breached,
                consumed_seconds=clock.consumed, ended_at=dt(clock.ended_at))


class _HotSql:
    """The statements every transition runs, as driver SQL built once per dialect.

    Going to the driver directly skips SQLAlchemy's per-statement compile and cache-key work,
    which was most of the cost of a transition; values are converted exactly as SQLModel's
    UTCDateTime would (UTC text on SQLite, aware datetimes on PostgreSQL).
    """

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        self._last_dt: tuple[datetime | None, Any] = (None, None)
        mark = (lambda n: f":{n}") if self.sqlite else (lambda n: f"%({n})s")

        self.copy_of: dict[str, str] = {}  # INSERT statement -> the COPY that loads the same columns
        self.update_many: dict[str, str] = {}  # UPDATE statement -> one UPDATE ... FROM unnest(arrays)

        def insert_sql(table: Any) -> str:
            generated = table in (EVENTS, ESCALATIONS)  # their integer id comes from the database
            names = [c.name for c in table.c if not (generated and c.name == "id")]
            statement = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(mark(n) for n in names)})"
            self.copy_of[statement] = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
            return statement

        def update_sql(table: Any, names: tuple[str, ...], keys: dict[str, str]) -> str:
            sets = ", ".join(f"{n} = {mark(n)}" for n in names)
            where = " AND ".join(f"{column} = {mark(param)}" for column, param in keys.items())
            statement = f"UPDATE {table.name} SET {sets} WHERE {where}"
            if not self.sqlite:  # many rows in one statement; keys named as their columns (no b_ guard)
                from sqlalchemy.dialects import postgresql

                columns = [*names, *(c for c in keys if c != "version")]
                types = {c.name: c.type.compile(dialect=postgresql.dialect()) for c in table.c}
                arrays = ", ".join(f"%({c})b::{types[c]}[]" for c in columns)
                self.update_many[statement] = (
                    f"UPDATE {table.name} AS t SET {', '.join(f'{n} = v.{n}' for n in names)} "
                    f"FROM unnest({arrays}) AS v({', '.join(columns)}) "
                    f"WHERE {' AND '.join(f't.{c} = v.{c}' for c in keys if c != 'version')}")
            return statement

        self.load_case = f"SELECT state, version FROM cases WHERE id = {mark('id')}"
        self.load_case_of_task = ("SELECT c.state, c.version, t.node, c.id FROM tasks t JOIN cases c ON c.id = t.case_id "
                                  f"WHERE t.id = {mark('id')}")
        self.insert_case = insert_sql(CASES)
        case_columns = ("status", "outcome", "priority", "tier", "escalation_level", "current_nodes", "updated_at",
                        "ended_at", "next_due_at", "state", "version")
        case_key = {"id": "b_id", "version": "b_version"}
        self.update_case = update_sql(CASES, case_columns, case_key)
        self._update_case_keeping = {  # (status kept, next_due_at kept) -> the UPDATE leaving them alone
            (status, due): update_sql(CASES, tuple(c for c in case_columns if not (
                (status and c == "status") or (due and c == "next_due_at"))), case_key)
            for status in (False, True) for due in (False, True)}
        self.update_cases = self.update_many.get(self.update_case, "")  # the sweep's batch, PostgreSQL
        self.insert_task = insert_sql(TASKS)
        self.update_task = update_sql(TASKS, ("role", "assignee", "status", "priority", "escalation_level",
                                              "due_at", "completed_at", "completed_by"), {"id": "id"})
        self.insert_clock = insert_sql(CLOCKS)
        self.update_clock = update_sql(CLOCKS, ("target", "due_at", "status", "breached", "consumed_seconds",
                                                "ended_at"), {"case_id": "case_id", "clock_id": "clock_id"})
        self.insert_event = insert_sql(EVENTS)
        self.due_states = (f"SELECT id, state, version FROM cases WHERE {DUE_WHERE} AND next_due_at <= "
                           f"{mark('now')} ORDER BY next_due_at LIMIT {mark('limit')}")
        self.lock_cases = ("SELECT id, version FROM cases WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE SKIP LOCKED"
                           if not self.sqlite else "")
        self.insert_escalation = insert_sql(ESCALATIONS)

    def update_case_keeping(self, *, status: bool, next_due_at: bool) -> str:
        """The case UPDATE without the indexed columns whose value stays: on SQLite each column SET
        rewrites its index entries even to the same value, two of a completion's ~20 pages."""
        return self._update_case_keeping[(status, next_due_at)]

    def run_many(self, cursor: Any, statement: str, rows: list[dict[str, Any]]) -> None:
        """One statement over many rows: on PostgreSQL from MANY_ROWS rows on, a COPY (inserts) or one
        UPDATE over arrays (updates) instead of a statement per row; executemany otherwise."""
        if self.sqlite or len(rows) < MANY_ROWS:
            cursor.executemany(statement, rows)
        elif statement in self.copy_of:
            names = list(rows[0])
            copy_sql = self.copy_of[statement]
            columns = copy_sql[copy_sql.index("(") + 1:copy_sql.index(")")].split(", ")
            assert set(names) == set(columns), (names, columns)
            with cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
        else:
            update = self.update_many[statement]
            cursor.execute(update, {name: [row[name] for row in rows] for name in rows[0]})

    def dt(self, value: datetime | None) -> Any:
        """A time as the column takes it. A transition's times are mostly one `now` (its log entries,
        the task it closes and opens, the case's update), so the last conversion is kept and reused."""
        if value is None:
            return None
        last = self._last_dt
        if last[0] is value:  # datetimes are immutable: the same object converts the same way
            return last[1]
        converted: Any = value.astimezone(UTC)
        if self.sqlite:
            converted = converted.replace(tzinfo=None).isoformat(" ", "microseconds")
        self._last_dt = (value, converted)  # one tuple: threads see the old pair or the new one
        return converted


def _aware_row(row: Any) -> dict[str, Any]:
    return {k: (aware(v) if isinstance(v, datetime) else v) for k, v in dict(row).items()}


_USED_AT = "svcflow_used_at"


def _mark_used(_dbapi_connection: Any, record: Any) -> None:
    """When a pooled connection was last given back (Store._ping_if_idle pings only after a pause)."""
    if record is not None:
        record.info[_USED_AT] = time.monotonic()


def _roll_back(connection: Any) -> None:
    """Roll a failed transaction back; a connection that broke meanwhile is dropped from the pool."""
    try:
        connection.rollback()
    except Exception:
        connection.invalidate()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL with synchronous=NORMAL, a deliberate durability choice: a commit appends to the WAL
    without an fsync, so a committed transition survives a crash of the process (the WAL is in the
    OS's hands), while a power cut or an OS crash may lose the transitions since the last
    checkpoint's fsync, never corrupting the file. FULL would fsync at every step; PostgreSQL
    (synchronous_commit on) is the store for deployments that need a power cut to lose nothing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


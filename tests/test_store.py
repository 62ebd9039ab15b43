"""The store on SQLite and PostgreSQL: transactions, optimistic locking, due queries, migrations."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text

from engine.time.clock import FakeClock
from engine.errors import ConcurrentModification, TaskRefused
from engine.run.events import Tick
from engine.run.interpreter import apply
from engine.definition.library import ProcessLibrary
from engine.run.runtime import Engine, LogNotifier
from engine.store import sql as sql_module
from engine.store.serializer import state_from_json
from engine.store.sql import Store
from engine.store.tables import SCHEMA_VERSION
from tests.conftest import MONDAY_9AM
from tests.test_semantics import ESCALATION, LINEAR


def _library() -> ProcessLibrary:
    library = ProcessLibrary()
    library.add_text(LINEAR, "linear.yaml")
    library.add_text(ESCALATION.replace("id: demo", "id: escalating"), "escalating.yaml")
    return library


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'svcflow.db'}")
        yield s
        s.dispose()
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"svcflow_test_{uuid.uuid4().hex[:8]}"
    base = url.replace("postgresql://", "postgresql+psycopg://")
    raw = create_engine(base)
    with raw.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    s = Store(f"{base}?options=-csearch_path%3D{schema}")
    yield s
    s.dispose()
    with raw.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    raw.dispose()


def _engine(store: Store, clock: FakeClock) -> Engine:
    return Engine(store, _library(), clock=clock, notifier=LogNotifier())


def test_a_case_round_trips_through_the_store(store: Store):
    engine = _engine(store, FakeClock(MONDAY_9AM))
    case_id = engine.start("demo", {"tier": "gold"})
    state, version = store.load_case(case_id)
    assert version == 1 and state.data == {"tier": "gold"} and state.status == "running"
    assert store.events(case_id)[0].type == "case_started"


def test_the_event_log_numbers_each_case_event_once_in_order(store: Store):
    engine = _engine(store, FakeClock(MONDAY_9AM))
    case_id = engine.start("demo", {})
    task = store.tasks(case_id=case_id)[0]
    engine.complete(task["id"], actor="li", role="agent", data={"result": "ok"})
    seqs = [e.seq for e in store.events(case_id) if e.seq is not None]
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_stale_write_is_refused_and_stores_nothing(store: Store):
    clock = FakeClock(MONDAY_9AM)
    engine = _engine(store, clock)
    case_id = engine.start("escalating", {})
    state, version = store.load_case(case_id)
    graph = engine.graph_for(state)
    later = clock.advance(timedelta(hours=3))
    first = apply(graph, state, Tick(), later)
    second = apply(graph, state, Tick(), later)
    store.write(state, first.state, first.log, version, later)
    with pytest.raises(ConcurrentModification):
        store.write(state, second.state, second.log, version, later)
    warned = [e for e in store.events(case_id) if e.type == "sla_warned"]
    assert len(warned) == 1


def test_two_threads_completing_the_same_task_cannot_both_win(store: Store):
    engine = _engine(store, FakeClock(MONDAY_9AM))
    case_id = engine.start("demo", {})
    task_id = store.tasks(case_id=case_id)[0]["id"]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        barrier.wait()
        try:
            engine.complete(task_id, actor=name, role="agent", data={"result": "ok"})
            outcomes.append("won")
        except (TaskRefused, ConcurrentModification):
            outcomes.append("refused")

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("li", "wang")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "won"]
    completed = [e for e in store.events(case_id) if e.type == "task_completed"]
    assert len(completed) == 1


def _started_and_counted(store: Store) -> tuple[Engine, str, str, list[object]]:
    """An engine with a started demo case, its task, and a list that grows by one per pool checkout."""
    engine = _engine(store, FakeClock(MONDAY_9AM))
    case_id = engine.start("demo", {})
    task_id = store.tasks(case_id=case_id)[0]["id"]
    checkouts: list[object] = []
    event.listen(store.engine, "checkout", lambda *_: checkouts.append(1))
    return engine, case_id, task_id, checkouts


def test_a_completion_reads_and_writes_on_one_pooled_connection(store: Store):
    engine, case_id, task_id, checkouts = _started_and_counted(store)
    engine.complete(task_id, actor="li", role="agent", data={"result": "ok"})
    assert len(checkouts) == 1
    assert store.cases(status="completed")[0]["id"] == case_id  # the status projection still moves


def test_a_refused_completion_is_recorded_on_the_connection_that_read_the_case(store: Store):
    engine, case_id, task_id, checkouts = _started_and_counted(store)
    with pytest.raises(TaskRefused):
        engine.complete(task_id, actor="li", role="billing", data={"result": "ok"})
    assert len(checkouts) == 1
    assert [e.type for e in store.events(case_id)][-1] == "refused"
    assert store.load_case(case_id)[1] == 1  # the case itself is unchanged


def test_a_connection_the_server_dropped_while_idle_is_replaced(store: Store, monkeypatch: pytest.MonkeyPatch):
    if store.dialect != "postgresql":
        pytest.skip("a SQLite connection is a file handle: no server can drop it")
    engine = _engine(store, FakeClock(MONDAY_9AM))
    case_id = engine.start("demo", {})
    task_id = store.tasks(case_id=case_id)[0]["id"]
    pooled = store.engine.raw_connection()
    cursor = pooled.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    cursor.close()
    pooled.rollback()
    pooled.close()  # back into the pool, as after any command
    admin = create_engine(store.url)  # its own connection: the store's pool holds only the doomed one
    with admin.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    monkeypatch.setattr(sql_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle "long enough"
    engine.complete(task_id, actor="li", role="agent", data={"result": "ok"})
    assert engine.case(case_id).status == "completed"


def test_due_cases_are_found_by_their_next_due_time_only(store: Store):
    clock = FakeClock(MONDAY_9AM)
    engine = _engine(store, clock)
    escalating = engine.start("escalating", {})
    engine.start("demo", {})  # no SLA: never due
    assert store.due_cases(MONDAY_9AM) == []
    assert store.due_cases(MONDAY_9AM + timedelta(hours=2)) == [escalating]


def test_due_query_uses_the_index(store: Store):
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            plan = " ".join(str(r) for r in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT id FROM cases WHERE next_due_at IS NOT NULL AND next_due_at <= :n "
                "ORDER BY next_due_at LIMIT 10"), {"n": "2030-01-01"}).all())
            assert "ix_cases_due" in plan
        else:
            conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(str(r) for r in conn.execute(text(
                "EXPLAIN SELECT id FROM cases WHERE next_due_at IS NOT NULL AND next_due_at <= now() "
                "ORDER BY next_due_at LIMIT 10")).all())
            assert "ix_cases_due" in plan


def _due_index_sql(store: Store) -> str:
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            return str(conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'ix_cases_due'")).scalar_one())
        return str(conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_cases_due' "
                                     "AND schemaname = current_schema()")).scalar_one())


def test_a_store_of_schema_version_2_gets_the_due_index_without_ended_cases(store: Store):
    with store.engine.begin() as conn:  # as version 2 left it: every case in the index
        conn.execute(text("DROP INDEX ix_cases_due"))
        conn.execute(text("CREATE INDEX ix_cases_due ON cases (next_due_at)"))
        conn.execute(text("UPDATE svcflow_schema SET version = 2"))
    assert "WHERE" not in _due_index_sql(store).upper()
    store.migrate()
    assert "NEXT_DUE_AT IS NOT NULL" in _due_index_sql(store).upper()


@pytest.mark.postgres
def test_case_states_are_compressed_with_lz4_on_postgres_fresh_or_migrated(store: Store):
    def compression() -> str:
        with store.engine.connect() as conn:
            return str(conn.execute(text("SELECT attcompression FROM pg_attribute WHERE attrelid = 'cases'::regclass "
                                         "AND attname = 'state'")).scalar_one())

    if store.dialect == "sqlite":
        pytest.skip("PostgreSQL's column compression")
    assert compression() == "l"
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE cases ALTER COLUMN state SET COMPRESSION pglz"))
        conn.execute(text("UPDATE svcflow_schema SET version = 2"))
    store.migrate()
    assert compression() == "l"


def test_open_task_queries_use_the_partial_task_indexes(store: Store):
    engine = _engine(store, FakeClock(MONDAY_9AM))
    engine.start("demo", {})
    statements: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: object, context: object, many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        store.tasks(role="agent")
        store.tasks(overdue_at=MONDAY_9AM)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    (by_role, by_role_params), (overdue, overdue_params) = statements
    explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        plans = [" ".join(str(r) for r in conn.exec_driver_sql(explain + statement, params).all())  # type: ignore[arg-type]
                 for statement, params in ((by_role, by_role_params), (overdue, overdue_params))]
    assert all("ix_tasks_role_open" in plan or "ix_tasks_due_open" in plan for plan in plans)  # a planner's choice


def test_a_completed_task_leaves_the_open_task_indexes(store: Store):
    engine = _engine(store, FakeClock(MONDAY_9AM))
    case_id = engine.start("demo", {})
    task_id = store.tasks(case_id=case_id)[0]["id"]
    engine.complete(task_id, actor="li", role="agent", data={"result": "ok"})
    assert store.task(task_id)["status"] == "completed"
    assert task_id not in [t["id"] for t in store.tasks(role="agent")]
    if store.dialect == "sqlite":  # the index itself holds only the open tasks
        with store.engine.connect() as conn:
            indexed = conn.execute(text("SELECT id FROM tasks INDEXED BY ix_tasks_role_open "
                                        "WHERE status = 'open' AND role = 'agent'")).scalars().all()
            assert task_id not in indexed


def test_a_remembered_state_equals_the_stored_text_parsed(store: Store):
    engine = _engine(store, FakeClock(MONDAY_9AM))
    case_id = engine.start("demo", {"tier": "gold"})
    engine.complete(store.tasks(case_id=case_id)[0]["id"], actor="li", role="agent", data={"result": "ok"})
    remembered, version = store.load_case(case_id)
    text_ = store._fetch_one(store._sql.load_case, {"id": case_id})[0]
    assert store._states[case_id][0] == text_  # the read above was served from memory
    assert remembered == state_from_json(text_, case_id) and version == 2


def test_a_state_written_by_another_store_is_read_from_the_database(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = Store(url), Store(url)
    try:
        clock = FakeClock(MONDAY_9AM)
        case_id = _engine(first, clock).start("demo", {})
        task_id = first.tasks(case_id=case_id)[0]["id"]
        _engine(second, clock).complete(task_id, actor="li", role="agent", data={"result": "ok"})
        state, version = first.load_case(case_id)
        assert version == 2 and state.tasks[task_id].status == "completed"
    finally:
        first.dispose()
        second.dispose()


def test_changing_a_loaded_state_does_not_change_the_next_load(store: Store):
    engine = _engine(store, FakeClock(MONDAY_9AM))
    case_id = engine.start("demo", {"tier": "gold"})
    loaded, _ = store.load_case(case_id)
    loaded.data["tier"] = "bronze"
    loaded.status = "cancelled"
    again, _ = store.load_case(case_id)
    assert again.data == {"tier": "gold"} and again.status == "running"


def test_opening_the_store_twice_keeps_data_and_schema_version(store: Store):
    engine = _engine(store, FakeClock(MONDAY_9AM))
    case_id = engine.start("demo", {})
    store.migrate()
    assert store.load_case(case_id)[0].case_id == case_id
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM svcflow_schema")).scalar() == SCHEMA_VERSION


def test_old_definition_versions_are_loaded_from_the_store(store: Store):
    clock = FakeClock(MONDAY_9AM)
    engine = _engine(store, clock)
    case_id = engine.start("demo", {})
    fresh_library = ProcessLibrary()
    fresh_library.add_text(LINEAR.replace("outcome: closed", "outcome: changed"), "linear.yaml")
    restarted = Engine(store, fresh_library, clock=clock, notifier=LogNotifier())
    task = store.tasks(case_id=case_id)[0]
    restarted.complete(task["id"], actor="li", role="agent", data={"result": "ok"})
    assert restarted.case(case_id).outcome == "closed"


def test_pending_migrations_are_applied_once_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import engine.store.sql as store_module

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).dispose()  # a database at today's schema version
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(store_module, "MIGRATIONS", {SCHEMA_VERSION + 1: ["ALTER TABLE cases ADD COLUMN note VARCHAR(200)"]})
    upgraded = Store(url)
    upgraded.migrate()  # running again must not re-apply
    with upgraded.engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM svcflow_schema")).scalar() == SCHEMA_VERSION + 1
        assert "note" in [row[1] for row in conn.execute(text("PRAGMA table_info(cases)")).all()]
    upgraded.dispose()


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import engine.store.sql as store_module

    url = f"sqlite:///{tmp_path / 'new.db'}"
    Store(url).dispose()
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 0)
    with pytest.raises(RuntimeError, match="upgrade svcflow"):
        Store(url)

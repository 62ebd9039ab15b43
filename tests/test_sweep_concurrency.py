"""The batched sweep's guarantees: a case changed between the sweep's read and its write is skipped
(left for the next pass, never overwritten), and sweeps running beside each other and beside
people completing tasks on the same cases escalate each threshold once and lose no update."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from engine.definition.library import ProcessLibrary
from engine.definition.model import HumanTask
from engine.errors import SvcflowError
from engine.run.events import Notify
from engine.run.runtime import Engine
from engine.store.sql import Store
from engine.time.clock import FakeClock
from svcflow.demo_operators import sample_fields
from tests.conftest import MONDAY_9AM

COMPLAINT = {"customer_id": "C001", "customer_name": "张三", "tier": "gold", "category": "billing",
             "description": "多扣费"}
LATER = MONDAY_9AM + timedelta(hours=3)  # register's 1 h step SLA is past every threshold of its ladder


class Counted:
    def __init__(self) -> None:
        self.sent = 0

    def notify(self, case_id: str, process_id: str, command: Notify) -> None:
        self.sent += 1


@pytest.fixture(scope="module")
def library() -> ProcessLibrary:
    return ProcessLibrary.from_dir()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'svcflow.db'}"
        return
    yield from _own_schema(request.getfixturevalue("postgres_url"))


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    yield from _own_schema(postgres_url)


def _own_schema(postgres_url: str) -> Iterator[str]:
    """A store URL on a fresh PostgreSQL schema, dropped afterwards."""
    base = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    schema = f"svcflow_test_{uuid.uuid4().hex[:8]}"
    raw = create_engine(base)
    with raw.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{base}?options=-csearch_path%3D{schema}"
    with raw.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    raw.dispose()


def _engine(url: str, library: ProcessLibrary, at: Any = LATER) -> Engine:
    return Engine(Store(url), library, clock=FakeClock(at), notifier=Counted())


def test_a_batch_skips_a_case_whose_version_moved_and_writes_the_others(url: str, library: ProcessLibrary):
    engine = _engine(url, library, MONDAY_9AM)
    kept, moved = (engine.start("complaint_handling", COMPLAINT) for _ in range(2))
    rows = engine.store.due_states(LATER, 10)
    assert {case_id for case_id, _, _ in rows} == {kept, moved}
    engine.update(moved, {"category": "delivery"}, actor="wu")  # someone acts after the sweep read it
    sweeper = _engine(url, library)
    sweeper.store.due_states = lambda now, limit=500: rows  # type: ignore[method-assign]
    swept = dict(sweeper.sweep(now=LATER))
    assert [case_id for case_id in swept if case_id in (kept, moved)] == [kept]  # (scheduled starts aside)
    assert engine.case(moved).data["category"] == "delivery"  # not overwritten by the stale state
    assert not any(e.type == "escalated" for e in engine.store.events(moved))
    assert any(e.type == "escalated" for e in engine.store.events(kept))


@pytest.mark.postgres
def test_two_sweeps_and_four_workers_on_the_same_cases_escalate_once_and_lose_no_update(pg_url: str,
                                                                                        library: ProcessLibrary):
    url = pg_url
    opener = _engine(url, library, MONDAY_9AM)
    cases = [opener.start("complaint_handling", COMPLAINT) for _ in range(24)]
    tasks = opener.store.tasks(limit=1000)
    completed: list[str] = []
    errors: list[BaseException] = []

    def sweeping() -> None:
        engine = _engine(url, library)
        try:
            for _ in range(3):
                engine.sweep()  # one batch: PostgreSQL gets its rows by COPY and array UPDATEs
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    def working(k: int) -> None:
        engine = _engine(url, library)
        rng = random.Random(k)
        try:
            for task in tasks[k::4]:
                state, _ = engine.store.load_case(task["case_id"])
                node = engine.graph_for(state).nodes[task["node"]]
                assert isinstance(node, HumanTask)
                data = sample_fields({f.id: f for f in node.form}, rng, LATER, present=state.data)
                try:
                    engine.complete(task["id"], actor=f"{task['role']}_li", role=task["role"], data=data)
                except SvcflowError:  # refused (recorded): not an update that could be lost
                    continue
                completed.append(task["id"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sweeping) for _ in range(2)]
    threads += [threading.Thread(target=working, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    _engine(url, library).sweep()  # what was skipped for a concurrent change is done by the next pass

    escalations = opener.store.escalations()
    levels = [(row["case_id"], row["clock_id"], row["level"]) for row in escalations]
    double_escalations = len(levels) - len(set(levels))
    lost_updates = 0
    for case_id in cases:
        view = opener.case(case_id)
        seqs = [e.seq for e in view.events if e.seq is not None]
        lost_updates += seqs != list(range(1, len(seqs) + 1)) or view.state.seq != seqs[-1]
    lost_updates += sum(opener.store.task(task_id)["status"] != "completed" for task_id in completed)
    for case_id in cases:  # the projections agree with the state they were written with
        state = opener.case(case_id).state
        rows = {row["clock_id"]: (row["status"], row["breached"], row["due_at"]) for row in opener.store.clocks(case_id)}
        assert rows == {key: (c.status, c.breached, c.due_at) for key, c in state.clocks.items()}
        tasks_of_case = {row["id"]: (row["status"], row["escalation_level"]) for row in
                         opener.store.tasks(case_id=case_id, status=None)}
        assert tasks_of_case == {t.id: (t.status, t.escalation_level) for t in state.tasks.values()}
    assert escalations and completed  # both sides really ran
    assert (double_escalations, lost_updates) == (0, 0)


class Recorded:
    """Which cases were notified, in order."""

    def __init__(self) -> None:
        self.cases: list[str] = []

    def notify(self, case_id: str, process_id: str, command: Notify) -> None:
        self.cases.append(case_id)


def _started(url: str, library: ProcessLibrary, count: int) -> list[str]:
    opener = _engine(url, library, MONDAY_9AM)
    return [opener.start("complaint_handling", COMPLAINT) for _ in range(count)]


def test_a_pass_in_several_batches_sweeps_and_notifies_every_due_case_once(url: str, library: ProcessLibrary):
    cases = _started(url, library, 23)
    notifier = Recorded()
    sweeper = Engine(Store(url), library, clock=FakeClock(LATER), notifier=notifier)
    swept = [case_id for case_id, _ in sweeper.sweep(now=LATER, batch=5) if case_id in cases]  # 5 batches
    assert sorted(swept) == sorted(cases)
    assert set(notifier.cases) == set(cases)
    assert not [case_id for case_id, _, _ in sweeper.store.due_states(LATER) if case_id in cases]


def test_when_a_batch_write_fails_the_batches_stored_are_still_notified_and_the_error_raised(
        url: str, library: ProcessLibrary):
    cases = _started(url, library, 15)
    notifier = Recorded()
    sweeper = Engine(Store(url), library, clock=FakeClock(LATER), notifier=notifier)
    write_batch = sweeper.store.write_batch
    calls: list[int] = []

    def second_fails(batch: Any, now: Any) -> set[str]:
        calls.append(len(batch))
        if len(calls) == 2:
            raise OSError("the database went away")
        return write_batch(batch, now)

    sweeper.store.write_batch = second_fails  # type: ignore[method-assign]
    with pytest.raises(OSError, match="went away"):
        sweeper.sweep(now=LATER, batch=5)
    stored = {case_id for case_id in cases
              if any(e.type == "escalated" for e in sweeper.store.events(case_id))}
    assert stored and stored != set(cases)  # the first batch was stored, the second was not
    assert set(notifier.cases) == stored  # every stored case driven, nothing driven that was not stored

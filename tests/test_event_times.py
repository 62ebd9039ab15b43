"""Event times are never back-dated: within a case, the log's times never go backwards, even when a
sweep runs for a while or several sweeps and users act on the same cases at once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.definition.library import ProcessLibrary
from engine.run.runtime import Engine, LogNotifier
from engine.store.sql import Store
from engine.time.clock import FakeClock, SystemClock
from tests.conftest import MONDAY_9AM

COMPLAINT = {"customer_id": "C001", "customer_name": "张三", "tier": "gold", "category": "billing",
             "description": "多扣费"}


def assert_times_never_go_backwards(engine: Engine, case_id: str) -> None:
    events = [e for e in engine.store.events(case_id) if e.seq is not None]
    events.sort(key=lambda e: e.seq or 0)
    for earlier, later in zip(events, events[1:]):
        assert later.at >= earlier.at, f"{case_id}: {later.type} #{later.seq} at {later.at} is stamped " \
                                       f"before {earlier.type} #{earlier.seq} at {earlier.at}"


def test_a_case_changed_while_a_sweep_runs_is_left_for_the_next_pass_and_stamped_after_that_change(
        library_engine: Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch):
    engine = library_engine
    first = engine.start("complaint_handling", COMPLAINT)
    clock.advance(timedelta(minutes=1))
    second = engine.start("complaint_handling", COMPLAINT)
    clock.advance(timedelta(days=3))
    read = engine.store.due_states

    def read_then_someone_updates_the_second(now: datetime, limit: int = 500) -> list[tuple[str, str, int]]:
        """The sweep has read both due cases; ten minutes pass and someone updates the second."""
        rows = read(now, limit)
        monkeypatch.setattr(engine.store, "due_states", read)
        clock.advance(timedelta(minutes=10))
        engine.update(second, {"category": "delivery"}, actor="wu")
        return rows

    monkeypatch.setattr(engine.store, "due_states", read_then_someone_updates_the_second)
    results = dict(engine.sweep())
    assert first in results and second not in results  # its version moved: skipped, not overwritten
    results = dict(engine.sweep())
    updated_at = next(e.at for e in engine.store.events(second) if e.type == "data_updated")
    assert results[second] and all(e.at >= updated_at for e in results[second])
    assert_times_never_go_backwards(engine, second)


def test_concurrent_sweeps_and_updates_never_stamp_an_event_before_the_one_it_follows(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'svcflow.db'}"
    library = ProcessLibrary.from_dir()
    opener = Engine(Store(url), library, clock=FakeClock(MONDAY_9AM), notifier=LogNotifier())
    cases = [opener.start("complaint_handling", COMPLAINT) for _ in range(40)]
    workers = [Engine(Store(url), library, clock=SystemClock(), notifier=LogNotifier()) for _ in range(3)]
    errors: list[BaseException] = []

    def sweeping(engine: Engine) -> None:
        try:
            for _ in range(3):
                engine.sweep()
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    def updating(engine: Engine) -> None:
        try:
            for case_id in cases:
                engine.update(case_id, {"category": "delivery"}, actor="wu")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sweeping, args=(workers[0],)), threading.Thread(target=sweeping, args=(
        workers[1],)), threading.Thread(target=updating, args=(workers[2],))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert any(e.type == "sla_breached" for e in opener.store.events())
    for case_id in cases:
        assert_times_never_go_backwards(opener, case_id)

"""The pieces of the production checks that need no Prefect server: what a dead run leaves for the
reconciler, how a dead run is recognised, and the history audit the fault check relies on."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.run.runtime import Engine
from flows.audit import history_problems
from flows.reconcile import is_dead, outstanding_work
from flows.runtime import DEFER_ALL, FlowEngine, segment
from flows.staff import Staff, timer_only
from svcflow.stack import read_env_file, sample_data

REGISTER = {"customer_id": "C-1", "customer_name": "王芳", "description": "charged twice"}


@pytest.fixture
def engine(library_engine: Engine) -> FlowEngine:
    return FlowEngine.wrap(library_engine)


def test_a_step_deferred_by_a_run_that_died_is_outstanding_until_recovered(engine: FlowEngine) -> None:
    case_id = engine.start("complaint_handling", REGISTER, actor="desk")
    register = engine.store.load_case(case_id)[0].open_tasks()[0]
    with segment(DEFER_ALL):  # the completion is stored, the step after it is left for the case's run
        engine.complete(register.id, actor="wang", role=register.role, data=REGISTER)
    assert outstanding_work(engine, engine.store.load_case(case_id)[0]) == ["step detect_major"]
    engine.recover(case_id)
    assert outstanding_work(engine, engine.store.load_case(case_id)[0]) == []


def test_a_case_waiting_for_a_person_has_no_outstanding_work(engine: FlowEngine) -> None:
    case_id = engine.start("complaint_handling", REGISTER, actor="desk")
    assert outstanding_work(engine, engine.store.load_case(case_id)[0]) == []


def test_the_audit_finds_nothing_wrong_in_a_major_complaint_worked_to_its_end(library_engine: Engine) -> None:
    staff = Staff(library_engine, wake=False)  # type: ignore[arg-type]
    case_id = library_engine.start("major_complaint", sample_data(library_engine, "major_complaint"), actor="desk")
    for _ in range(30):
        if not staff.act([case_id]):
            break
    assert library_engine.store.load_case(case_id)[0].status == "completed"
    assert history_problems(library_engine, case_id) == []


def _with_events(engine: Engine, monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    original = engine.store.events
    monkeypatch.setattr(engine.store, "events", lambda case_id=None, **kw: change(original(case_id, **kw)))


def test_the_audit_reports_a_step_completed_twice(library_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    case_id = library_engine.start("complaint_handling", REGISTER, actor="desk")
    task = library_engine.store.load_case(case_id)[0].open_tasks()[0]
    library_engine.complete(task.id, actor="wang", role=task.role, data=REGISTER)

    def twice(events: list[Any]) -> list[Any]:
        done = next(e for e in events if e.type == "step_completed")
        return [*events, done._replace(seq=len(events) + 1)]

    _with_events(library_engine, monkeypatch, twice)
    assert history_problems(library_engine, case_id) == [f"{case_id}: step detect_major done twice (seq "
                                                         f"{len(library_engine.store.events(case_id))})"]


def test_the_audit_reports_a_step_entered_and_never_completed(library_engine: Engine,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    case_id = library_engine.start("complaint_handling", REGISTER, actor="desk")
    task = library_engine.store.load_case(case_id)[0].open_tasks()[0]
    library_engine.complete(task.id, actor="wang", role=task.role, data=REGISTER)

    def lost(events: list[Any]) -> list[Any]:
        kept = [e for e in events if e.type != "step_completed"]
        return [e._replace(seq=i) for i, e in enumerate(kept, 1)]

    _with_events(library_engine, monkeypatch, lost)
    assert history_problems(library_engine, case_id) == [
        f"{case_id}: step detect_major entered and never completed (1 lost)"]


def test_a_run_whose_process_is_gone_here_is_dead_at_once() -> None:
    gone = 2 ** 22 + 12345  # above any pid_max default: no such process
    run = SimpleNamespace(infrastructure_pid=str(gone), state=SimpleNamespace(timestamp=datetime.now(UTC)),
                          id="r", state_type=None)
    assert is_dead(client=None, run=run, now=datetime.now(UTC), stale_after=600, local=True)


def test_a_run_that_changed_state_recently_is_alive_without_asking_for_heartbeats() -> None:
    run = SimpleNamespace(infrastructure_pid=None, state=SimpleNamespace(timestamp=datetime.now(UTC)), id="r",
                          state_type=None)
    assert not is_dead(client=None, run=run, now=datetime.now(UTC), stale_after=600, local=False)


def test_a_silent_run_without_heartbeats_is_dead_after_the_stale_time() -> None:
    old = datetime.now(UTC) - timedelta(hours=1)
    run = SimpleNamespace(infrastructure_pid=None, state=SimpleNamespace(timestamp=old), id="r", state_type=None)
    no_events = SimpleNamespace(request=lambda *a, **k: SimpleNamespace(json=lambda: {"events": []}))
    assert is_dead(client=no_events, run=run, now=datetime.now(UTC), stale_after=600, local=False)


def test_a_case_waiting_only_for_its_return_visit_reports_the_due_time(library_engine: Engine) -> None:
    staff = Staff(library_engine, wake=False)  # type: ignore[arg-type]
    case_id = library_engine.start("complaint_handling", REGISTER, actor="desk")
    for _ in range(30):
        if timer_only(library_engine, case_id) or not staff.act([case_id]):  # type: ignore[arg-type]
            break
    state = library_engine.store.load_case(case_id)[0]
    assert timer_only(library_engine, case_id) == state.tokens[next(iter(state.tokens))].timer_due  # type: ignore[arg-type]
    assert [t.node for t in state.tokens.values()] == ["return_visit_wait"]


def test_the_stack_env_file_is_read_as_the_script_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text('export PREFECT_API_URL=http://127.0.0.1:4201/api\nexport SVCFLOW_CLOCK="accelerated|a|b|60"\n')
    assert read_env_file(path) == {"PREFECT_API_URL": "http://127.0.0.1:4201/api",
                                   "SVCFLOW_CLOCK": "accelerated|a|b|60"}


def test_a_killed_process_nobody_reaped_counts_as_dead() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    time.sleep(0.3)  # killed, not yet waited for: a zombie, which os.kill(pid, 0) still finds
    run = SimpleNamespace(infrastructure_pid=str(child.pid), state=SimpleNamespace(timestamp=datetime.now(UTC)),
                          id="r", state_type=None)
    try:
        assert is_dead(client=None, run=run, now=datetime.now(UTC), stale_after=600, local=True)
    finally:
        child.wait()

"""The pieces of the production checks that need no Prefect server: what a dead run leaves for the
reconciler, how a dead run is recognised, and the history audit the fault check relies on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest

from engine.run.runtime import Engine
from flows.audit import history_problems
from flows.reconcile import LOCAL_SETTLE, flow_run_processes, is_dead, outstanding_work, reconcile
from flows.runtime import DEFER_ALL, FlowEngine, segment
from flows.settings import FlowSettings
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


def _run(age: float, kind: str = "RUNNING", **extra: Any) -> SimpleNamespace:
    """A flow run as Prefect's client returns it: in state `kind` for `age` seconds."""
    from prefect.client.schemas.objects import StateType

    fields: dict[str, Any] = {
        "id": uuid4(), "name": f"run-{kind.lower()}", "tags": [], "deployment_id": uuid4(), "parameters": {},
        "run_count": 1, "parent_task_run_id": None, "infrastructure_pid": str(2 ** 22 + 12345),
        "state_type": StateType(kind),
        "state": SimpleNamespace(timestamp=datetime.now(UTC) - timedelta(seconds=age))}
    fields.update(extra)
    return SimpleNamespace(**fields)


def test_a_run_with_no_process_here_is_dead_once_its_state_has_settled() -> None:
    run = _run(LOCAL_SETTLE + 5)
    assert is_dead(client=None, run=run, now=datetime.now(UTC), stale_after=600, processes={})


def test_a_pending_run_showing_its_previous_processs_pid_is_alive_until_the_worker_had_time_to_start_it() -> None:
    run = _run(2, "PENDING")  # resumed: Pending, still naming the process that ran its last segment
    assert not is_dead(client=None, run=run, now=datetime.now(UTC), stale_after=600, processes={})


def test_a_run_whose_process_lives_here_is_alive_however_old_its_state() -> None:
    run = _run(3600)
    assert not is_dead(client=None, run=run, now=datetime.now(UTC), stale_after=600,
                       processes={str(run.id): [4242]})


def test_a_run_that_changed_state_recently_is_alive_without_asking_for_heartbeats() -> None:
    assert not is_dead(client=None, run=_run(0), now=datetime.now(UTC), stale_after=600)


def test_a_silent_run_without_heartbeats_is_dead_after_the_stale_time() -> None:
    no_events = SimpleNamespace(request=lambda *a, **k: SimpleNamespace(json=lambda: {"events": []}))
    assert is_dead(client=no_events, run=_run(3600), now=datetime.now(UTC), stale_after=600)


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


def test_the_processes_carrying_a_flow_run_id_are_found_and_a_killed_unreaped_one_is_not() -> None:
    run_id = str(uuid4())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={**os.environ, "PREFECT__FLOW_RUN_ID": run_id})
    try:
        assert flow_run_processes().get(run_id) == [child.pid]
        child.kill()
        time.sleep(0.3)  # killed, not yet waited for: a zombie, which os.kill(pid, 0) still finds
        assert run_id not in flow_run_processes()
    finally:
        child.kill()
        child.wait()


class FakePrefect:
    """The part of Prefect's sync client the reconciler uses, over a list of runs: reads filter by
    state type, state changes are applied, every run of the case flow."""

    def __init__(self, runs: list[SimpleNamespace]) -> None:
        self.runs = runs

    def __enter__(self) -> FakePrefect:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read_flow_runs(self, *, flow_filter: Any, flow_run_filter: Any, limit: int, offset: int) -> list[Any]:
        wanted = set(flow_run_filter.state.type.any_)
        return [r for r in self.runs if r.state_type in wanted][offset:offset + limit]

    def set_flow_run_state(self, run_id: UUID, *, state: Any, force: bool) -> Any:
        from prefect.client.schemas.responses import SetStateStatus

        run = next(r for r in self.runs if r.id == run_id)
        run.state_type, run.state = state.type, SimpleNamespace(timestamp=datetime.now(UTC))
        return SimpleNamespace(status=SetStateStatus.ACCEPT)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(json=lambda: {"events": []})  # no heartbeats


@pytest.fixture
def case_needing_a_run(engine: FlowEngine, clock: Any) -> str:
    """A complaint whose registration was stored and whose next automatic step no run has taken,
    quiet for an hour."""
    case_id = engine.start("complaint_handling", REGISTER, actor="desk")
    register = engine.store.load_case(case_id)[0].open_tasks()[0]
    with segment(DEFER_ALL):
        engine.complete(register.id, actor="wang", role=register.role, data=REGISTER)
    clock.advance(timedelta(hours=1))
    return case_id


def _reconciler(monkeypatch: pytest.MonkeyPatch, runs: list[SimpleNamespace]) -> list[str]:
    """Point the reconciler at fake runs; returns the list of cases it triggers a new run for (each
    trigger adds a Scheduled run of the case, as run_deployment would). No process of any run lives."""
    import prefect.client.orchestration

    from flows import reconcile as module

    fake = FakePrefect(runs)
    triggered: list[str] = []

    def trigger(case_id: str, settings: Any, state: Any) -> Any:
        triggered.append(case_id)
        runs.append(_run(0, "SCHEDULED", tags=[f"case:{case_id}"]))
        return runs[-1]

    monkeypatch.setattr(prefect.client.orchestration, "get_client", lambda **kw: fake)
    monkeypatch.setattr(module, "trigger_deployment_run", trigger)
    monkeypatch.setattr(module, "resume_runs_for_case", lambda case_id: 0)
    monkeypatch.setattr(module, "flow_run_processes", lambda: {})
    return triggered


@pytest.mark.parametrize("kind", ["SCHEDULED", "PENDING", "RUNNING"])
def test_a_case_with_a_young_run_that_is_not_yet_on_a_process_gets_no_second_run(
        engine: FlowEngine, case_needing_a_run: str, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    runs = [_run(5, kind, tags=[f"case:{case_needing_a_run}"])]
    triggered = _reconciler(monkeypatch, runs)
    result = reconcile(engine, local=True, grace=10, stale_after=120, settings=FlowSettings())
    assert (triggered, result.rescheduled, result.crashed) == ([], [], [])
    assert [r.state_type.value for r in runs] == [kind]


def test_a_case_whose_runs_all_ended_is_given_exactly_one_new_run(
        engine: FlowEngine, case_needing_a_run: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tags = [f"case:{case_needing_a_run}"]
    triggered = _reconciler(monkeypatch, [_run(600, "COMPLETED", tags=tags), _run(300, "CRASHED", tags=tags)])
    for _ in range(3):
        reconcile(engine, local=True, grace=10, stale_after=120, settings=FlowSettings())
    assert triggered == [case_needing_a_run]


def test_a_dead_run_is_run_again_as_the_cases_only_run(
        engine: FlowEngine, case_needing_a_run: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [_run(LOCAL_SETTLE + 5, "RUNNING", tags=[f"case:{case_needing_a_run}"])]
    triggered = _reconciler(monkeypatch, runs)
    first = reconcile(engine, local=True, grace=10, stale_after=120, settings=FlowSettings())
    second = reconcile(engine, local=True, grace=10, stale_after=120, settings=FlowSettings())
    assert (first.rescheduled, second.rescheduled, triggered) == ([runs[0].name], [], [])
    assert [r.state_type.value for r in runs] == ["SCHEDULED"]


def test_of_two_paused_runs_of_a_case_the_older_is_cancelled(
        engine: FlowEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    case_id = engine.start("complaint_handling", REGISTER, actor="desk")
    older, newer = (_run(age, "PAUSED", tags=[f"case:{case_id}"], name=f"paused-{age}") for age in (60, 5))
    _reconciler(monkeypatch, [older, newer])
    result = reconcile(engine, local=True, grace=10, stale_after=120, settings=FlowSettings())
    assert result.cancelled == [older.name]
    assert (older.state_type.value, newer.state_type.value) == ("CANCELLED", "PAUSED")

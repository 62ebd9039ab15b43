"""The production recipe, run for real: scripts/prefect_stack.sh starts a Prefect server on PostgreSQL,
the store on PostgreSQL, a process work pool with the case-flow and sweep deployments and two
workers; cases of several processes run end to end through it, staff completing their human
steps through the engine; then a worker dies mid-run and the reconciler brings the case back.
Every case's history is checked: no step lost, none done twice, no run left Running/Pending/Late.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from flows.audit import all_problems
from svcflow.stack import Stack, drive, family, sample_data, start_cases

pytestmark = [pytest.mark.postgres, pytest.mark.prefect]

STUCK = ("RUNNING", "PENDING", "SCHEDULED", "CANCELLING")


@pytest.fixture(scope="module")
def stack(postgres_url: str) -> Iterator[Stack]:
    running = Stack(settings={"WORKER_POLL_SECONDS": "1", "SWEEP_INTERVAL": "3600", "POOL_LIMIT": "6",
                              "SVCFLOW_ARTIFACT_FLOWCHART": "false"})
    try:
        running.start()
        yield running
    finally:
        running.stop(drop=True)


def case_runs(case_ids: list[str]) -> dict[str, list[Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    runs: dict[str, list[Any]] = {}
    with get_client(sync_client=True) as client:
        for case_id in case_ids:
            runs[case_id] = list(client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"case:{case_id}"]))))
    return runs


@pytest.mark.timeout(900)
def test_cases_of_several_processes_run_end_to_end_on_the_work_pool(stack: Stack) -> None:
    """Cases of two processes (a retention case, a credit-rating change with its four-eyes approval)
    end: every automatic step ran once on a worker, every human step was completed once by staff
    through the engine, and no flow run is left anything but Completed. (The complaint process, with
    its sub-case and a day's wait, runs through the same path in scripts/fault_check.py and the
    throughput benchmark: each human step is one flow-run process, too slow for CI.)"""
    with stack.client_context() as engine:
        cases = [("E2E-CR", "customer_retention", sample_data(engine, "customer_retention")),
                 ("E2E-CRC", "credit_rating_change", sample_data(engine, "credit_rating_change"))]
        roots = start_cases(cases)
        statuses = drive(engine, roots, deadline=time.monotonic() + 600)
        everyone = family(engine, roots)
        assert {c: s for c, s in statuses.items() if s != "completed"} == {}, stack.log("worker-1")[-3000:]
        assert all_problems(engine, everyone) == []
        for case_id in everyone:
            events = engine.store.events(case_id)
            assert all("." in e.data["actor"] for e in events if e.type == "task_completed")  # our staff, not a run
        runs = case_runs(everyone)
        assert all(runs[c] for c in everyone), "every case ran on the pool"
        left = [(r.name, r.state.name) for rs in runs.values() for r in rs if r.state.type.value in STUCK]
        assert left == []
        assert {str(r.work_pool_name) for rs in runs.values() for r in rs} == {"svcflow"}


@pytest.mark.timeout(600)
def test_a_worker_killed_mid_run_loses_nothing_and_the_reconciler_runs_the_case_again(stack: Stack) -> None:
    """SIGKILL the worker (and its flow-run process) while a case's run is Running: the run would stay
    Running for ever; `reconcile(local=True)` sees no process carries it and schedules the same run
    again, the restarted worker runs it, the case comes back to its next human step with one paused run,
    and its history is whole. (That a case then runs to its end is the test above.)"""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    from flows.reconcile import flow_run_processes, outstanding_work, reconcile

    with stack.client_context() as engine:
        [case_id] = start_cases([("KILL-CR", "customer_retention", sample_data(engine, "customer_retention", 3))])

        def running_run() -> Any:
            runs = case_runs([case_id])[case_id]
            return next((r for r in runs if r.state.type.value == "RUNNING"), None)

        deadline = time.monotonic() + 180
        victim, processes = None, {}
        while (victim is None or str(victim.id) not in processes) and time.monotonic() < deadline:
            processes = flow_run_processes()
            victim = running_run()
            time.sleep(0.2)
        assert victim is not None and str(victim.id) in processes, "the case's run started on a worker"
        worker = stack.worker_of(processes[str(victim.id)])
        assert worker is not None
        stack.kill_worker(worker)
        with get_client(sync_client=True) as client:
            assert client.read_flow_run(victim.id).state_type == StateType.RUNNING  # nobody left to say otherwise
        stack.start_worker(worker)
        repaired = reconcile(engine, local=True, grace=0, settle=0)  # its process is gone this very moment
        assert victim.name in repaired.rescheduled

        def settled() -> bool:  # the same run ran again and stopped at the next human step (or the end)
            reconcile(engine, local=True, grace=5)
            with get_client(sync_client=True) as client:
                kind = str(client.read_flow_run(victim.id).state_type.value)  # type: ignore[union-attr]
            state = engine.store.load_case(case_id)[0] if engine.store.case_exists(case_id) else None
            return kind not in STUCK and state is not None and not outstanding_work(engine, state)

        deadline = time.monotonic() + 300
        while not settled() and time.monotonic() < deadline:
            time.sleep(1)
        assert settled()
        assert all_problems(engine, family(engine, [case_id])) == []
        live = [r.state.type.value for r in case_runs([case_id])[case_id] if r.state.type.value not in
                ("COMPLETED", "CRASHED", "CANCELLED", "FAILED")]
        state = engine.store.load_case(case_id)[0]
        assert live == ([] if state.status == "completed" else ["PAUSED"]), "one run waits with the case's form"


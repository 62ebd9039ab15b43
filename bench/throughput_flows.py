"""Flow entrypoints of the throughput benchmark, loaded by the workers' flow-run processes.

`run_case` and `escalation_sweep` are svcflow's flows with one extra handler registered, `bench.noop` (the steps of
the all-automatic chain process); `bare_chain` is a bare Prefect flow with the same number of
no-op tasks, the peer the benchmark compares against.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from engine.run.handlers import default_registry
from flows.case_flow import run_case
from flows.sweep import escalation_sweep

if "bench.noop" not in default_registry().names():
    default_registry().add("bench.noop", lambda ctx: {})


@task(persist_result=False, cache_policy=NO_CACHE)
def noop_task() -> dict[str, Any]:
    return {}


@flow(name="bare-chain", persist_result=False, log_prints=False)
def bare_chain(steps: int = 10) -> int:
    """`steps` no-op tasks one after the other, named s01, s02 … like the chain's steps."""
    for i in range(1, steps + 1):
        noop_task.with_options(name=f"s{i:02d}", task_run_name=f"s{i:02d}")()
    return steps


__all__ = ["bare_chain", "escalation_sweep", "run_case"]

"""Deploy svcflow to a Prefect **process work pool**: the production path, beside `svcflow serve`.

`serve` keeps the deployments inside one long-lived process; a work pool lets any number of
workers on any machine run them (`prefect worker start --pool svcflow`), each flow run in its own
process. What this module creates, idempotently (run it again after an upgrade):

- the work pool (type `process`) if it does not exist;
- `svcflow-case/run-case`: continues one case (`case_id`), the deployment every trigger and
  resume goes to (the name `FlowSettings.case_deployment` expects);
- `escalation-sweep/sweep`: the sweep on an interval schedule.

The code is not copied anywhere: both deployments carry a pull step that sets the working
directory to `code_dir` (the checkout the workers see; on several machines, the same path on
each, or a shared volume), and the flow-run processes find the packages there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

DEFAULT_POOL = "svcflow"
CASE_DEPLOYMENT_NAME = "run-case"
SWEEP_DEPLOYMENT_NAME = "sweep"
CODE_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Deployed:
    """What `deploy_to_pool` created or updated: names as `run_deployment` takes them, and ids."""

    pool: str
    case_deployment: str
    sweep_deployment: str | None
    ids: tuple[str, ...]


def ensure_process_pool(name: str = DEFAULT_POOL, *, concurrency_limit: int | None = None) -> bool:
    """Create the process work pool unless it exists (then set its concurrency limit, if given);
    True when it was created now. The limit belongs on the pool: Prefect 3.8 workers started with
    `--limit` crash ("borrower is already holding one of this CapacityLimiter's tokens") when a
    suspended run they ran comes back to them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            if concurrency_limit is not None:
                client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency_limit))
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(WorkPoolCreate(
                name=name, type="process", concurrency_limit=concurrency_limit,
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="svcflow case flows and the escalation sweep"))
        except ObjectAlreadyExists:  # created a moment ago by another deploy
            return False
        return True


def _pool_deployment(flow: Any, name: str, entrypoint: str, pool: str, code_dir: Path,
                     env: dict[str, str], **options: Any) -> Any:
    """A RunnerDeployment for the pool whose runs start in `code_dir` (a pull step, nothing copied)."""
    from prefect.runner.storage import LocalStorage

    deployment = flow.to_deployment(name=name, work_pool_name=pool, job_variables={"env": env}, **options)
    deployment.storage = LocalStorage(str(code_dir))
    deployment.entrypoint = entrypoint
    return deployment


def deploy_to_pool(pool: str = DEFAULT_POOL, *, pool_limit: int | None = None, code_dir: Path | None = None, sweep: bool = True,
                   sweep_interval: int | None = None, env: dict[str, str] | None = None) -> Deployed:
    """Create the pool if needed and deploy the case flow and the sweep to it (PREFECT_API_URL).

    `env` becomes the flow-run processes' environment on top of the worker's own (the store URL,
    the clock); PYTHONPATH always points at `code_dir` so `engine`/`flows` import from there.
    """
    from flows.case_flow import run_case
    from flows.settings import get_flow_settings
    from flows.sweep import escalation_sweep

    code = (code_dir or CODE_DIR).resolve()
    variables = {"PYTHONPATH": str(code), **(env or {})}
    ensure_process_pool(pool, concurrency_limit=pool_limit)
    ids: list[str] = []
    case = _pool_deployment(run_case, CASE_DEPLOYMENT_NAME, "flows/case_flow.py:run_case", pool, code, variables,
                            description="Run or continue one case: `run_case(case_id)`.")
    ids.append(str(case.apply()))
    sweep_name: str | None = None
    if sweep:
        interval = sweep_interval or get_flow_settings().sweep_interval_seconds
        swept = _pool_deployment(escalation_sweep, SWEEP_DEPLOYMENT_NAME, "flows/sweep.py:escalation_sweep", pool,
                                 code, variables, interval=timedelta(seconds=interval),
                                 description="Apply due SLA warnings, breaches and escalations once.")
        ids.append(str(swept.apply()))
        sweep_name = f"{escalation_sweep.name}/{SWEEP_DEPLOYMENT_NAME}"
    return Deployed(pool, f"{run_case.name}/{CASE_DEPLOYMENT_NAME}", sweep_name, tuple(ids))


__all__ = ["CASE_DEPLOYMENT_NAME", "DEFAULT_POOL", "Deployed", "SWEEP_DEPLOYMENT_NAME", "deploy_to_pool",
           "ensure_process_pool"]

"""Repeatable fault check of the production stack: N random faults, then every case must end whole.

    PYTHONPATH=. .venv/bin/python scripts/fault_check.py --kills 100 [--cases 6] [--seed 1]

Starts scripts/prefect_stack.sh (Prefect server and store on PostgreSQL, process work pool, two
workers), keeps `--cases` cases live (complaints with their return-visit wait, retention cases,
credit-rating changes), staff completing their human steps through the engine, and injects
faults one after another, in rotation from a seeded shuffle:

- `worker-step`: SIGKILL the worker running a case's flow run (and the run's process) while it
  runs automatic steps;
- `worker-resume`: the same, for a run that was just resumed after a human step;
- `server`: restart the Prefect server while runs are active;
- `sweep`: SIGKILL a sweep run's process mid-pass.

Killed workers are started again at once; `svcflow reconcile` (flows.reconcile, `local=True`)
runs every round. After the last fault every case is driven to its end; the check passes when
every case completed, no history shows a step lost or done twice (flows.audit), and no flow run
is left Running, Pending or Scheduled. Counts go to stdout and `--output` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAULTS = ("worker-step", "worker-resume", "server", "sweep")
PROCESSES = ("complaint_handling", "customer_retention", "credit_rating_change")
LIVE = ("SCHEDULED", "PENDING", "RUNNING", "CANCELLING")


def ancestors(pid: int) -> list[int]:
    """pid and its parents, from /proc (which worker started this flow-run process)."""
    chain = []
    while pid > 1:
        chain.append(pid)
        try:
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


def worker_of(stack: Any, run: Any) -> int | None:
    """The number of the stack's worker whose process tree holds the run's process."""
    if not run.infrastructure_pid or not str(run.infrastructure_pid).isdigit():
        return None
    chain = ancestors(int(run.infrastructure_pid))
    for pidfile in sorted(stack.stack_dir.glob("worker-*.pid")):
        try:
            if int(pidfile.read_text()) in chain:
                return int(pidfile.stem.split("-")[1])
        except ValueError:
            continue
    return None


def live_runs(flow_name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return list(client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType(t) for t in LIVE]))), limit=200))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="faults to inject")
    parser.add_argument("--cases", type=int, default=6, help="cases kept live while faults happen")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {FAULTS}")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a moment to inject a fault")
    parser.add_argument("--finish", type=float, default=900.0, help="seconds to drive every case to its end")
    parser.add_argument("--processes", default=",".join(PROCESSES), help="processes of the cases kept live")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "faults.json"))
    parser.add_argument("--keep", action="store_true", help="leave the stack (and its databases) up")
    args = parser.parse_args()

    from flows.audit import all_problems
    from flows.reconcile import Reconciled, reconcile
    from flows.staff import Staff
    from svcflow.stack import Stack, drive, family, sample_data, start_cases

    rng = random.Random(args.seed)
    kinds = [k for k in args.faults.split(",") if k in FAULTS]
    stack = Stack(settings={"WORKER_POLL_SECONDS": "1", "SWEEP_INTERVAL": "3600", "POOL_LIMIT": "8",
                            "SVCFLOW_ARTIFACT_FLOWCHART": "false"})
    started = time.monotonic()
    injected: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    repairs = Reconciled()
    roots: list[str] = []
    try:
        stack.start()
        print(f"stack {stack.name} up in {time.monotonic() - started:.0f} s", flush=True)
        with stack.client_context() as engine:
            staff = Staff(engine, seed=args.seed)

            def tend() -> None:
                """Staff act, the reconciler runs, the pool of live cases is topped up."""
                running = [c for c in family(engine, roots)
                           if engine.store.case_exists(c) and engine.store.load_case(c)[0].status == "running"]
                while len([c for c in running if c in roots]) < args.cases:
                    process = rng.choice(args.processes.split(","))
                    case_id = f"F{len(roots) + 1:04d}"
                    start_cases([(case_id, process, sample_data(engine, process, len(roots)))])
                    roots.append(case_id)
                    running.append(case_id)
                staff.act(running)
                result = reconcile(engine, local=True, grace=10, stale_after=120)
                for name in ("rescheduled", "crashed", "woken", "triggered"):
                    getattr(repairs, name).extend(getattr(result, name))

            order: list[str] = []
            while sum(injected.values()) < args.kills:
                if not order:
                    order = kinds[:]
                    rng.shuffle(order)
                kind = order.pop()
                deadline = time.monotonic() + args.wait
                done = False
                while not done and time.monotonic() < deadline:
                    tend()
                    done = inject(kind, stack, rng)
                    if not done:
                        time.sleep(0.3)
                if done:
                    injected[kind] += 1
                    print(f"[{time.monotonic() - started:6.0f} s] fault {sum(injected.values())}/{args.kills}: "
                          f"{kind}", flush=True)
                else:
                    skipped[kind] += 1
                    print(f"no moment for {kind} within {args.wait:.0f} s; next fault", flush=True)
            # no more faults: every case must now end, with the reconciler on duty
            statuses = drive(engine, roots, deadline=time.monotonic() + args.finish, staff=staff,
                             between=lambda: _reconcile_into(engine, repairs))
            everyone = [c for c in family(engine, roots) if engine.store.case_exists(c)]
            never_started = [c for c in roots if not engine.store.case_exists(c)]
            problems = all_problems(engine, everyone)
            settle = time.monotonic() + 60
            stuck = live_runs("svcflow-case")
            while stuck and time.monotonic() < settle:
                time.sleep(2)
                stuck = live_runs("svcflow-case")
            report = {
                "faults_injected": dict(injected), "faults_skipped_no_moment": dict(skipped),
                "cases": len(everyone), "root_cases": len(roots), "never_started": never_started,
                "completed": sum(1 for s in statuses.values() if s == "completed"),
                "not_completed": {c: s for c, s in statuses.items() if s != "completed"},
                "history_problems": problems,
                "runs_left_live": [(r.name, r.state.name) for r in stuck],
                "reconciler": {"rescheduled": len(repairs.rescheduled), "crashed": len(repairs.crashed),
                               "woken": len(repairs.woken), "triggered": len(repairs.triggered)},
                "staff": {"tasks_completed": staff.completed, "messages_answered": staff.answered,
                          "refused": staff.refused},
                "seconds": round(time.monotonic() - started, 1), "seed": args.seed,
            }
    finally:
        if not args.keep:
            stack.stop(drop=True)
    ok = not report["not_completed"] and not problems and not report["runs_left_live"] and not never_started
    report["passed"] = ok
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.output != "-":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0 if ok else 1


def _reconcile_into(engine: Any, repairs: Any) -> None:
    from flows.reconcile import reconcile

    result = reconcile(engine, local=True, grace=10, stale_after=120)
    for name in ("rescheduled", "crashed", "woken", "triggered"):
        getattr(repairs, name).extend(getattr(result, name))


_TRIGGERED: dict[str, float] = {}


def inject(kind: str, stack: Any, rng: random.Random) -> bool:
    """Inject one fault if the moment for it has come; False to try again a moment later."""
    if kind == "server":
        if not any(r.state.type.value == "RUNNING" for r in live_runs("svcflow-case")):
            return False
        stack.restart_server()
        return True
    if kind == "sweep":
        from prefect.deployments import run_deployment

        live = [r for r in live_runs("escalation-sweep") if r.state.type.value in ("PENDING", "RUNNING")]
        sweeps = [r for r in live if r.state.type.value == "RUNNING"]
        if not sweeps:
            if not live and time.monotonic() - _TRIGGERED.get("sweep", -1e9) > 60:
                run_deployment("escalation-sweep/sweep", timeout=0)  # the scheduled ones are an hour apart
                _TRIGGERED["sweep"] = time.monotonic()
            return False
        pid = sweeps[0].infrastructure_pid
        if not pid or not str(pid).isdigit():
            return False
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere in the pass
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True
    # a run with a process: starting it (Pending) or running its steps; "resume" = a run that ran before
    # (it was suspended at a human step and came back), "step" = a run's first segment
    resumed = kind == "worker-resume"
    candidates = [r for r in live_runs("svcflow-case") if r.state.type.value in ("PENDING", "RUNNING")
                  and r.infrastructure_pid and (r.run_count >= 1 if resumed else r.state.type.value == "RUNNING")]
    rng.shuffle(candidates)
    for run in candidates:
        worker = worker_of(stack, run)
        if worker is None:
            continue
        time.sleep(rng.uniform(0.0, 1.5))  # somewhere among its steps
        stack.kill_worker(worker)
        stack.start_worker(worker)
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())

"""Repeatable fault check of the production stack: N seeded random faults, then every case must be whole.

    PYTHONPATH=. .venv/bin/python scripts/fault_check.py --kills 100 [--cases 24] [--seed 1]

Starts scripts/prefect_stack.sh (Prefect server and store on PostgreSQL, process work pool, two
workers) and a fixed number of cases (`--cases`: complaints with their sub-case and return-visit
wait, retention cases, credit-rating changes), at most `--concurrent` of them live at a time (a
case counts as live from the moment its run is requested until it ends, so none is started
twice over). Staff complete human steps through the engine. Faults are drawn from a seeded
random generator, one after another, across the kinds:

- `worker-step`: SIGKILL the worker (with its flow-run processes) running a case's flow run
  while it runs (starting the case, applying a step, running automatic steps);
- `worker-resume`: the same, for a run that came back after a human step (Pending or Running
  again);
- `server`: restart the Prefect server while a case's run is active;
- `sweep`: SIGKILL a sweep run's process mid-pass.

Killed workers are started again at once; `flows.reconcile.reconcile(local=True)` runs every
round. After the last fault (or when `--budget` seconds of faults have passed) staff stop and
the wind-down waits, with the reconciler on duty, until every case has ended or waits — for a
person with exactly one live (paused) run, or for no person (a timer, a sub-case, a customer's
message) with none — and no run is Scheduled, Pending or Running. The histories are then audited (flows.audit): no step lost, none done twice.
With `--complete S`, staff then drive every case to its end for at most S seconds.
Counts go to stdout and `--output` (JSON); the exit status says whether the check passed.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAULTS = ("worker-step", "worker-resume", "server", "sweep")
PROCESSES = ("complaint_handling", "customer_retention", "credit_rating_change")
ACTIVE = ("SCHEDULED", "PENDING", "RUNNING", "CANCELLING")  # a run in these at the end is stuck


def flow_runs(flow_name: str, types: tuple[str, ...]) -> list[Any]:
    """Runs of a flow in these state types (an empty list while the server is away)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True) as client:
            return list(client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                    any_=[StateType(t) for t in types]))), limit=200))
    except Exception as exc:
        print(f"  (could not read runs of {flow_name}: {exc})", flush=True)
        return []


class Check:
    """The cases, the staff, the reconciler and the faults of one check."""

    def __init__(self, stack: Any, engine: Any, args: argparse.Namespace) -> None:
        from flows.reconcile import Reconciled
        from flows.staff import Staff

        self.stack, self.engine, self.args = stack, engine, args
        self.rng = random.Random(args.seed)
        self.staff = Staff(engine, seed=args.seed)
        self.repairs = Reconciled()
        self.roots: list[str] = []
        self.ended: set[str] = set()
        self.sweep_requested = -1e9
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.0f} s] {text}", flush=True)

    # -- cases ---------------------------------------------------------------------------------
    def running_cases(self) -> list[str]:
        from svcflow.stack import ENDED, family

        found = []
        for case_id in family(self.engine, self.roots):
            if case_id in self.ended or not self.engine.store.case_exists(case_id):
                continue
            if self.engine.store.load_case(case_id)[0].status in ENDED:
                self.ended.add(case_id)
            else:
                found.append(case_id)
        return found

    def top_up(self) -> None:
        """Start the next cases while fewer than `--concurrent` roots are live: requested, not ended, and
        not waiting only for a timer (a complaint's return visit is a day away: nothing moves it now)."""
        from flows.staff import timer_only
        from svcflow.stack import sample_data, start_cases

        self.running_cases()  # notes the ended ones
        live = [c for c in self.roots if c not in self.ended
                and not (self.engine.store.case_exists(c) and timer_only(self.engine, c) is not None)]
        while len(live) < self.args.concurrent and len(self.roots) < self.args.cases:
            process = self.rng.choice(self.args.processes.split(","))
            case_id = f"F{len(self.roots) + 1:04d}"
            try:
                start_cases([(case_id, process, sample_data(self.engine, process, len(self.roots)))])
            except Exception as exc:  # the server restarting: next round
                self.say(f"could not start {case_id}: {exc}")
                return
            self.roots.append(case_id)
            live.append(case_id)

    def reconcile(self) -> None:
        from flows.reconcile import reconcile

        try:
            self.repairs.merge(reconcile(self.engine, local=True, grace=10, stale_after=120))
        except Exception as exc:  # the server restarting: the next pass repairs
            self.say(f"reconcile pass failed: {exc}")

    def tend(self, staff: bool = True) -> None:
        """One round: cases topped up, staff act, the reconciler runs."""
        self.top_up()
        if staff:
            try:
                self.staff.act(self.running_cases())
            except Exception as exc:
                self.say(f"staff round failed: {exc}")
        self.reconcile()

    # -- faults --------------------------------------------------------------------------------
    def kill_worker_of(self, run: Any, processes: dict[str, list[int]]) -> bool:
        worker = self.stack.worker_of(processes.get(str(run.id), []))
        if worker is None:
            return False
        time.sleep(self.rng.uniform(0.0, 1.0))  # somewhere among its steps
        self.stack.kill_worker(worker)
        self.stack.start_worker(worker)
        return True

    def inject(self, kind: str) -> bool:
        """Inject one fault of this kind if its moment has come; False to try again a moment later."""
        from flows.reconcile import flow_run_processes

        if kind == "server":
            if not flow_runs("svcflow-case", ("PENDING", "RUNNING")):
                return False
            self.stack.restart_server()
            return True
        processes = flow_run_processes()
        if kind == "sweep":
            from prefect.deployments import run_deployment

            live = flow_runs("escalation-sweep", ("SCHEDULED", "PENDING", "RUNNING"))
            sweeps = [r for r in live if r.state_type.value == "RUNNING" and str(r.id) in processes]
            if not sweeps:
                soon = datetime.now(UTC) + timedelta(seconds=10)  # not the hourly ones of the schedule
                due = [r for r in live if r.state_type.value != "SCHEDULED"
                       or (r.expected_start_time is not None and r.expected_start_time <= soon)]
                if not due and time.monotonic() - self.sweep_requested > 60:
                    try:  # the scheduled ones are an hour apart: ask for one now
                        run_deployment("escalation-sweep/sweep", timeout=0)
                        self.sweep_requested = time.monotonic()
                    except Exception as exc:
                        self.say(f"could not request a sweep: {exc}")
                return False
            time.sleep(self.rng.uniform(0.0, 0.5))  # somewhere in the pass
            try:
                for pid in processes[str(sweeps[0].id)]:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return False
            return True
        runs = [r for r in flow_runs("svcflow-case", ("PENDING", "RUNNING")) if str(r.id) in processes]
        if kind == "worker-resume":
            candidates = [r for r in runs if r.run_count >= (1 if r.state_type.value == "PENDING" else 2)]
        else:
            candidates = [r for r in runs if r.state_type.value == "RUNNING"]
        self.rng.shuffle(candidates)
        return any(self.kill_worker_of(run, processes) for run in candidates[:1])

    # -- the end -------------------------------------------------------------------------------
    def standing(self) -> dict[str, Any]:
        """Every case's standing now: ended, waiting (for a person: exactly one live run, paused; for
        no person — a timer, a sub-case, a message: none), or not settled (with why)."""
        from prefect.client.orchestration import get_client

        from flows.reconcile import outstanding_work
        from flows.waiting import live_runs_by_case
        from svcflow.stack import ENDED, family

        with get_client(sync_client=True) as client:
            by_case = live_runs_by_case(client)
        cases = [c for c in family(self.engine, self.roots) if self.engine.store.case_exists(c)]
        finished, waiting_person, waiting_other = [], [], []
        unsettled: dict[str, str] = {}
        for case_id in cases:
            state, _ = self.engine.store.load_case(case_id)
            runs = by_case.get(case_id, [])
            kinds = sorted(r.state for r in runs)
            if state.status in ENDED:
                (finished.append(case_id) if not runs else unsettled.__setitem__(case_id, f"ended, runs {kinds}"))
            elif outstanding_work(self.engine, state):
                unsettled[case_id] = f"work {outstanding_work(self.engine, state)}, runs {kinds}"
            elif state.open_tasks():
                if kinds == ["PAUSED"]:
                    waiting_person.append(case_id)
                else:
                    unsettled[case_id] = f"waiting for a person, runs {kinds}"
            elif not runs:  # a timer, a sub-case, a customer's message: the sweep or that event moves it
                waiting_other.append(case_id)
            else:
                unsettled[case_id] = f"waiting for no person, runs {kinds}"
        never_started = [c for c in self.roots if not self.engine.store.case_exists(c)]
        now_utc = datetime.now(UTC)  # the sweep's schedule keeps its next runs Scheduled: those are not stuck
        stuck = [(r.name, r.state.name) for name in ("svcflow-case", "escalation-sweep")
                 for r in flow_runs(name, ACTIVE) if not (r.state_type.value == "SCHEDULED" and r.expected_start_time
                                                          and r.expected_start_time > now_utc)]
        return {"cases": len(cases), "finished": finished, "waiting_for_a_person_one_live_run": waiting_person,
                "waiting_for_no_person_no_run": waiting_other, "unsettled": unsettled,
                "never_started": never_started, "runs_stuck": stuck}

    def wind_down(self, seconds: float) -> dict[str, Any]:
        """Reconcile (no staff, no faults) until every case has settled twice in a row, or time is up."""
        deadline = time.monotonic() + seconds
        settled_before = False
        while True:
            self.tend(staff=False)
            try:
                now = self.standing()
            except Exception as exc:
                self.say(f"could not read the standing: {exc}")
                time.sleep(2)
                continue
            settled = (not now["unsettled"] and not now["never_started"] and not now["runs_stuck"]
                       and len(self.roots) >= self.args.cases)
            if (settled and settled_before) or time.monotonic() > deadline:
                return now
            settled_before = settled
            time.sleep(3)


def run_check(args: argparse.Namespace, stack: Any, engine: Any) -> dict[str, Any]:
    from flows.audit import audit_case
    from svcflow.stack import drive, family

    check = Check(stack, engine, args)
    kinds = [k for k in args.faults.split(",") if k in FAULTS]
    injected: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    budget_end = check.started + args.budget if args.budget else float("inf")
    while sum(injected.values()) < args.kills and time.monotonic() < budget_end:
        kind = check.rng.choice(kinds)
        deadline = time.monotonic() + args.wait
        done = False
        while not done and time.monotonic() < min(deadline, budget_end):
            check.tend()
            try:
                done = check.inject(kind)
            except Exception as exc:  # a fault that could not be injected is not one
                check.say(f"{kind} not injected: {exc}")
            if not done:
                time.sleep(0.5)
        if done:
            injected[kind] += 1
            check.say(f"fault {sum(injected.values())}/{args.kills}: {kind}")
            if sum(injected.values()) % 10 == 1:
                try:
                    now = check.standing()
                    check.say(f"standing: {now['cases']} cases, {len(now['finished'])} finished, "
                              f"{len(now['unsettled'])} moving, {len(now['never_started'])} not yet started; "
                              f"reconciler {({k: len(v) for k, v in check.repairs.as_dict().items() if isinstance(v, list)})}")
                except Exception as exc:
                    check.say(f"could not read the standing: {exc}")
        else:
            skipped[kind] += 1
            check.say(f"no moment for {kind} within {args.wait:.0f} s; next fault")
    fault_seconds = time.monotonic() - check.started
    check.say(f"faults done ({dict(injected)}); starting the remaining cases and winding down")
    while len(check.roots) < args.cases:  # a budget cut may leave cases unstarted: they must run too
        check.tend()
        time.sleep(1)
    standing = check.wind_down(args.settle)
    audits = {c: audit_case(engine, c) for c in family(engine, check.roots) if engine.store.case_exists(c)}
    report: dict[str, Any] = {
        "kills_requested": args.kills, "kills_injected": sum(injected.values()),
        "kills_by_kind": dict(injected), "no_moment_by_kind": dict(skipped),
        "cases": standing["cases"], "root_cases": len(check.roots),
        "finished": len(standing["finished"]),
        "waiting_for_a_person_one_live_run": len(standing["waiting_for_a_person_one_live_run"]),
        "waiting_for_no_person_no_run": len(standing["waiting_for_no_person_no_run"]),
        "unsettled": standing["unsettled"], "never_started": standing["never_started"],
        "steps_lost": sum(a.steps_lost for a in audits.values()),
        "steps_doubled": sum(a.steps_doubled for a in audits.values()),
        "history_problems": [p for a in audits.values() for p in a.problems],
        "runs_stuck": standing["runs_stuck"],
        "reconciler": {"rescheduled": len(check.repairs.rescheduled), "crashed": len(check.repairs.crashed),
                       "woken": len(check.repairs.woken), "triggered": len(check.repairs.triggered),
                       "cancelled_duplicates": len(check.repairs.cancelled)},
        "staff": {"tasks_completed": check.staff.completed, "messages_answered": check.staff.answered,
                  "refused": check.staff.refused},
        "fault_phase_seconds": round(fault_seconds, 1), "seed": args.seed,
        "settings": {"cases": args.cases, "concurrent": args.concurrent, "faults": kinds, "budget": args.budget},
    }
    report["passed"] = not (report["unsettled"] or report["never_started"] or report["history_problems"]
                            or report["runs_stuck"])
    if args.complete:
        statuses = drive(engine, check.roots, deadline=time.monotonic() + args.complete, staff=check.staff,
                         between=check.reconcile)
        report["completed_after_faults"] = sum(1 for s in statuses.values() if s == "completed")
        report["not_completed_after_faults"] = {c: s for c, s in statuses.items() if s != "completed"}
        report["history_problems"] = [p for c in statuses for p in audit_case(engine, c).problems]
        report["passed"] = report["passed"] and not report["not_completed_after_faults"] \
            and not report["history_problems"]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="faults to inject")
    parser.add_argument("--cases", type=int, default=40, help="cases started in all (a fixed number)")
    parser.add_argument("--concurrent", type=int, default=6, help="most root cases live at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {FAULTS}")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a moment to inject a fault")
    parser.add_argument("--budget", type=float, default=0.0,
                        help="stop injecting after this many seconds (0: only when --kills are done)")
    parser.add_argument("--settle", type=float, default=900.0, help="seconds the wind-down may take")
    parser.add_argument("--complete", type=float, default=0.0,
                        help="then drive every case to its end for at most this many seconds (0: don't)")
    parser.add_argument("--processes", default=",".join(PROCESSES), help="processes of the cases")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "faults.json"))
    parser.add_argument("--keep", action="store_true", help="leave the stack (and its databases) up")
    args = parser.parse_args()

    from svcflow.stack import Stack

    def stop(signum: int, _frame: Any) -> None:  # the stack and its databases go with the check
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # started in the background, a shell leaves SIGINT ignored
    stack = Stack(name=f"faults{os.getpid()}",
                  settings={"WORKER_POLL_SECONDS": "1", "SWEEP_INTERVAL": "3600", "POOL_LIMIT": "8",
                            "HEARTBEAT_SECONDS": "30", "SVCFLOW_ARTIFACT_FLOWCHART": "false"})
    began, cpu = time.monotonic(), _cpu()
    try:
        stack.start()
        print(f"stack {stack.name} up in {time.monotonic() - began:.0f} s", flush=True)
        with stack.client_context() as engine:
            report = run_check(args, stack, engine)
    finally:
        if not args.keep:
            stack.stop(drop=True)
    report["seconds"] = round(time.monotonic() - began, 1)
    report["cpu_seconds_this_process_and_children"] = round(_cpu() - cpu, 1)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.output != "-":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0 if report["passed"] else 1


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (the stack's processes are not
    waited for: they are started by the script in their own sessions)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The operator's check of the Prefect loop (issue 14): nothing waiting is lost, nothing accepted is lost.

Served mode (`svcflow serve` in its own process group), cases waiting at human steps as suspended
runs, pause timeouts of a few seconds (a fast clock for Prefect's timeouts), refused then valid
resumes, SIGKILL of a worker (a flow run's process) and of `svcflow serve` itself (all its
processes) while submissions are in flight, a restart — and the sweep's reconciliation in between.

It ends by checking, and printing, that every case waiting for a person has exactly one live
waiting run (Suspended, on the task that is open) and that every submission Prefect accepted was
applied exactly once (one completion of its task, by its actor). Exit status 0 when both hold.

    python scripts/operator_check.py                 # a local Prefect server on a free port
    python scripts/operator_check.py --api-url URL   # against a running Prefect server
    python scripts/operator_check.py --cases 4 --pause-seconds 12   # the reduced run of the CI test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # this process's sweeps: counts are printed at the end

PROCESS = """
id: opcheck
version: 1
name: {zh: 运维检查, en: Operator check}
lanes:
  - {id: agent, name: {zh: 坐席, en: Agent}}
nodes:
  - {id: start, kind: start}
  - id: first
    kind: human
    lane: agent
    form:
      - {id: answer, type: enum, label: {zh: 答复, en: Answer}, choices: ["yes", "no"], required: true}
      - {id: visit_on, type: date, label: {zh: 上门日期, en: Visit on}}
  - {id: detect, kind: auto, handler: complaints.detect_major}
  - id: second
    kind: human
    lane: agent
    form:
      - {id: remark, type: text, label: {zh: 说明, en: Remark}, required: true}
  - {id: end, kind: end, outcome: done}
edges:
  - {from: start, to: first}
  - {from: first, to: detect}
  - {from: detect, to: second}
  - {from: second, to: end}
"""

DEPLOYMENT = "svcflow-case/run-case"
LONG_PAUSE = 3600
# Every wait of the check is for a condition, never a fixed time; a deadline only ends a check that is
# stuck. On two cores shared with a test suite a served run (a new Python process importing Prefect)
# takes 10-30 s to start where it takes 3 s on an idle machine, so the deadlines are generous.
DEADLINE = 600


@dataclass
class Tally:
    """What the check did and saw; printed at the end."""

    accepted: list[tuple[str, str]] = field(default_factory=list)  # (task id, actor) Prefect accepted
    refused_sent: int = 0
    rejected_by_prefect: int = 0
    worker_kills: int = 0
    serve_kills: int = 0
    in_flight_at_kill: int = 0
    mended: dict[str, int] = field(default_factory=dict)

    def add(self, counts: dict[str, int]) -> None:
        for key, value in counts.items():
            if key != "healthy":
                self.mended[key] = self.mended.get(key, 0) + value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the serve process: SIGKILL when this check dies (a timed-out test), so no stray serve is left
    serving the deployment against a shared Prefect server (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Serve:
    """`svcflow serve` in its own process group; `kill()` is SIGKILL of everything it started."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.marker = uuid.uuid4().hex
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, pause_seconds: int) -> None:
        """Serve with every human wait timing out after `pause_seconds` (Prefect fails the run then)."""
        self.marker = uuid.uuid4().hex
        env = {**self.env, "SVCFLOW_OPCHECK_SERVE": self.marker, "SVCFLOW_PAUSE_MIN_SECONDS": str(pause_seconds),
               "SVCFLOW_PAUSE_MAX_SECONDS": str(pause_seconds)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "svcflow", "serve", "--no-sweep", "--limit", "4"],
                env=env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent)

    def processes(self) -> list[int]:
        """Every process this serve started, wherever its group: they carry the marker in their environment."""
        found = []
        needle = f"SVCFLOW_OPCHECK_SERVE={self.marker}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def kill(self) -> None:
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def worker_of(run_id: Any) -> int | None:
    """The process running a flow run (the runner gives it PREFECT__FLOW_RUN_ID)."""
    needle = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    return None


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5,
             between: Callable[[], Any] | None = None) -> Any:
    """Poll `predicate` until it is true, calling `between` (a sweep) in between.

    A failing call (an HTTP 503 or read timeout of a loaded Prefect server, a locked SQLite file)
    is a reason to try again, not to end the check: the last such error is named if time runs out."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}"
                               + (f" (last error: {last_error!r})" if last_error else "")) from last_error
        if between is not None:
            try:
                between()
            except Exception as exc:
                last_error = exc
        time.sleep(interval)


class Check:
    def __init__(self, work: Path, api_url: str, cases: int, log: Callable[[str], None]) -> None:
        from engine.definition.library import ProcessLibrary
        from engine.store.sql import Store
        from flows.runtime import FlowEngine, configure

        self.log = log
        self.cases = cases
        defs = work / "defs"
        defs.mkdir(parents=True, exist_ok=True)
        (defs / "opcheck.yaml").write_text(PROCESS, encoding="utf-8")
        url = f"sqlite:///{work / 'opcheck.db'}"
        self.env = {**os.environ, "PREFECT_API_URL": api_url, "SVCFLOW_DATABASE_URL": url,
                    "SVCFLOW_PROCESS_DIR": str(defs), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                    "SVCFLOW_ARTIFACT_FLOWCHART": "false", "PYTHONPATH": str(ROOT),
                    "PREFECT_LOGGING_LEVEL": "INFO"}
        os.environ.update({k: self.env[k] for k in ("SVCFLOW_DATABASE_URL", "SVCFLOW_PROCESS_DIR",
                                                     "SVCFLOW_ARTIFACT_FLOWCHART")})
        os.environ["PREFECT_API_URL"] = api_url
        self.engine = FlowEngine(Store(url), ProcessLibrary.from_dir(defs))
        configure(self.engine)
        self.serve = Serve(self.env, work / "serve.log")
        self.tally = Tally()
        self.rng = random.Random(14)
        # case ids of this run only: a Prefect server shared with other checks or tests holds other
        # stores' runs (other case ids, or OP-01 of an earlier run), which this check must not count
        self.prefix = f"OP{uuid.uuid4().hex[:4]}"
        self.case_ids: set[str] = set()

    # -- Prefect side -----------------------------------------------------------------------------
    def client(self) -> Any:
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)

    def live(self) -> dict[str, list[Any]]:
        """Live runs of this check's cases (others on the same server are another store's business)."""
        from flows.waiting import live_runs_by_case

        with self.client() as client:
            return {c: runs for c, runs in live_runs_by_case(client).items() if c in self.case_ids}

    def timed_out(self) -> set[str]:
        """Cases of this check with a run that failed because its pause timed out, whoever failed it:
        the sweep (it saw the timeout first) or Prefect's pause-expiration service."""
        from prefect.client.schemas.filters import (
            FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType

        found: set[str] = set()
        with self.client() as client:
            for case_id in self.case_ids:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[f"case:{case_id}"]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED]))), limit=20)
                if any("never resumed" in (r.state.message or "") for r in runs if r.state):
                    found.add(case_id)
        return found

    def replaced_after_timeout(self) -> bool:
        """Every case had a waiting run time out, and has a live run again."""
        live = self.live()
        return self.timed_out() == self.case_ids and all(live.get(c) for c in self.case_ids)

    def sweep(self) -> None:
        """What the served sweep does on each pass, here in this process: sweep, then mend runs."""
        from flows.sweep import escalation_sweep

        result = escalation_sweep(reconcile=True)
        self.tally.add(result.get("runs") or {})

    def waiting(self) -> dict[str, dict[str, Any]]:
        """case -> its open task (one at a time in this process)."""
        return {t["case_id"]: t for t in self.engine.store.tasks(status="open", limit=100_000)
                if t["case_id"] in self.case_ids}

    def suspended_on(self, task_id: str) -> Any:
        from prefect.client.schemas.filters import (
            FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType

        with self.client() as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"task:{task_id}"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
        return next((r for r in runs if r.state.name == "Suspended"), None)

    def settled(self) -> bool:
        """Every waiting case has exactly one live run, and it is suspended on the open task."""
        live = self.live()
        for case_id, task in self.waiting().items():
            runs = live.get(case_id, [])
            if len(runs) != 1 or runs[0].state_name != "Suspended":
                return False
            if self.suspended_on(task["id"]) is None:
                return False
        return all(case_id in self.waiting() for case_id in live)

    def settle(self, timeout: float = DEADLINE) -> None:
        try:
            wait_for(self.settled, timeout, "every waiting case to have one suspended run", interval=1.0,
                     between=self.sweep)
        except TimeoutError:
            live = self.live()
            for case_id, task in sorted(self.waiting().items()):
                runs = [(r.state_name, str(r.id)[:8]) for r in live.get(case_id, [])]
                self.log(f"  {case_id} waits at {task['node']} ({task['id']}): live runs {runs}")
            raise

    def resume(self, task: dict[str, Any], run_input: dict[str, Any], *, valid: bool) -> bool:
        run = self.suspended_on(task["id"])
        if run is None:
            return False
        with self.client() as client:
            result = client.resume_flow_run(run.id, run_input=run_input)
        accepted = result.status.value == "ACCEPT"
        if accepted and valid:
            self.tally.accepted.append((task["id"], str(run_input["actor"])))
        elif accepted:
            self.tally.refused_sent += 1
        else:
            self.tally.rejected_by_prefect += 1
        return accepted

    def valid_input(self, task: dict[str, Any], actor: str) -> dict[str, Any]:
        if task["node"] == "first":
            return {"answer": self.rng.choice(["yes", "no"]), "actor": actor, "visit_on": "2025-10-09"}
        return {"remark": f"done by {actor}", "actor": actor}

    # -- the scenario ---------------------------------------------------------------------------------
    def run(self, pause_seconds: int) -> bool:
        from prefect.deployments import run_deployment

        self.log(f"serving with {pause_seconds}-second pause timeouts ...")
        self.serve.start(pause_seconds)
        wait_for(self._deployed, DEADLINE, "the served deployment")
        half = max(1, self.cases // 2)
        for i in range(self.cases):
            case_id = f"{self.prefix}-{i + 1:02d}"
            self.case_ids.add(case_id)
            if i < half:  # started through the deployment: its run waits at the first form
                run_deployment(DEPLOYMENT, timeout=0, parameters={"case_id": case_id, "process_id": "opcheck"})
            else:  # as `svcflow run --no-wait` or `svcflow start` leave it: waiting, with no run at all
                self.engine.start("opcheck", {}, case_id=case_id)
        self.log(f"{self.cases} cases: {half} through the deployment, {self.cases - half} with no run")
        # the runless cases get a run (from this sweep, or from serve's takeover if it looked after they were
        # made); every run's pause then times out — failed by this sweep or by Prefect's pause-expiration
        # service, whichever looks first — and the sweep gives the case a new run
        wait_for(self.replaced_after_timeout, DEADLINE + 4 * pause_seconds,
                 f"{self.cases} timed-out waiting runs replaced", interval=1.0, between=self.sweep)
        self.log(f"after the pause timeouts: {self.tally.mended}")
        self.log("kill -9 of svcflow serve (runs starting and suspending); served again with long pauses")
        self._kill_and_restart()
        self.settle()
        self.log("every case waits in a suspended run")

        waiting = sorted(self.waiting().items())
        refused_case, refused_task = waiting[0]
        self.resume(refused_task, {"answer": "yes", "actor": "li", "visit_on": "2025-02-30"}, valid=False)
        wait_for(lambda: self.engine.store.events(refused_case, types=["refused"]), DEADLINE, "the refusal")
        self._submit(refused_task, "li")
        self.log(f"{refused_case}: a refused resume, then a valid one")

        if len(waiting) > 1:
            self._kill_a_worker(waiting[1][1])

        self.settle()
        batch = sorted(self.waiting().items())[-max(2, self.cases // 2):]  # cases no submission moved yet
        for _, task in batch:
            self._submit(task, self.rng.choice(["wang", "zhang", "liu"]))
        time.sleep(self.rng.uniform(0.5, 2.0))  # some runs scheduled, some pending, some running
        self.tally.in_flight_at_kill = self._in_flight()
        self.log(f"kill -9 of svcflow serve with {self.tally.in_flight_at_kill} submission run(s) in flight")
        self._kill_and_restart()
        self.settle()
        ok = self.report()
        self.serve.stop()
        return ok

    def _kill_and_restart(self) -> None:
        self.serve.kill()
        self.tally.serve_kills += 1
        self.serve.start(LONG_PAUSE)  # takes over what the killed one left
        wait_for(self._deployed, DEADLINE, "the served deployment")

    def _deployed(self) -> bool:
        with self.client() as client:
            try:
                client.read_deployment_by_name(DEPLOYMENT)
                return True
            except Exception:
                return False

    def _submit(self, task: dict[str, Any], actor: str) -> None:
        """Resume the run waiting on the task with valid input; a run that just expired gets re-created."""
        wait_for(lambda: self.resume(task, self.valid_input(task, actor), valid=True), DEADLINE,
                 f"an accepted submission for {task['id']}", interval=1.0, between=self.sweep)

    def _in_flight(self) -> int:
        return sum(1 for runs in self.live().values() for r in runs if r.state != "PAUSED")

    def _kill_a_worker(self, task: dict[str, Any]) -> None:
        """SIGKILL the process of a run applying a submission; the runner reports it Crashed."""
        self._submit(task, "zhao")
        run_id = self.tally_run_for(task)
        pid = wait_for(lambda: worker_of(run_id), DEADLINE, "the worker process", interval=0.1) if run_id else None
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self.tally.worker_kills += 1
            self.log(f"kill -9 of the worker running {task['case_id']} (pid {pid})")

    def tally_run_for(self, task: dict[str, Any]) -> Any:
        runs = self.live().get(task["case_id"], [])
        return runs[0].id if runs else None

    def report(self) -> bool:
        live = self.live()
        waiting = self.waiting()
        one_run = sum(1 for c in waiting if len(live.get(c, [])) == 1)
        applied_once = 0
        problems = []
        for task_id, actor in self.tally.accepted:
            case_id = next(t["case_id"] for t in self.engine.store.tasks(status=None, limit=100_000)
                           if t["id"] == task_id)
            done = [e for e in self.engine.store.events(case_id, types=["task_completed"])
                    if e.data.get("task_id") == task_id]
            if len(done) == 1 and str(done[0].data.get("actor")) == actor:
                applied_once += 1
            else:
                problems.append(f"{task_id}: {len(done)} completion(s) {[e.data.get('actor') for e in done]}, "
                                f"submitted by {actor}")
        counts = {
            "cases": self.cases, "waiting": len(waiting), "waiting_with_one_live_run": one_run,
            "accepted_submissions": len(self.tally.accepted), "applied_exactly_once": applied_once,
            "refused_resumes": self.tally.refused_sent, "rejected_by_prefect": self.tally.rejected_by_prefect,
            "worker_kills": self.tally.worker_kills, "serve_kills": self.tally.serve_kills,
            "in_flight_at_serve_kill": self.tally.in_flight_at_kill, "mended": self.tally.mended,
        }
        print(json.dumps(counts, ensure_ascii=False))
        for problem in problems:
            print("NOT APPLIED ONCE:", problem)
        return one_run == len(waiting) and applied_once == len(self.tally.accepted) and not problems


@contextmanager
def prefect_server(api_url: str | None) -> Iterator[str]:
    if api_url:
        yield api_url
        return
    from svcflow.commands_prefect import local_prefect_server

    with local_prefect_server(free_port(), timeout=300) as url:
        yield url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api-url", help="a running Prefect server's API (default: start a local one)")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--pause-seconds", type=int, default=15, help="pause timeout of every waiting run")
    parser.add_argument("--workdir", type=Path, help="where the store and logs go (default: a temporary directory)")
    args = parser.parse_args(argv)
    work_ctx: Any = nullcontext(str(args.workdir)) if args.workdir else tempfile.TemporaryDirectory(prefix="opcheck-")
    with work_ctx as work:
        if not args.api_url:
            os.environ["PREFECT_HOME"] = str(Path(work) / "prefect-home")
        with prefect_server(args.api_url) as api_url:
            return _run(Path(work), api_url, args)


def _run(work: Path, api_url: str, args: argparse.Namespace) -> int:
    os.environ["PREFECT_API_URL"] = api_url
    check = Check(work, api_url, args.cases,
                  log=lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True))
    try:
        ok = check.run(args.pause_seconds)
    finally:
        check.serve.stop()
    print("operator check:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

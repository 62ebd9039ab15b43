"""A Python handle on scripts/prefect_stack.sh, for the integration test, the fault check and the benchmark.

`Stack` starts the production stack (Prefect server on PostgreSQL, store on PostgreSQL, process
work pool, deployments, workers) through the script — the same recipe README documents —
and gives the caller its environment, an engine over its store, and the faults the checks
inject (SIGKILL a worker with its flow runs, restart the server). `drive` then plays staff
and customers until every case has ended, or a deadline passes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "prefect_stack.sh"
ENDED = ("completed", "cancelled")


@dataclass
class Stack:
    """One stack, named so several can live side by side (databases prefect_NAME, svcflow_NAME)."""

    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    workers: int = 2
    settings: dict[str, str] = field(default_factory=dict)  # WORKER_POLL_SECONDS, SWEEP_INTERVAL, SVCFLOW_* ...
    directory: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def stack_dir(self) -> Path:
        return self.directory or ROOT / ".prefect-stack" / self.name

    def _run(self, *args: str, timeout: float = 240) -> str:
        # a test session's own Prefect settings (fast harness, its PREFECT_HOME) must not leak into the stack
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        environment = {**inherited, "STACK_NAME": self.name, "STACK_DIR": str(self.stack_dir),
                       "WORKERS": str(self.workers), "PYTHON": sys.executable, **self.settings}
        done = subprocess.run(["bash", str(SCRIPT), *args], env=environment, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"prefect_stack.sh {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> dict[str, str]:
        self._run("start")
        self.env = read_env_file(self.stack_dir / "env")
        return self.env

    def stop(self, drop: bool = True) -> None:
        """Stop workers and server; with `drop`, also the databases and the stack's directory (logs)."""
        self._run("stop", *(["--drop"] if drop else []))
        if drop:
            import shutil

            shutil.rmtree(self.stack_dir, ignore_errors=True)

    def kill_worker(self, n: int) -> None:
        self._run("kill-worker", str(n))

    def start_worker(self, n: int) -> None:
        self._run("start-worker", str(n))

    def restart_server(self) -> None:
        self._run("restart-server")

    def worker_of(self, pids: Iterable[int]) -> int | None:
        """The number of the worker whose process tree holds one of these processes (a flow run's,
        from `flows.reconcile.flow_run_processes`): the one to kill to kill that run."""
        chain = {p for pid in pids for p in ancestors(pid)}
        for pidfile in sorted(self.stack_dir.glob("worker-*.pid")):
            try:
                if int(pidfile.read_text()) in chain:
                    return int(pidfile.stem.split("-")[1])
            except (OSError, ValueError):
                continue
        return None

    def log(self, name: str) -> str:
        path = self.stack_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @contextmanager
    def client_context(self) -> Iterator[Any]:
        """This process talks to the stack's server and store while the context lasts."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        old = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            with temporary_settings(updates={PREFECT_API_URL: self.env["PREFECT_API_URL"]}):
                from flows.runtime import configure, engine_from_settings
                from flows.settings import FlowSettings

                engine = configure(engine_from_settings(FlowSettings()))
                try:
                    yield engine
                finally:
                    configure(None)
                    if engine is not None:
                        engine.store.dispose()
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def ancestors(pid: int) -> list[int]:
    """pid and its parents, from /proc."""
    chain = []
    while pid > 1:
        chain.append(pid)
        try:
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


def read_env_file(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines the script writes."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def start_cases(cases: Iterable[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Start each (case id, process, data) as a run of the case deployment on the pool."""
    from prefect.deployments import run_deployment

    from flows.settings import get_flow_settings

    ids = []
    for case_id, process_id, data in cases:
        run_deployment(get_flow_settings().case_deployment, timeout=0, tags=[process_id, f"case:{case_id}"],
                       parameters={"case_id": case_id, "process_id": process_id, "data": data})
        ids.append(case_id)
    return ids


def sample_data(engine: Any, process_id: str, seed: int = 0) -> dict[str, Any]:
    """A new case's data as the demo makes it: the demo's sample where there is one, required fields
    made up from the definition otherwise, flags off."""
    import random

    from svcflow.demo_operators import SAMPLE_CASES, sample_fields

    definition = engine.library.latest[process_id].definition
    given = next((dict(data) for pid, data in SAMPLE_CASES if pid == process_id), {})
    data = sample_fields(definition.data, random.Random(seed), engine.clock.now(), only_required=True)
    for name, spec in definition.data.items():
        if spec.type == "boolean" and name not in given:
            data.pop(name, None)
    data.update(given)
    return data


def all_case_ids(engine: Any) -> list[str]:
    return [row["id"] for row in engine.store.cases(limit=1_000_000)]


def family(engine: Any, case_ids: Iterable[str]) -> list[str]:
    """The cases and all their sub-cases (a major complaint's crisis case ...)."""
    found: list[str] = []
    todo = list(case_ids)
    while todo:
        case_id = todo.pop(0)
        if case_id in found:
            continue
        found.append(case_id)
        todo.extend(row["id"] for row in engine.store.cases(parent=case_id))
    return found


def drive(engine: Any, case_ids: Iterable[str], *, deadline: float, staff: Any = None,
          between: Callable[[], Any] | None = None, interval: float = 1.0,
          fire_timers: bool = True, sweep_deployment: str = "escalation-sweep/sweep") -> dict[str, str]:
    """Act on the cases (and their sub-cases) until all have ended or `deadline` (time.monotonic) passes.

    When every running case waits only for a timer (a return visit a day later), one sweep run
    of the sweep deployment is started at the latest due time — `svcflow sweep --now` through
    the pool — so days pass in a moment. Returns the status per case.
    """
    from prefect.deployments import run_deployment

    from flows.staff import Staff, timer_only

    staff = staff or Staff(engine)
    roots = list(case_ids)
    swept_at = None
    while time.monotonic() < deadline:
        ours = [c for c in family(engine, roots) if engine.store.case_exists(c)]
        statuses = {c: engine.store.load_case(c)[0].status for c in ours}
        running = [c for c, status in statuses.items() if status == "running"]
        if len(ours) >= len(roots) and all(status in ENDED for status in statuses.values()):
            break
        acted = staff.act(running)
        if between is not None:
            between()
        if not acted and fire_timers and running:
            dues = [timer_only(engine, case_id) for case_id in running]
            if all(due is not None for due in dues):
                due = max(d for d in dues if d is not None) + timedelta(seconds=1)
                if due != swept_at:
                    swept_at = due
                    run_deployment(sweep_deployment, timeout=0, parameters={"now": due.isoformat()})
        time.sleep(interval)
    return {c: engine.store.load_case(c)[0].status for c in family(engine, roots) if engine.store.case_exists(c)}


__all__ = ["ENDED", "Stack", "all_case_ids", "ancestors", "drive", "family", "read_env_file", "sample_data", "start_cases"]

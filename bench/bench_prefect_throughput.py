"""Cases per second end to end through the production stack (process work pool, 1 and 2 workers).

    PYTHONPATH=. .venv/bin/python bench/bench_prefect_throughput.py [--cases 8] [--complaints 2] [--steps 10]
        [--workers 1,2] [--profile] [--output bench/results/prefect_throughput.json]

One invocation starts scripts/prefect_stack.sh (Prefect server + store on PostgreSQL, two workers)
and measures, side by side on the same machine and server:

- `engine_alone`: the engine over the same PostgreSQL store, no Prefect — the all-automatic chain
  (`--steps` no-op steps) and complaint_handling driven to its end by staff (fake clock: the
  day's wait before the return visit passes at once);
- `bare_prefect`: a bare Prefect flow with `--steps` no-op tasks, as deployment runs on the pool;
- `svcflow_auto`: chain cases as case-flow deployment runs on the pool (each step a task);
- `svcflow_complaint`: complaint cases on the pool, human steps completed by staff through the
  engine (each wakes the suspended run: one flow-run process per segment), the return-visit
  wait passed by one sweep run at its due time.

Each is timed from the first trigger to the last case ended (wall clock). Reported: cases/s,
svcflow's per-case (= per-step, same step count) overhead against the bare flow, per-core
figures against Camunda 8's published ~7 complaint instances/s on ~8.7 CPUs, and with
`--profile` where a worker's flow-run processes spend their time (py-spy, sampled).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CAMUNDA_COMPLAINT_PER_S = 7.0
CAMUNDA_CPUS = 8.7


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def wait_runs_final(run_ids: list[Any], timeout: float) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    with get_client(sync_client=True) as client:
        while pending and time.monotonic() < deadline:
            for run_id in list(pending):
                state = client.read_flow_run(run_id).state
                if state is not None and state.is_final():
                    if not state.is_completed():
                        raise RuntimeError(f"bare run {run_id} ended {state.name}: {state.message}")
                    pending.discard(run_id)
            time.sleep(0.5)
    if pending:
        raise RuntimeError(f"{len(pending)} bare run(s) not finished within {timeout:.0f} s")


def wait_cases_ended(engine: Any, case_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(engine.store.case_exists(c) and engine.store.load_case(c)[0].status in ("completed", "cancelled")
               for c in case_ids):
            return
        time.sleep(0.5)
    raise RuntimeError(f"cases not ended within {timeout:.0f} s")


def engine_alone(database_url: str, process_dir: Path, steps: int, cases: int, complaints: int) -> dict[str, Any]:
    """The same work without Prefect: start chain cases; drive complaints with a fake clock."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    import bench.throughput_flows  # noqa: F401  (registers bench.noop)
    from engine.definition.library import ProcessLibrary
    from engine.run.handlers import default_registry
    from engine.run.runtime import Engine, LogNotifier
    from engine.store.sql import Store
    from engine.time.clock import FakeClock
    from flows.staff import Staff, timer_only
    from svcflow.stack import sample_data

    clock = FakeClock(datetime(2025, 9, 22, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    engine = Engine(Store(database_url), ProcessLibrary.from_dir(process_dir), clock=clock,
                    handlers=default_registry(), notifier=LogNotifier())
    auto = timed(lambda: [engine.start(f"chain{steps}", {}, case_id=f"EA-{i}") for i in range(cases)])
    staff = Staff(engine, wake=False)  # type: ignore[arg-type]

    def complaints_run() -> None:
        ids = [engine.start("complaint_handling", sample_data(engine, "complaint_handling", i), case_id=f"EC-{i}")
               for i in range(complaints)]
        for _ in range(200):
            running = [c for c in ids if engine.store.load_case(c)[0].status == "running"]
            if not running:
                return
            if not staff.act(running):
                dues = [d for d in (timer_only(engine, c) for c in running) if d is not None]  # type: ignore[arg-type]
                if dues:
                    clock.set(max(dues) + timedelta(seconds=1)) if hasattr(clock, "set") else \
                        clock.advance(max(dues) + timedelta(seconds=1) - clock.now())
                    engine.sweep()
        raise RuntimeError("engine-alone complaints did not end")

    complaint = timed(complaints_run)
    engine.store.dispose()
    return {"auto_seconds": round(auto, 3), "auto_cases_per_s": round(cases / auto, 2),
            "complaint_seconds": round(complaint, 3), "complaint_cases_per_s": round(complaints / complaint, 2)}


def profile_worker(stack: Any, seconds: float, out: Path) -> dict[str, Any]:
    """py-spy over one worker and its flow-run processes; samples grouped by where they are."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    pid = int((stack.stack_dir / "worker-1.pid").read_text())
    raw = out.with_suffix(".txt")
    done = subprocess.run([spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)),
                           "--format", "raw", "--rate", "50", "--nonblocking", "-o", str(raw)],
                          capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not raw.exists():
        return {"error": (done.stderr or done.stdout)[-500:]}
    groups: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        groups[_where(stack_text)] += int(count)
    raw.unlink()  # megabytes of stacks: the grouped shares are what is kept
    total = sum(groups.values()) or 1
    return {"samples": total, "share": {k: round(v / total, 3) for k, v in groups.most_common()}}


def _where(stack_text: str) -> str:
    frames = stack_text.split(";")
    text = stack_text
    if "prefect/workers" in text or "prefect/cli" in text or "_worker" in frames[0]:
        if "engine" not in text and "flow_engine" not in text:
            return "worker process (polling, submitting)"
    if any("<module>" in f and ("importlib" in text) for f in frames) or "_find_and_load" in text:
        return "flow-run process start: imports"
    if "/engine/" in text or "/flows/" in text:
        if "sqlalchemy" in text or "psycopg" in text:
            return "svcflow store (SQLAlchemy/psycopg)"
        if "httpx" in text or "prefect/client" in text:
            return "svcflow -> Prefect API calls"
        return "svcflow engine/flows code"
    if "httpx" in text or "prefect/client" in text or "prefect/events" in text:
        return "Prefect client (API calls, events)"
    if "prefect/" in text:
        return "Prefect engine (flow/task run machinery)"
    return "other (interpreter, threads idle)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="chain cases (and bare runs) per measurement")
    parser.add_argument("--complaints", type=int, default=2, help="complaint cases per measurement")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--profile", action="store_true", help="py-spy one worker during an extra chain batch")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "prefect_throughput.json"))
    args = parser.parse_args()

    import bench.throughput_flows  # noqa: F401  (registers bench.noop before any engine loads the chain)
    from bench.bench_prefect import chain_definition
    from flows.deploy import _pool_deployment
    from svcflow.stack import Stack, drive, sample_data, start_cases

    folder = Path(tempfile.mkdtemp(prefix="svcflow-throughput-"))
    for path in (ROOT / "process_defs").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    (folder / f"chain{args.steps}.yaml").write_text(chain_definition(args.steps))
    counts = [int(n) for n in args.workers.split(",")]
    stack = Stack(workers=max(counts), settings={
        "WORKER_POLL_SECONDS": "1", "SWEEP_INTERVAL": "3600", "POOL_LIMIT": "16",
        "SVCFLOW_PROCESS_DIR": str(folder), "SVCFLOW_CASE_DEPLOYMENT": "svcflow-case/run-case-bench",
        "SVCFLOW_ARTIFACT_FLOWCHART": "false"})
    load_before = os.getloadavg()
    results: dict[str, Any] = {"steps": args.steps, "cases": args.cases, "complaints": args.complaints,
                               "engine_alone": {}, "by_workers": {}}
    try:
        stack.start()
        with stack.client_context() as engine:
            from bench.throughput_flows import bare_chain, escalation_sweep, run_case

            env = {"PYTHONPATH": str(ROOT), **{k: v for k, v in stack.env.items() if k.startswith("SVCFLOW_")}}
            _pool_deployment(run_case, "run-case-bench", "bench/throughput_flows.py:run_case", "svcflow", ROOT,
                             env).apply()
            _pool_deployment(escalation_sweep, "sweep-bench", "bench/throughput_flows.py:escalation_sweep", "svcflow",
                             ROOT, env).apply()
            _pool_deployment(bare_chain, "bare", "bench/throughput_flows.py:bare_chain", "svcflow", ROOT,
                             env).apply()
            results["engine_alone"] = engine_alone(stack.env["SVCFLOW_DATABASE_URL"], folder, args.steps,
                                                   args.cases, args.complaints)
            print("engine alone:", results["engine_alone"], flush=True)
            from prefect.deployments import run_deployment

            warm: Any = run_deployment("bare-chain/bare", parameters={"steps": 1}, timeout=0)
            wait_runs_final([warm.id], args.timeout)
            for workers in counts:
                for n in range(1, max(counts) + 1):
                    (stack.start_worker if n <= workers else stack.kill_worker)(n)
                time.sleep(3)
                row: dict[str, Any] = {}

                def bare() -> None:
                    runs: list[Any] = [run_deployment("bare-chain/bare", parameters={"steps": args.steps}, timeout=0)
                                       for _ in range(args.cases)]
                    ids = [run.id for run in runs]
                    wait_runs_final(ids, args.timeout)

                seconds = timed(bare)
                row["bare_prefect"] = {"seconds": round(seconds, 2), "runs_per_s": round(args.cases / seconds, 3)}
                print(workers, "worker(s) bare:", row["bare_prefect"], flush=True)
                auto_ids = [f"W{workers}-A{i}" for i in range(args.cases)]
                def auto(auto_ids: list[str] = auto_ids) -> None:
                    start_cases([(c, f"chain{args.steps}", {}) for c in auto_ids])
                    wait_cases_ended(engine, auto_ids, args.timeout)

                seconds = timed(auto)
                row["svcflow_auto"] = {"seconds": round(seconds, 2), "cases_per_s": round(args.cases / seconds, 3)}
                print(workers, "worker(s) auto:", row["svcflow_auto"], flush=True)
                complaint_ids = [f"W{workers}-C{i}" for i in range(args.complaints)]

                def complaints(complaint_ids: list[str] = complaint_ids) -> None:
                    start_cases([(c, "complaint_handling", sample_data(engine, "complaint_handling", i))
                                 for i, c in enumerate(complaint_ids)])
                    statuses = drive(engine, complaint_ids, deadline=time.monotonic() + args.timeout, interval=0.5,
                                     sweep_deployment="escalation-sweep/sweep-bench")
                    if any(statuses[c] != "completed" for c in complaint_ids):
                        raise RuntimeError(f"complaints did not end: {statuses}")

                seconds = timed(complaints)
                segments = sum(1 for c in complaint_ids for e in engine.store.events(c) if e.type == "task_completed")
                row["svcflow_complaint"] = {"seconds": round(seconds, 2),
                                            "cases_per_s": round(args.complaints / seconds, 4),
                                            "human_steps": segments}
                print(workers, "worker(s) complaint:", row["svcflow_complaint"], flush=True)
                row["overhead_vs_bare_per_step"] = round(
                    row["bare_prefect"]["runs_per_s"] / row["svcflow_auto"]["cases_per_s"], 2)
                results["by_workers"][str(workers)] = row
            if args.profile:
                for n in range(2, max(counts) + 1):
                    stack.kill_worker(n)
                ids = [f"P-A{i}" for i in range(args.cases)]
                start_cases([(c, f"chain{args.steps}", {}) for c in ids])
                results["profile"] = profile_worker(stack, 45, Path(args.output).with_name("prefect_throughput_pyspy"))
                wait_cases_ended(engine, ids, args.timeout)
    finally:
        stack.stop(drop=True)
        shutil.rmtree(folder, ignore_errors=True)
    cores = os.cpu_count() or 1
    best = results["by_workers"].get(str(max(counts)), {})
    complaint_rate = best.get("svcflow_complaint", {}).get("cases_per_s", 0.0)
    results["per_core"] = {
        "svcflow_complaint_per_cpu_s": round(complaint_rate / cores, 4),
        "camunda8_complaint_per_cpu_s": round(CAMUNDA_COMPLAINT_PER_S / CAMUNDA_CPUS, 3),
        "ratio_svcflow_to_camunda": round(complaint_rate / cores / (CAMUNDA_COMPLAINT_PER_S / CAMUNDA_CPUS), 4),
        "engine_alone_complaint_per_cpu_s": round(results["engine_alone"].get("complaint_cases_per_s", 0) / 1, 2),
        "note": "engine alone runs on one core; the pool figures use all cores of the machine",
    }
    results["environment"] = {"python": platform.python_version(), "cpus": cores, "load_before": load_before,
                              "load_after": os.getloadavg()}
    text = json.dumps(results, indent=2)
    print(text)
    if args.output != "-":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()

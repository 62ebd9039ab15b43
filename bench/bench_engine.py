"""svcflow's interpreter and store against SpiffWorkflow 3.2 on the same linear 10-step process.

    .venv/bin/python bench/bench_engine.py [--instances 1000] [--repeat 3] [--profile memory|durable]

The process: start -> step_01 .. step_10 (human tasks of lane "agent", empty forms) -> end, written
once as svcflow YAML (below) and once as BPMN (bench/linear_10_steps.bpmn). Each instance is started
and then gets 10 task completions; all instances are started first and then advanced round by round,
so every engine keeps N live instances side by side (states in a dict, or rows in a database).

Scenarios
  memory   ours:  engine.interpreter.apply(graph, state, event, now) on states kept in a dict
           spiff: BpmnWorkflow objects kept in a dict; task.run() + do_engine_steps() per step
  durable  ours:  Engine over Store("sqlite:///<file>"): Engine.start / Engine.complete, one
                  transaction per step (the path of `svcflow complete`: look the task up, load the
                  case, apply, write state + projections + log, run the commands)
           spiff: BpmnWorkflowSerializer.deserialize_json -> step -> serialize_json per step (JSON kept
                  in a dict: the round trip only, no I/O)
  extra rows (reported; against Spiff + SQLite the target is 5x):
           ours on PostgreSQL: the durable path with the store on PostgreSQL (SVCFLOW_BENCH_POSTGRES_URL,
                  default the test server), in a schema of its own
           ours apply+write: apply on in-memory states + Store.write per step (no reload)
           spiff + SQLite:   the Spiff round trip with the JSON read from / written to a SQLite table,
                             one transaction per step (same pragmas as our store: WAL, synchronous=NORMAL)

Timing: time.perf_counter around the run only (parsing the definitions, creating the database and
its tables is setup), a warm-up run, then the median of --repeat runs. Results go to
bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import platform
import pstats
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from engine.run.events import CompleteTask, StartCase, TaskOpened  # noqa: E402
from engine.definition.graph import ProcessGraph  # noqa: E402
from engine.run.interpreter import apply  # noqa: E402
from engine.definition.library import ProcessLibrary  # noqa: E402
from engine.run.runtime import Engine  # noqa: E402
from engine.run.state import InstanceState  # noqa: E402
from engine.store.sql import Store  # noqa: E402

STEPS = 10
PROCESS_ID = "bench_linear"
ROLE = "agent"
ACTOR = "bench_user"
FORM: dict[str, Any] = {}
BPMN_FILE = Path(__file__).resolve().parent / "linear_10_steps.bpmn"
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "engine.json"
TARGETS = {"memory": 5.0, "durable": 2.0, "durable_vs_spiff_sqlite": 5.0}
POSTGRES_URL = __import__("os").environ.get("SVCFLOW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
"""The PostgreSQL server of the `ours_engine_postgres` row; the store goes into a schema of its own, dropped after."""


def _definition_yaml(steps: int = STEPS) -> str:
    nodes = ["  - {id: start, kind: start}"]
    nodes += [f"  - {{id: step_{i:02d}, kind: human, lane: {ROLE}}}" for i in range(1, steps + 1)]
    nodes.append("  - {id: end, kind: end, outcome: done}")
    ids = ["start", *(f"step_{i:02d}" for i in range(1, steps + 1)), "end"]
    edges = [f"  - {{from: {a}, to: {b}}}" for a, b in zip(ids, ids[1:])]
    return "\n".join([
        f"id: {PROCESS_ID}",
        "version: 1",
        "name: {zh: 基准线性流程, en: Bench linear process}",
        "lanes:",
        f"  - {{id: {ROLE}, name: {{zh: 坐席, en: Agent}}}}",
        "nodes:", *nodes,
        "edges:", *edges,
        "",
    ])


OUR_DEFINITION = _definition_yaml()


def _now() -> datetime:
    return datetime.now(UTC)  # what engine.clock.SystemClock gives the Engine


# -- setup shared by the runs (parsing is not timed: a server parses a definition once) -------------
_cache: dict[str, Any] = {}


def our_library() -> ProcessLibrary:
    if "library" not in _cache:
        library = ProcessLibrary()
        library.add_text(OUR_DEFINITION, "bench_linear.yaml")
        _cache["library"] = library
    return _cache["library"]  # type: ignore[no-any-return]


def our_graph() -> ProcessGraph:
    return our_library().get(PROCESS_ID)


def spiff_spec() -> Any:
    if "spiff_spec" not in _cache:
        from SpiffWorkflow.spiff.parser import SpiffBpmnParser

        parser = SpiffBpmnParser()
        parser.add_bpmn_file(str(BPMN_FILE))
        _cache["spiff_spec"] = parser.get_spec(PROCESS_ID)
    return _cache["spiff_spec"]


def spiff_serializer() -> Any:
    if "spiff_serializer" not in _cache:
        from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
        from SpiffWorkflow.spiff.serializer import DEFAULT_CONFIG

        _cache["spiff_serializer"] = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(DEFAULT_CONFIG))
    return _cache["spiff_serializer"]


# -- one run of one engine ------------------------------------------------------------------------
@dataclass
class Run:
    """A prepared run: `run()` is timed and returns how many instances completed; `close()` cleans up."""

    run: Callable[[], int]
    close: Callable[[], None] = lambda: None


def _case_id(i: int) -> str:
    return f"B-{i:06d}"


def prepare_ours_memory(n: int, workdir: Path) -> Run:
    graph = our_graph()

    def run() -> int:
        states: dict[str, InstanceState] = {}
        open_task: dict[str, str] = {}

        def remember(case_id: str, commands: list[Any]) -> None:
            for command in commands:
                if isinstance(command, TaskOpened):
                    open_task[case_id] = command.task_id

        for i in range(n):
            case_id = _case_id(i)
            transition = apply(graph, None, StartCase(case_id, {}, actor=ACTOR), _now())
            states[case_id] = transition.state
            remember(case_id, transition.commands)
        for _ in range(STEPS):
            for case_id, state in states.items():
                event = CompleteTask(open_task[case_id], ACTOR, ROLE, dict(FORM))
                transition = apply(graph, state, event, _now())
                states[case_id] = transition.state
                remember(case_id, transition.commands)
        return sum(1 for s in states.values() if s.status == "completed")

    return Run(run)


def prepare_ours_engine_sqlite(n: int, workdir: Path) -> Run:
    """Engine over a SQLite file: what `svcflow start` / `svcflow complete` do per call."""
    return prepare_ours_engine_store(n, Store(f"sqlite:///{workdir / 'ours_engine.db'}"))


def prepare_ours_engine_store(n: int, store: Store) -> Run:
    engine = Engine(store, our_library())
    open_task: dict[str, str] = {}

    def listener(case_id: str, command: Any) -> None:
        if isinstance(command, TaskOpened):
            open_task[case_id] = command.task_id

    engine.listeners.append(listener)

    def run() -> int:
        case_ids = [engine.start(PROCESS_ID, {}, actor=ACTOR, case_id=_case_id(i)) for i in range(n)]
        completed = 0
        for step in range(STEPS):
            for case_id in case_ids:
                state = engine.complete(open_task[case_id], actor=ACTOR, role=ROLE, data=FORM)
                if step == STEPS - 1 and state.status == "completed":
                    completed += 1
        return completed

    return Run(run, store.dispose)


def prepare_ours_engine_postgres(n: int, workdir: Path) -> Run:
    """The same Engine path on PostgreSQL (SVCFLOW_BENCH_POSTGRES_URL), in a fresh schema."""
    import uuid

    from sqlalchemy import create_engine, text

    base = "postgresql+psycopg://" + POSTGRES_URL.split("://", 1)[1]
    schema = f"svcflow_bench_engine_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    prepared = prepare_ours_engine_store(n, Store(f"{base}?options=-csearch_path%3D{schema}"))

    def close() -> None:
        prepared.close()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return Run(prepared.run, close)


def prepare_ours_apply_write(n: int, workdir: Path) -> Run:
    """apply on states kept in memory + Store.write per step (no reload, no task lookup)."""
    graph = our_graph()
    store = Store(f"sqlite:///{workdir / 'ours_apply_write.db'}")
    store.save_definition(graph.loaded, _now())

    def run() -> int:
        states: dict[str, InstanceState] = {}
        versions: dict[str, int] = {}
        open_task: dict[str, str] = {}

        def remember(case_id: str, commands: list[Any]) -> None:
            for command in commands:
                if isinstance(command, TaskOpened):
                    open_task[case_id] = command.task_id

        for i in range(n):
            case_id = _case_id(i)
            now = _now()
            transition = apply(graph, None, StartCase(case_id, {}, actor=ACTOR), now)
            versions[case_id] = store.write(None, transition.state, transition.log, None, now)
            states[case_id] = transition.state
            remember(case_id, transition.commands)
        for _ in range(STEPS):
            for case_id, state in states.items():
                now = _now()
                transition = apply(graph, state, CompleteTask(open_task[case_id], ACTOR, ROLE, dict(FORM)), now)
                versions[case_id] = store.write(state, transition.state, transition.log, versions[case_id], now)
                states[case_id] = transition.state
                remember(case_id, transition.commands)
        return sum(1 for s in states.values() if s.status == "completed")

    return Run(run, store.dispose)


def _spiff_complete_next(workflow: Any) -> None:
    """What an application does with Spiff for one human step: find the READY user task, check the
    lane (our role check), put the form into the task data, run it, then run the engine steps."""
    from SpiffWorkflow.util.task import TaskState

    task = workflow.get_next_task(state=TaskState.READY, manual=True)
    if task is None:
        raise RuntimeError("no READY user task")
    if task.task_spec.lane != ROLE:
        raise RuntimeError(f"task {task.task_spec.name} is not for role {ROLE}")
    task.data.update(FORM)
    task.run()
    workflow.do_engine_steps()


def prepare_spiff_memory(n: int, workdir: Path) -> Run:
    from SpiffWorkflow.bpmn import BpmnWorkflow

    spec = spiff_spec()

    def run() -> int:
        workflows: dict[str, Any] = {}
        for i in range(n):
            workflow = BpmnWorkflow(spec)
            workflow.do_engine_steps()
            workflows[_case_id(i)] = workflow
        for _ in range(STEPS):
            for workflow in workflows.values():
                _spiff_complete_next(workflow)
        return sum(1 for w in workflows.values() if w.is_completed())

    return Run(run)


def prepare_spiff_roundtrip(n: int, workdir: Path) -> Run:
    """deserialize_json -> step -> serialize_json per step; the JSON is kept in a dict."""
    from SpiffWorkflow.bpmn import BpmnWorkflow

    spec = spiff_spec()
    serializer = spiff_serializer()

    def run() -> int:
        stored: dict[str, str] = {}
        for i in range(n):
            workflow = BpmnWorkflow(spec)
            workflow.do_engine_steps()
            stored[_case_id(i)] = serializer.serialize_json(workflow)
        for _ in range(STEPS):
            for case_id in stored:
                workflow = serializer.deserialize_json(stored[case_id])
                _spiff_complete_next(workflow)
                stored[case_id] = serializer.serialize_json(workflow)
        return sum(1 for text in stored.values() if serializer.deserialize_json(text).is_completed())

    return Run(run)


def prepare_spiff_sqlite(n: int, workdir: Path) -> Run:
    """The round trip with the JSON read from and written to SQLite, one transaction per step."""
    from SpiffWorkflow.bpmn import BpmnWorkflow

    spec = spiff_spec()
    serializer = spiff_serializer()
    conn = sqlite3.connect(workdir / "spiff.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE workflow (id TEXT PRIMARY KEY, completed INTEGER NOT NULL, state TEXT NOT NULL)")

    def run() -> int:
        case_ids = []
        for i in range(n):
            case_id = _case_id(i)
            workflow = BpmnWorkflow(spec)
            workflow.do_engine_steps()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO workflow (id, completed, state) VALUES (?, ?, ?)",
                         (case_id, int(workflow.is_completed()), serializer.serialize_json(workflow)))
            conn.execute("COMMIT")
            case_ids.append(case_id)
        for _ in range(STEPS):
            for case_id in case_ids:
                conn.execute("BEGIN")
                (text,) = conn.execute("SELECT state FROM workflow WHERE id = ?", (case_id,)).fetchone()
                workflow = serializer.deserialize_json(text)
                _spiff_complete_next(workflow)
                conn.execute("UPDATE workflow SET state = ?, completed = ? WHERE id = ?",
                             (serializer.serialize_json(workflow), int(workflow.is_completed()), case_id))
                conn.execute("COMMIT")
        return conn.execute("SELECT count(*) FROM workflow WHERE completed = 1").fetchone()[0]  # type: ignore[no-any-return]

    return Run(run, conn.close)


ENGINES: dict[str, tuple[str, Callable[[int, Path], Run]]] = {
    "ours_memory": ("svcflow apply, states in a dict", prepare_ours_memory),
    "spiff_memory": ("Spiff BpmnWorkflow objects in a dict", prepare_spiff_memory),
    "ours_engine_sqlite": ("svcflow Engine + SQLite store (svcflow complete path)", prepare_ours_engine_sqlite),
    "ours_engine_postgres": ("svcflow Engine + PostgreSQL store (svcflow complete path)", prepare_ours_engine_postgres),
    "ours_apply_write_sqlite": ("svcflow apply + Store.write (SQLite), states kept in memory",
                                prepare_ours_apply_write),
    "spiff_roundtrip": ("Spiff deserialize_json/serialize_json per step (no I/O)", prepare_spiff_roundtrip),
    "spiff_sqlite": ("Spiff round trip + SQLite read/write per step", prepare_spiff_sqlite),
}

# (scenario key, ours, spiff, target)
COMPARISONS: list[tuple[str, str, str, float]] = [
    ("memory", "ours_memory", "spiff_memory", TARGETS["memory"]),
    ("durable", "ours_engine_sqlite", "spiff_roundtrip", TARGETS["durable"]),
    ("durable_vs_spiff_sqlite", "ours_engine_sqlite", "spiff_sqlite", TARGETS["durable_vs_spiff_sqlite"]),
    ("durable_postgres_vs_spiff_sqlite", "ours_engine_postgres", "spiff_sqlite", TARGETS["durable_vs_spiff_sqlite"]),
    ("durable_apply_write", "ours_apply_write_sqlite", "spiff_roundtrip", TARGETS["durable"]),
]


def run_once(name: str, n: int) -> tuple[float, float]:
    """Prepare, run (timed) and check one engine; returns (wall seconds, CPU seconds) of the run.

    CPU time (time.process_time) is reported next to wall time because it is far less disturbed by
    other processes on a shared machine; it leaves out time spent waiting on the disk (fsync).
    """
    prepare = ENGINES[name][1]
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        prepared = prepare(n, Path(tmp))
        try:
            gc.collect()
            cpu_start = time.process_time()
            start = time.perf_counter()
            completed = prepared.run()
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu_start
        finally:
            prepared.close()
    if completed != n:
        raise RuntimeError(f"{name}: {completed} of {n} instances completed")
    return seconds, cpu_seconds


@dataclass
class Measurement:
    name: str
    instances: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def instances_per_s(self) -> float:
        return self.instances / self.median_seconds

    @property
    def instances_per_cpu_s(self) -> float:
        return self.instances / statistics.median(self.cpu_seconds)

    def as_dict(self) -> dict[str, Any]:
        transitions = self.instances * (STEPS + 1)
        return {
            "description": ENGINES[self.name][0],
            "instances": self.instances,
            "transitions": transitions,
            "runs_seconds": [round(s, 4) for s in self.seconds],
            "median_seconds": round(self.median_seconds, 4),
            "instances_per_s": round(self.instances_per_s, 1),
            "transitions_per_s": round(transitions / self.median_seconds, 1),
            "ms_per_transition": round(1000 * self.median_seconds / transitions, 4),
            "runs_cpu_seconds": [round(s, 4) for s in self.cpu_seconds],
            "instances_per_cpu_s": round(self.instances_per_cpu_s, 1),
        }


def measure(names: list[str], n: int, repeat: int, warmup: int, verbose: bool = True) -> dict[str, Measurement]:
    """Warm every engine up, then run the repetitions interleaved (ours, spiff, ours, spiff ...) so that
    a busy neighbour on a shared machine slows both sides alike rather than one of them."""
    if warmup:
        for name in names:
            run_once(name, warmup)
    results = {name: Measurement(name, n) for name in names}
    for rep in range(repeat):
        for name in names:
            wall, cpu = run_once(name, n)
            results[name].seconds.append(wall)
            results[name].cpu_seconds.append(cpu)
            if verbose:
                print(f"  run {rep + 1}/{repeat} {name:<26} {wall:8.3f} s  ({n / wall:8.1f} inst/s, "
                      f"cpu {cpu:7.3f} s)", flush=True)
    return results


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in __import__("os").getloadavg()]
    except (AttributeError, OSError):
        return None


def _environment() -> dict[str, Any]:
    import sqlalchemy
    from importlib.metadata import version

    def git(*args: str) -> str | None:  # read-only queries
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return None

    commit = git("rev-parse", "--short", "HEAD") or None
    engine_changes = git("status", "--porcelain", "--", "engine")
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "spiffworkflow": version("SpiffWorkflow"),
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "git_commit": commit,
        "engine_uncommitted_changes": bool(engine_changes) if engine_changes is not None else None,
        "load_average_before": _loadavg(),
    }


def run_benchmark(n: int = 1000, repeat: int = 3, warmup: int | None = None,
                  engines: list[str] | None = None, verbose: bool = True) -> dict[str, Any]:
    warmup = min(n, 100) if warmup is None else warmup
    names = engines or list(ENGINES)
    # the parsers and the definition are loaded up front: a server does this once
    our_graph()
    spiff_spec()
    spiff_serializer()
    environment = _environment()
    if verbose:
        print(f"linear {STEPS}-step human-task process, {n} instances, warm-up {warmup}, median of {repeat}",
              flush=True)
    measured = measure(names, n, repeat, warmup, verbose)
    environment["load_average_after"] = _loadavg()
    comparisons = {}
    for key, ours, spiff, target in COMPARISONS:
        if ours in measured and spiff in measured:
            ratio = measured[ours].instances_per_s / measured[spiff].instances_per_s
            cpu_ratio = measured[ours].instances_per_cpu_s / measured[spiff].instances_per_cpu_s
            comparisons[key] = {"ours": ours, "spiff": spiff, "ratio": round(ratio, 2),
                                "cpu_time_ratio": round(cpu_ratio, 2), "target": target, "met": ratio >= target}
    return {
        "benchmark": "linear 10-step human-task process: svcflow vs SpiffWorkflow",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "instances": n,
        "steps_per_instance": STEPS,
        "repeat": repeat,
        "warmup_instances": warmup,
        "statistic": "median of the runs (wall clock, time.perf_counter); CPU time (time.process_time) alongside",
        "environment": environment,
        "engines": {name: m.as_dict() for name, m in measured.items()},
        "comparisons": comparisons,
    }


def print_table(results: dict[str, Any]) -> None:
    engines = results["engines"]
    print()
    print(f"{'engine':<26} {'inst/s':>9} {'trans/s':>9} {'ms/trans':>9} {'inst/cpu-s':>10}  description")
    print("-" * 110)
    for name, row in engines.items():
        print(f"{name:<26} {row['instances_per_s']:>9.1f} {row['transitions_per_s']:>9.1f} "
              f"{row['ms_per_transition']:>9.3f} {row['instances_per_cpu_s']:>10.1f}  {row['description']}")
    print()
    print(f"{'scenario':<26} {'ours':<26} {'spiff':<18} {'ratio':>7} {'cpu ratio':>9} {'target':>7}  met")
    print("-" * 110)
    for key, row in results["comparisons"].items():
        print(f"{key:<26} {row['ours']:<26} {row['spiff']:<18} {row['ratio']:>6.2f}x {row['cpu_time_ratio']:>8.2f}x "
              f"{row['target']:>6.1f}x  {'yes' if row['met'] else 'NO'}")
    print("(ratio = instances/s by wall clock, median of the runs; met is judged on it)")


def profile(name: str, n: int, top: int = 30) -> str:
    """cProfile one engine's run (after a warm-up); returns the top functions by cumulative time."""
    prepare = ENGINES[name][1]
    run_once(name, min(n, 100))
    with tempfile.TemporaryDirectory(prefix=f"bench-prof-{name}-") as tmp:
        prepared = prepare(n, Path(tmp))
        profiler = cProfile.Profile()
        try:
            profiler.enable()
            prepared.run()
            profiler.disable()
        finally:
            prepared.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    out.write("\n--- by own time ---\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=None, help="instances of the warm-up run (default min(N, 100))")
    parser.add_argument("--engines", nargs="*", choices=list(ENGINES), help="only these engines")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="JSON results file ('-' = do not write)")
    parser.add_argument("--profile", nargs="*", choices=list(ENGINES),
                        help="instead of timing: cProfile these engines and print the top functions")
    args = parser.parse_args(argv)

    if args.profile:
        for name in args.profile:
            print(f"===== profile: {name} ({args.instances} instances) =====")
            print(profile(name, args.instances))
        return 0

    results = run_benchmark(args.instances, args.repeat, args.warmup, args.engines)
    print_table(results)
    if str(args.output) != "-":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

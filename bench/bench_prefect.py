"""Per-step overhead of svcflow's Prefect path against a bare Prefect flow, same server, same settings.

A case of N automatic steps runs through `start_case` (engine decides and records every step in
the store, each step a Prefect task named after it); the baseline is a flow with N no-op tasks.
Both run against one Prefect test server with the fast settings of shared/REFERENCE.md (or
PREFECT_API_URL when set) and heartbeats off. Reported: median wall time per run, per step
(total / N), and the marginal cost of one more step ((T(N) - T(1)) / (N - 1)), which leaves out
each run's fixed costs (creating the flow run, naming, tags, the case artifact).

    .venv/bin/python bench/bench_prefect.py [--steps 20] [--repeat 7]

Not a unit test: the target (svcflow per step <= 1.5 x the bare task) is read, not asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAST = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_HOME": tempfile.mkdtemp(prefix="svcflow-bench-home-"),
}


def chain_definition(steps: int) -> str:
    nodes = ["  - {id: start, kind: start}"]
    nodes += [f"  - {{id: s{i:02d}, kind: auto, handler: bench.noop}}" for i in range(1, steps + 1)]
    nodes.append("  - {id: end, kind: end}")
    order = ["start", *[f"s{i:02d}" for i in range(1, steps + 1)], "end"]
    edges = [f"  - {{from: {a}, to: {b}}}" for a, b in zip(order, order[1:])]
    return "\n".join([
        f"id: chain{steps}", "version: 1", "name: {zh: 基准, en: Benchmark}",
        "lanes:", "  - {id: agent, name: {zh: 坐席, en: Agent}}", "nodes:", *nodes, "edges:", *edges, ""])


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--artifacts", action="store_true", help="publish the case artifact per run (default off)")
    args = parser.parse_args()
    for name, value in FAST.items():
        os.environ.setdefault(name, value)
    if not args.artifacts:
        os.environ["SVCFLOW_ARTIFACTS"] = "false"

    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from engine.run.handlers import HandlerRegistry
    from engine.definition.library import ProcessLibrary
    from engine.store.sql import Store
    from flows.case_flow import start_case
    from flows.runtime import FlowEngine, use_engine
    from tests.prefect_harness import without_heartbeats

    @task(persist_result=False, cache_policy=NO_CACHE)
    def noop_task() -> dict[str, Any]:
        return {}

    named = [noop_task.with_options(name=f"s{i:02d}", task_run_name=f"s{i:02d}") for i in range(1, args.steps + 1)]

    @flow(name="bare-chain", persist_result=False)
    def bare_chain(steps: int) -> None:
        for step in named[:steps]:
            step()

    registry = HandlerRegistry()
    registry.add("bench.noop", lambda ctx: {})
    library = ProcessLibrary()
    sizes = sorted({1, args.steps})
    for size in sizes:
        library.add_text(chain_definition(size), f"chain{size}.yaml")
    folder = Path(tempfile.mkdtemp(prefix="svcflow-bench-"))
    engine = FlowEngine(Store(f"sqlite:///{folder / 'bench.db'}"), library, handlers=registry)

    with ExitStack() as stack:
        if not os.environ.get("PREFECT_API_URL"):
            from prefect.testing.utilities import prefect_test_harness

            started = time.perf_counter()
            stack.enter_context(prefect_test_harness(server_startup_timeout=90))
            print(f"Prefect test server ready in {time.perf_counter() - started:.1f} s")
        stack.enter_context(without_heartbeats())
        stack.enter_context(use_engine(engine))
        for size in sizes:  # warm-up: imports, first client, first flow registration
            bare_chain(size)
            start_case(f"chain{size}")
        samples: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeat):  # interleaved, so a busy moment of the machine hits both alike
            for size in sizes:
                for label, run in (("bare", lambda size=size: bare_chain(size)),
                                   ("ours", lambda size=size: start_case(f"chain{size}"))):
                    samples.setdefault((label, size), []).append(timed(run))
        bare = {size: statistics.median(samples[("bare", size)]) for size in sizes}
        ours = {size: statistics.median(samples[("ours", size)]) for size in sizes}

    n = args.steps
    print(f"\n{n} automatic steps, median of {args.repeat} runs, heartbeats off, "
          f"case artifact {'on' if args.artifacts else 'off'}")
    print(f"{'':28}{'run (s)':>10}{'per step (ms)':>16}{'marginal step (ms)':>21}")
    rows = {}
    for label, times in (("bare Prefect (no-op tasks)", bare), ("svcflow case flow", ours)):
        per_step = times[n] / n * 1000
        marginal = (times[n] - times[1]) / (n - 1) * 1000 if n > 1 else per_step
        rows[label] = (per_step, marginal)
        print(f"{label:28}{times[n]:>10.3f}{per_step:>16.2f}{marginal:>21.2f}")
    (b_step, b_marg), (s_step, s_marg) = rows.values()
    print(f"\nratio svcflow / bare: per step {s_step / b_step:.2f}x, marginal step {s_marg / b_marg:.2f}x "
          f"(target <= 1.5x)")
    engine.store.dispose()


if __name__ == "__main__":
    main()

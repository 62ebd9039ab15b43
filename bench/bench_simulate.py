"""Bench: simulate 10,000 complaint cases over a virtual year (target < 30 s).

The as-is scenario (scenarios/complaint_as_is.yaml: 40 complaints per working day, so 10,000 take
about a year of working days) is run with the real interpreter. Printed in the same run:
- the peer: the same simulation with 1,000 cases, to show the cost grows linearly;
- the interpreter's own share: the time spent inside `engine.interpreter.apply`, measured by
  wrapping it, so the simulator's overhead (queues, sampling, calendar) is visible apart.
Wall and CPU time are both printed: on a shared machine the CPU figure is the fairer one. The
Python build is printed too: Debian's PGO/LTO-built python3.11 (which scripts/setup.sh prefers)
runs this about 15 % faster than a plain source build of the same version.

    .venv/bin/python bench/bench_simulate.py [--cases 10000] [--peer 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import simulation.simulator as simulation  # noqa: E402
from simulation.scenario import load_scenario  # noqa: E402

TARGET_SECONDS = 30.0


class ApplyTimer:
    """Wraps the interpreter's apply as the simulator sees it, adding up the time spent inside."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.inner = simulation.apply

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def run(cases: int) -> tuple[float, float, ApplyTimer, simulation.SimulationResult]:
    scenario = load_scenario(ROOT / "scenarios" / "complaint_as_is.yaml")
    timer = ApplyTimer()
    simulation.apply = timer  # type: ignore[assignment]
    try:
        sim = simulation.Simulation(scenario, cases=cases, seed=1)
        cpu = time.process_time()
        started = time.perf_counter()
        result = sim.run()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        simulation.apply = timer.inner  # type: ignore[assignment]
    return wall, cpu, timer, result


def describe(label: str, cases: int, wall: float, cpu: float, timer: ApplyTimer,
             result: simulation.SimulationResult) -> None:
    days = (result.ended_at - result.started_at).days
    stats = result.stats()
    print(f"{label}: {cases:,} cases, {days} virtual days, {len(result.events):,} events, "
          f"{result.child_cases:,} child cases, {stats.completed:,} completed")
    print(f"  {wall:.2f} s wall ({cases / wall:,.0f} cases/s), {cpu:.2f} s CPU; "
          f"interpreter: {timer.calls:,} transitions, {timer.seconds:.2f} s "
          f"({timer.seconds / wall:.0%} of the run, {timer.seconds / timer.calls * 1e6:.0f} µs each)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--peer", type=int, default=1_000)
    args = parser.parse_args()
    print(f"python {platform.python_version()} ({sys.executable}, built {platform.python_build()[1]}), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    peer = run(args.peer)
    describe("peer", args.peer, *peer)
    main_run = run(args.cases)
    describe("bench", args.cases, *main_run)
    wall = main_run[0]
    print(f"scaling: {args.cases / args.peer:.0f}x the cases took {wall / peer[0]:.1f}x the time; "
          f"target < {TARGET_SECONDS:.0f} s: {'met' if wall < TARGET_SECONDS else 'NOT met'}")
    return 0 if wall < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())

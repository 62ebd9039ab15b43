"""Smoke test of bench/bench_engine.py: every engine of the benchmark runs 5 instances to the end.

No timing assertions: the numbers are the benchmark's business, this only keeps it runnable.
"""

from __future__ import annotations

import json
from pathlib import Path

import os

import pytest

try:
    import SpiffWorkflow  # noqa: F401  (a dev dependency: the benchmark's peer)
except ModuleNotFoundError:
    if os.environ.get("CI") == "true":
        raise  # CI installs the dev dependencies: a missing peer is a failure, never a silent skip
    pytest.skip("SpiffWorkflow (dev dependency) is not installed: pip install -e '.[dev]'", allow_module_level=True)

from bench import bench_engine

N = 5


@pytest.mark.parametrize("name", list(bench_engine.ENGINES))
def test_engine_completes_every_instance(name: str, tmp_path: Path) -> None:
    prepared = bench_engine.ENGINES[name][1](N, tmp_path)
    try:
        assert prepared.run() == N
    finally:
        prepared.close()


def test_both_definitions_describe_the_same_process() -> None:
    graph = bench_engine.our_graph()
    human = sorted(node_id for node_id, node in graph.nodes.items() if node.kind == "human")
    spec = bench_engine.spiff_spec()
    user_tasks = sorted(name for name, task_spec in spec.task_specs.items()
                        if type(task_spec).__name__ == "UserTask")
    assert human == user_tasks == [f"step_{i:02d}" for i in range(1, bench_engine.STEPS + 1)]
    assert {spec.task_specs[name].lane for name in user_tasks} == {bench_engine.ROLE}


def test_run_benchmark_reports_every_comparison(tmp_path: Path) -> None:
    results = bench_engine.run_benchmark(N, repeat=1, warmup=0, verbose=False)
    assert set(results["engines"]) == set(bench_engine.ENGINES)
    assert set(results["comparisons"]) == {key for key, *_ in bench_engine.COMPARISONS}
    for row in results["engines"].values():
        assert row["instances"] == N and row["instances_per_s"] > 0
    json.dumps(results)  # what main() writes must be JSON


def test_main_writes_the_json_file(tmp_path: Path) -> None:
    output = tmp_path / "engine.json"
    assert bench_engine.main(["--instances", "2", "--repeat", "1", "--warmup", "0",
                              "--engines", "ours_memory", "spiff_memory", "--output", str(output)]) == 0
    written = json.loads(output.read_text(encoding="utf-8"))
    assert written["comparisons"]["memory"]["ours"] == "ours_memory"

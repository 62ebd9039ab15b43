"""Smoke test of bench/bench_api.py: both sides complete their tasks (no timing assertions)."""

from __future__ import annotations

from bench import bench_api


def test_the_api_benchmark_completes_every_task_both_ways_and_reports_the_ratios() -> None:
    results = bench_api.run_benchmark(5, repeat=1)
    assert results["tasks"] == 5
    for key in ("direct_completions_per_s", "http_completions_per_s", "http_over_direct", "http_over_direct_cpu"):
        assert results[key] > 0


def test_the_api_benchmark_counts_the_client_on_top_of_the_server() -> None:
    """The server's CPU is read from /proc in clock ticks (10 ms): five completions may round to 0;
    the client's, from the process clock, is finer, so the sum is strictly larger."""
    results = bench_api.run_benchmark(5, repeat=1)
    assert results["http_cpu_ms_per_completion"] > results["server_cpu_ms_per_completion"] >= 0

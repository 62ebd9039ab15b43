"""Bench: a review report over the events of 100,000 complaint cases must take < 10 s.

The events come from the simulator (the real interpreter): BASE cases of the as-is scenario are
simulated once, then copied under new case ids until there are 100,000 cases — copies share the
event payloads, so building the log is quick and the review reads a log of realistic density
(about 130 events per complaint). Measured (wall time, and this process's CPU time): everything
`build_review` does — the statistics over the whole log, including starting the worker processes
that read stretches of it, waiting for them and combining their results — plus `review_html` with
the heatmap rendered by Graphviz. Nothing is cached between the two reviews of a run.

How many processes read the log is what `visualize.stats.review_workers` decides: one per CPU
for a log of at least 500,000 events, one below that; SVCFLOW_REVIEW_WORKERS=N sets it (1: one
process). Each line says how many read it; the CPU figure counts this process only, not its
workers. The peer figure in the same run is the review of the BASE cases alone (short enough to
be read in one process), to show how the cost grows with the log.

    .venv/bin/python bench/bench_review.py [--cases 100000] [--base 2000]
    SVCFLOW_REVIEW_WORKERS=1 .venv/bin/python bench/bench_review.py      # one process, for comparison
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from visualize.review import build_review, review_html  # noqa: E402
from engine.run.log import LogEntry  # noqa: E402
from simulation.scenario import load_scenario  # noqa: E402
from simulation.simulator import simulate  # noqa: E402

TARGET_SECONDS = 10.0
RESULTS = ROOT / "bench" / "results" / "review.json"


def replicate(events: list[LogEntry], copies: int) -> list[LogEntry]:
    """The same cases again under new ids (`SIM-000001~7`), payloads shared, order kept per copy."""
    gc.disable()  # millions of new tuples: the collector would only rescan them
    out: list[LogEntry] = []
    for copy in range(copies):
        if copy == 0:
            out.extend(events)
            continue
        suffix = f"~{copy}"
        names: dict[str, str] = {}
        for e in events:
            name = names.get(e.case_id)
            if name is None:
                name = names[e.case_id] = e.case_id + suffix
            out.append(LogEntry(name, e.process_id, e.seq, e.at, e.type, e.node, e.data))
    gc.enable()
    return out


def timed_review(graph: object, events: list[LogEntry], views: bool = False) -> tuple[float, float, float, int, int]:
    """(statistics s, whole report s, whole report CPU s, cases, processes that read the log): wall time,
    and this process's CPU time (on a shared machine the CPU figure shows the cost without the
    neighbours' load; it leaves out the workers', so with workers it is not the whole cost).

    Without the review's views (arcs, breakdowns, trends, charts: a second pass that a long log gets only
    on request), so the peer and the long log are measured alike; `views` measures them on top."""
    gc.collect()
    cpu = time.process_time()
    started = time.perf_counter()
    review = build_review(graph, events, views=views)  # type: ignore[arg-type]
    stats_done = time.perf_counter()
    page = review_html(review)
    finished = time.perf_counter()
    assert "<svg" in page
    return stats_done - started, finished - started, time.process_time() - cpu, review.stats.cases, review.stats.workers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--base", type=int, default=2_000)
    args = parser.parse_args()
    scenario = load_scenario(ROOT / "scenarios" / "complaint_as_is.yaml")
    t0 = time.perf_counter()
    result = simulate(scenario, cases=args.base, seed=1)
    simulated = time.perf_counter() - t0
    base_events = result.events
    copies = max(1, round(args.cases / args.base))
    t0 = time.perf_counter()
    events = replicate(base_events, copies)
    built = time.perf_counter() - t0
    print(f"log: {args.base} simulated cases ({len(base_events):,} events, {simulated:.1f} s) copied x{copies} "
          f"-> {len(events):,} events ({built:.1f} s)")

    peer_stats, peer_total, peer_cpu, peer_cases, peer_workers = timed_review(result.graph, base_events)
    print(f"peer: review of {peer_cases:,} cases: statistics {peer_stats:.2f} s, report {peer_total:.2f} s "
          f"(CPU {peer_cpu:.2f} s; {peer_workers} process{'es' if peer_workers > 1 else ''})")
    stats_s, total_s, cpu_s, cases, workers = timed_review(result.graph, events)
    per_event = total_s / len(events) * 1e6
    print(f"review of {cases:,} cases ({len(events):,} events): statistics {stats_s:.2f} s, "
          f"report with heatmap {total_s:.2f} s (CPU {cpu_s:.2f} s in this process; {per_event:.2f} µs/event; "
          f"{workers} process{'es' if workers > 1 else ''}; target < {TARGET_SECONDS:.0f} s)")
    print(f"scaling: {cases / peer_cases:.0f}x the cases took {stats_s / peer_stats:.1f}x the statistics time")
    _s, _t, views_cpu, _c, _w = timed_review(result.graph, base_events, views=True)
    print(f"views on the peer's log (arcs, breakdowns, trends, charts): CPU {views_cpu:.2f} s with them against "
          f"{peer_cpu:.2f} s without ({views_cpu / peer_cpu:.2f}x)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "review of a long log (statistics + HTML with heatmap), one process unless workers are set",
        "events": len(events), "cases": cases, "workers": workers,
        "seconds": {"statistics": stats_s, "report": total_s, "report_cpu_this_process": cpu_s},
        "peer": {"cases": peer_cases, "events": len(base_events), "statistics": peer_stats, "report": peer_total,
                 "report_cpu": peer_cpu, "report_cpu_with_views": views_cpu},
        "ratio_statistics_long_over_peer": stats_s / peer_stats,
        "ratio_cpu_long_over_peer": cpu_s / peer_cpu,
        "target_seconds": TARGET_SECONDS,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n", encoding="utf-8")
    return 0 if total_s < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())

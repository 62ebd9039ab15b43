"""Bench: exporting a 100,000-case log from the store as XES / OCEL / CSV, against the review reading it.

The log: BASE complaint cases simulated with the real interpreter (`simulation.simulator.simulate`,
as-is scenario), copied under new case ids up to --cases (bench_review.replicate), then written into
a fresh SQLite store (events table only: what both readers read) — building it is setup, not timed.

Measured, each in a fresh child process so that its peak memory (ru_maxrss) is its own:
- `export xes|ocel|csv`: what `svcflow export log` does — the store read in keyset pages of 20,000
  rows (`interop.eventlog.read_store`), each case handed to the writer when it ends and dropped;
- the peer, `review`: what `svcflow review` does with the same log — `Store.events()` (the whole
  log as one list) and `analytics.stats.compute_stats` over it.
Wall time and peak resident memory per child; the claim is that export memory stays flat while
the log grows (the cases open at one moment, not the log), while the review's grows with the log.

    .venv/bin/python bench/bench_export.py [--cases 100000] [--base 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_review import replicate  # noqa: E402
from simulation.scenario import load_scenario  # noqa: E402
from simulation.simulator import simulate  # noqa: E402

PROCESS = "complaint_handling"
CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from engine.store.sql import Store
mode, url, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
store = Store(url)
started = time.perf_counter()
if mode == "review":
    from engine.definition.library import ProcessLibrary
    from analytics.stats import compute_stats
    events = store.events(process_id={process!r})
    stats = compute_stats(ProcessLibrary.from_dir().get({process!r}), events, workers=1)
    count = stats.cases
else:
    from interop.eventlog import EXPORT_TYPES, cases, read_store
    traces = cases(read_store(store, process_id={process!r}, types=EXPORT_TYPES))
    if mode == "xes":
        from interop.xes import write_xes
        count = write_xes(traces, out)
    elif mode == "ocel":
        from interop.ocel import write_ocel
        count = write_ocel(traces, out)[0]
    else:
        from interop.csv_log import write_csv
        count = write_csv(traces, out)
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(mode=mode, seconds=seconds, cpu=usage.ru_utime + usage.ru_stime, count=count,
                      peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      bytes=out.stat().st_size if out.exists() else 0)))
"""


def build_store(url: str, events: list) -> None:  # type: ignore[type-arg]
    from engine.store.sql import EVENTS, Store, _dumps, utc

    store = Store(url)
    store.migrate()
    rows = []
    with store.engine.begin() as conn:
        for e in events:
            if e.process_id != PROCESS:
                continue
            rows.append(dict(case_id=e.case_id, process_id=e.process_id, seq=e.seq, at=utc(e.at),
                             type=e.type, node=e.node, payload=_dumps(e.data)))
            if len(rows) == 50_000:
                conn.execute(EVENTS.insert(), rows)
                rows.clear()
        if rows:
            conn.execute(EVENTS.insert(), rows)


def child(mode: str, url: str, out: Path) -> dict:  # type: ignore[type-arg]
    code = CHILD.format(root=str(ROOT), process=PROCESS)
    done = subprocess.run([sys.executable, "-c", code, mode, url, str(out)], check=True, capture_output=True,
                          text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--base", type=int, default=1_000)
    parser.add_argument("--keep", type=Path, default=None, help="directory for the store and the exports")
    parser.add_argument("--formats", nargs="+", default=["xes", "ocel", "csv"], choices=["xes", "ocel", "csv"])
    parser.add_argument("--no-peer", action="store_true",
                        help="skip the review (Store.events() holds the whole log: ~150 MB per 100,000 events)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="svcflow-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = simulate(load_scenario(ROOT / "scenarios" / "complaint_as_is.yaml"), cases=args.base, seed=1)
    events = replicate(result.events, max(1, round(args.cases / args.base)))
    db = work / "svcflow.db"
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    build_store(url, events)
    n_events = sum(1 for e in events if e.process_id == PROCESS)
    del events, result
    print(f"log: {args.cases:,} {PROCESS} cases, {n_events:,} events in {db} "
          f"({db.stat().st_size / 1e6:.0f} MB; built in {time.perf_counter() - t0:.0f} s)")
    results = {}
    modes = ([] if args.no_peer else ["review"]) + args.formats
    for mode in modes:
        suffix = {"review": "none", "xes": "xes", "ocel": "json", "csv": "csv"}[mode]
        results[mode] = child(mode, url, work / f"log.{suffix}")
        r = results[mode]
        print(f"{mode:>6}: {r['seconds']:7.1f} s (CPU {r['cpu']:6.1f} s)  peak {r['peak_mb']:7.0f} MB  "
              f"({r['count']:,} {'cases' if mode in ('review', 'xes') else 'events' if mode == 'ocel' else 'rows'}"
              f"{', ' + format(r['bytes'] / 1e6, '.0f') + ' MB written' if r['bytes'] else ''})")
    review = results.get("review")
    for mode in args.formats:
        r = results[mode]
        if review is None:
            break
        print(f"{mode} vs review: {r['seconds'] / review['seconds']:.2f}x the time "
              f"({r['cpu'] / review['cpu']:.2f}x the CPU), "
              f"{r['peak_mb'] / review['peak_mb']:.2f}x the peak memory")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / f"export-{args.cases}.json").write_text(
        json.dumps(dict(cases=args.cases, events=n_events, results=results), indent=2) + "\n", encoding="utf-8")
    return 0 if review is None or "xes" not in results or results["xes"]["count"] == review["count"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Bench: exporting a 100,000-case log from the store as XES / OCEL / CSV, against the review reading it.

The log: BASE complaint cases simulated with the real interpreter (`simulation.simulator.simulate`,
as-is scenario), copied under new case ids up to --cases (named as bench_review.replicate names them), written into
a fresh SQLite store (events table only: what both readers read) — building it is setup, not timed.

Measured, each in a fresh child process so that its peak memory (ru_maxrss) is its own:
- `export xes|ocel|csv`: what `svcflow export log` does — the store read in keyset pages of 20,000
  rows (`interop.eventlog.read_store`), each case handed to the writer when it ends and dropped;
- the peer, `review`: the review's statistics (`analytics.stats.compute_stats`, one worker) over the
  same log read the same way (the same pages, every event type): the same reading, the review's
  work instead of a writer's;
- `review-list`, what `svcflow review` does today: `Store.events()` (the whole log as one list,
  every payload parsed) and `compute_stats` over it. Its memory grows with the log (about 180 MB per
  1,000 cases), so it only runs up to --list-cases (default 10,000) cases.
Wall time, CPU time and peak resident memory per child; the claim is that export memory stays flat
while the log grows (the cases open at one moment, not the log). Results: bench/results/export.json
(one entry per log size, so a 10,000- and a 100,000-case run stand side by side).

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
if mode in ("review", "review-list"):
    from engine.definition.library import ProcessLibrary
    from analytics.stats import compute_stats
    from interop.eventlog import read_store
    if mode == "review":
        events = read_store(store, process_id={process!r})
    else:
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


def build_store(db: Path, base: list, copies: int) -> int:  # type: ignore[type-arg]
    """Write `copies` copies of the base log's complaint cases (new ids: `SIM-000001~7`, as
    bench_review.replicate names them) straight into SQLite; returns the number of events.

    Streamed copy by copy with the payload text of each base event serialised once: building a
    13-million-row log is setup, it should not take longer than what is measured.
    """
    import sqlite3

    from engine.run.log import LOG_SCHEMA_VERSION
    from engine.store.sql import Store, _dumps, utc

    Store(f"sqlite:///{db}").migrate()
    rows = [(e.case_id, e.seq, utc(e.at).strftime("%Y-%m-%d %H:%M:%S.%f"), e.type, e.node, _dumps(e.data))  # type: ignore[union-attr]
            for e in base if e.process_id == PROCESS]  # the text SQLAlchemy writes for a DateTime in SQLite
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    sql = ("INSERT INTO events (case_id, process_id, seq, at, type, node, payload, log_version) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    for copy in range(copies):
        suffix = f"~{copy}" if copy else ""
        conn.executemany(sql, ((case_id + suffix, PROCESS, seq, at, type_, node, payload, LOG_SCHEMA_VERSION)
                               for case_id, seq, at, type_, node, payload in rows))
        conn.commit()
    conn.close()
    return len(rows) * copies


def start_child(mode: str, url: str, out: Path) -> subprocess.Popen[str]:
    code = CHILD.format(root=str(ROOT), process=PROCESS)
    return subprocess.Popen([sys.executable, "-c", code, mode, url, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def child_result(process: subprocess.Popen[str]) -> dict:  # type: ignore[type-arg]
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a measured child failed ({process.args!r}):\n{stderr}")
    return json.loads(stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--base", type=int, default=1_000)
    parser.add_argument("--keep", type=Path, default=None, help="directory for the store and the exports")
    parser.add_argument("--formats", nargs="+", default=["xes", "ocel", "csv"], choices=["xes", "ocel", "csv"])
    parser.add_argument("--no-peer", action="store_true", help="skip both reviews")
    parser.add_argument("--list-cases", type=int, default=10_000,
                        help="run review-list (the whole log in memory) only up to this many cases")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the store already in --keep (built by an earlier run of the same --cases)")
    parser.add_argument("--together", action="store_true",
                        help="run the measured children at the same time (on a loaded machine: compare the CPU "
                             "seconds and peak memory, which are each child's own; wall times share the CPUs)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="svcflow-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    db = work / "svcflow.db"
    url = f"sqlite:///{db}"
    if args.build_only:
        result = simulate(load_scenario(ROOT / "scenarios" / "complaint_as_is.yaml"), cases=args.base, seed=1)
        db.unlink(missing_ok=True)
        build_store(db, result.events, max(1, round(args.cases / args.base)))
        return 0
    if not (args.reuse and db.exists()):
        # built in a child of its own: Linux keeps a process's peak RSS across fork and exec, so a
        # measured child started from a parent that held the simulation would report the parent's peak
        subprocess.run([sys.executable, __file__, "--cases", str(args.cases), "--base", str(args.base),
                        "--keep", str(work), "--build-only"], check=True)
    import sqlite3

    with sqlite3.connect(db) as conn:
        n_events = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    print(f"log: {args.cases:,} {PROCESS} cases, {n_events:,} events in {db} "
          f"({db.stat().st_size / 1e6:.0f} MB; built in {time.perf_counter() - t0:.0f} s)")
    results = {}
    peers = [] if args.no_peer else ["review"] + (["review-list"] if args.cases <= args.list_cases else [])
    modes = peers + args.formats
    suffixes = {"review": "none", "review-list": "none", "xes": "xes", "ocel": "json", "csv": "csv"}
    running = {}
    for mode in modes:
        running[mode] = start_child(mode, url, work / f"log.{suffixes[mode]}")
        if not args.together:
            results[mode] = child_result(running[mode])
    for mode in modes:
        if args.together:
            results[mode] = child_result(running[mode])
        r = results[mode]
        print(f"{mode:>11}: {r['seconds']:7.1f} s (CPU {r['cpu']:6.1f} s)  peak {r['peak_mb']:7.0f} MB  "
              f"({r['count']:,} {'cases' if mode in ('review', 'review-list', 'xes') else 'events' if mode == 'ocel' else 'rows'}"
              f"{', ' + format(r['bytes'] / 1e6, '.0f') + ' MB written' if r['bytes'] else ''})")
    review = results.get("review")
    for mode in args.formats:
        r = results[mode]
        for peer in peers:
            p = results[peer]
            print(f"{mode} vs {peer}: {r['seconds'] / p['seconds']:.2f}x the time "
                  f"({r['cpu'] / p['cpu']:.2f}x the CPU), {r['peak_mb'] / p['peak_mb']:.2f}x the peak memory")
    out = ROOT / "bench" / "results" / "export.json"
    out.parent.mkdir(exist_ok=True)
    try:
        recorded = json.loads(out.read_text(encoding="utf-8"))
        runs = recorded["runs"] if isinstance(recorded, dict) and isinstance(recorded.get("runs"), dict) else {}
    except (OSError, ValueError):
        runs = {}
    ratios = {f"{mode}/{peer}": dict(seconds=round(results[mode]["seconds"] / results[peer]["seconds"], 3),
                                     cpu=round(results[mode]["cpu"] / results[peer]["cpu"], 3),
                                     peak_mb=round(results[mode]["peak_mb"] / results[peer]["peak_mb"], 3))
              for mode in args.formats for peer in peers}
    runs[str(args.cases)] = dict(cases=args.cases, events=n_events, together=args.together, results=results,
                                 ratios=ratios)
    out.write_text(json.dumps(dict(runs=runs), indent=2) + "\n", encoding="utf-8")
    return 0 if review is None or "xes" not in results or results["xes"]["count"] == review["count"] else 1

if __name__ == "__main__":
    raise SystemExit(main())

"""Sweep at scale: one sweep pass over a store holding N open cases of which M are due.

    python -m bench.bench_sweep --database postgresql://postgres@127.0.0.1:5432/test --open 100000 --due 1000

The store is filled quickly from real library cases: every sample case of the demo
(svcflow/demo_operators.py, all processes of process_defs/) is started on an in-memory engine,
once three days ago (those with an SLA threshold or timer due by now are the *due* templates) and
once now (those with nothing due yet are the *open* templates); their rows, exactly as
Store.rows_of gives them, are copied under new case ids with COPY (PostgreSQL) or batched
inserts (SQLite). Past events are not copied: the sweep does not read them. The store lives in
its own PostgreSQL schema (`--schema`, dropped and recreated), so nothing else in the database is
touched.

Then one `Engine.sweep` pass is timed (the library loaded and the engine built beforehand), and
checked: every due case swept, nothing left due. `--contend` then runs the concurrency check on
fresh due cases: two sweeping processes and four worker processes completing the open tasks of
the same cases at once, and counts double escalations (the same clock and level escalated twice)
and lost updates (a case whose state does not carry its latest logged event, a completion
reported done whose task is not completed): both must be 0.

The seconds of the timed pass are printed last.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from engine.definition.library import ProcessLibrary
from engine.definition.model import HumanTask
from engine.errors import SvcflowError
from engine.run.events import Notify, Tick
from engine.run.interpreter import apply
from engine.run.runtime import Engine
from engine.store.sql import Store
from engine.time.clock import FakeClock
from svcflow.demo_operators import Operators, sample_fields

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
NOW = datetime.fromisoformat("2026-03-04T10:00:00+08:00")  # a Wednesday morning, inside business hours
TABLES = ("cases", "tasks", "sla_clocks")


class CountingNotifier:
    """Notifications counted, not logged: ten thousand log lines would be timed, not the sweep."""

    def __init__(self) -> None:
        self.sent = 0

    def notify(self, case_id: str, process_id: str, command: Notify) -> None:
        self.sent += 1


@dataclass
class Template:
    case_id: str
    process_id: str
    rows: dict[str, list[dict[str, Any]]]


def templates(now: datetime = NOW) -> tuple[list[Template], list[Template]]:
    """(due, open) templates: the demo's sample cases of every process, started 3 days ago and now.

    An old case is brought forward threshold by threshold (as sweeps would have) until the next
    one is the last to fall due by `now`: a due template has one step of work due, as a case in
    a store swept every minute has, not three days of backlog.
    """
    engine = Engine.in_memory(clock=FakeClock(now - timedelta(days=3)), notifier=CountingNotifier())
    operators = Operators(engine, log=lambda _line: None)
    old = operators.start_samples()
    for case_id in old:
        _bring_forward(engine, case_id, now)
    engine.clock.set(now)  # type: ignore[attr-defined]
    new = operators.start_samples()
    due: list[Template] = []
    still: list[Template] = []
    for case_ids, into, wanted in ((old, due, True), (new, still, False)):
        for case_id in case_ids:
            state, version = engine.store.load_case(case_id)
            next_due = state.next_due_at()
            if state.ended_at is not None:
                continue
            if (next_due is not None and next_due <= now) == wanted:
                into.append(Template(case_id, state.process_id, engine.store.rows_of(state, version, now)))
    if not due or not still:
        raise SystemExit("the library's sample cases gave no due or no open template")
    return due, still


def _bring_forward(engine: Engine, case_id: str, now: datetime) -> None:
    """Apply a case's due thresholds one at a time, at their own times, while the one after is due by now."""
    while True:
        state, version = engine.store.load_case(case_id)
        due = state.next_due_at()
        if due is None or due > now:
            return
        transition = apply(engine.graph_for(state), state, Tick(), due)
        after = transition.state.next_due_at()
        if after is None or after > now:
            return  # this threshold is the one left due
        engine.clock.set(due)  # type: ignore[attr-defined]
        engine.store.write(state, transition.state, transition.log, version, due)
        engine.driver.drive(case_id, transition)


def schema_url(database: str, schema: str, reuse: bool = False) -> str:
    """The store URL whose search_path is the bench's own schema (recreated empty unless `reuse`)."""
    if database.startswith("sqlite"):
        return database
    base = "postgresql+psycopg://" + database.split("://", 1)[1]
    raw = create_engine(base)
    with raw.begin() as conn:
        if not reuse:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    raw.dispose()
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


def _copies(template_list: list[Template], table: str, columns: list[str], count: int, prefix: str,
            start: int = 0) -> Iterator[list[Any]]:
    """`count` copies of the templates' rows of one table, round robin, each under a new case id."""
    for i in range(start, start + count):
        template = template_list[i % len(template_list)]
        new_id = f"{prefix}-{i:08d}"
        for row in template.rows[table]:
            yield [value.replace(template.case_id, new_id) if isinstance(value, str) else value
                   for value in (row[c] for c in columns)]


def fill(store: Store, due_templates: list[Template], open_templates: list[Template], open_n: int, due_n: int,
         due_prefix: str = "DUE", open_prefix: str = "OPEN", open_from: int = 0) -> dict[str, int]:
    """Load `open_n` cases with nothing due (numbered from `open_from`) and `due_n` due ones; rows per table.

    PostgreSQL: the templates' rows are copied once into temporary tables and multiplied by the
    server (one INSERT ... SELECT per table over generate_series, the case id replaced in every
    text column), with the tables' plain indexes dropped and rebuilt around a large load (same
    definitions, built in bulk): a million cases in minutes, not a quarter of an hour of
    per-row Python. SQLite: the same rows from Python, in batches."""
    groups = [(open_templates, open_n, open_prefix, open_from), (due_templates, due_n, due_prefix, 0)]
    if store.dialect == "postgresql":
        return _fill_on_server(store, groups, rebuild_indexes=open_n + due_n >= 50_000)
    counts: dict[str, int] = {}
    for table in TABLES:
        columns = _columns(due_templates + open_templates, table)
        counts[table] = sum(store.bulk_load(table, columns, _copies(templates_, table, columns, count, prefix, start))
                            for templates_, count, prefix, start in groups)
    return counts


def _columns(template_list: list[Template], table: str) -> list[str]:
    return list(next(t.rows[table][0] for t in template_list if t.rows[table]).keys())


def _fill_on_server(store: Store, groups: list[tuple[list[Template], int, str, int]], *,
                    rebuild_indexes: bool) -> dict[str, int]:
    counts = dict.fromkeys(TABLES, 0)
    connection = store.engine.raw_connection()
    try:
        cursor = connection.cursor()
        indexes: list[tuple[str, str]] = []
        if rebuild_indexes:  # plain indexes only: primary keys and unique constraints stay
            cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                           "AND tablename = ANY(%s) AND indexname NOT IN "
                           "(SELECT conname FROM pg_constraint WHERE connamespace = current_schema()::regnamespace)",
                           [list(TABLES)])
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        for table in TABLES:
            all_templates = [t for group in groups for t in group[0]]
            columns = _columns(all_templates, table)
            cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                           "AND table_name = %s AND data_type IN ('text', 'character varying')", [table])
            textual = {row[0] for row in cursor.fetchall()}
            names = ", ".join(columns)
            cursor.execute(f"CREATE TEMP TABLE tpl_{table} (LIKE {table}, tpl integer, tpl_case text) ON COMMIT DROP")
            values = ", ".join(f"replace(t.{c}, t.tpl_case, k.new_id)" if c in textual else f"t.{c}" for c in columns)
            for template_list, count, prefix, start in groups:
                if count == 0:
                    continue
                cursor.execute(f"TRUNCATE tpl_{table}")
                with cursor.copy(f"COPY tpl_{table} ({names}, tpl, tpl_case) FROM STDIN") as copy:
                    for number, template in enumerate(template_list):
                        for row in template.rows[table]:
                            copy.write_row([*(row[c] for c in columns), number, template.case_id])
                cursor.execute(
                    f"INSERT INTO {table} ({names}) SELECT {values} FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g(i) "
                    "CROSS JOIN LATERAL (SELECT %(prefix)s || '-' || lpad(g.i::text, greatest(8, length(g.i::text)), "
                    f"'0') AS new_id) k JOIN tpl_{table} t ON t.tpl = g.i %% %(templates)s::integer",
                    {"first": start, "last": start + count - 1, "prefix": prefix, "templates": len(template_list)})
                counts[table] += cursor.rowcount
        for _, definition in indexes:
            cursor.execute(definition)
        connection.commit()
        cursor.execute("ANALYZE cases; ANALYZE tasks; ANALYZE sla_clocks")
        connection.commit()
    finally:
        connection.close()
    return counts


def keep_open_cases(store: Store) -> int:
    """For --reuse: remove every case but the OPEN- ones (due, contended and scheduled ones with their
    rows); returns how many open cases are kept."""
    with store.engine.begin() as conn:
        for table, column in (("events", "case_id"), ("escalations", "case_id"), ("sla_clocks", "case_id"),
                              ("tasks", "case_id"), ("cases", "id")):
            conn.execute(text(f"DELETE FROM {table} WHERE {column} NOT LIKE 'OPEN-%'"))
        kept = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
    return int(kept)


def _due_count(store: Store, now: datetime) -> int:
    return len(store.due_states(now, 10_000_000))


# -- the concurrency check -------------------------------------------------------------------------
def _sweeper(url: str, rounds: int, out: Any) -> None:
    engine = Engine(Store(url), ProcessLibrary.from_dir(), clock=FakeClock(NOW), notifier=CountingNotifier())
    swept = 0
    for _ in range(rounds):
        swept += len(engine.sweep(limit=100_000, batch=200))
    out.put(("sweep", swept, 0, []))


def _worker(url: str, k: int, workers: int, prefix: str, out: Any) -> None:
    """Complete the open tasks of the contended cases that fall to this worker (task id hash mod workers)."""
    engine = Engine(Store(url), ProcessLibrary.from_dir(), clock=FakeClock(NOW), notifier=CountingNotifier())
    rng = random.Random(k)
    done: list[str] = []
    refused = 0
    with engine.store.engine.connect() as conn:  # the contended cases' open tasks only, not the whole store's
        tasks = conn.execute(text("SELECT id, case_id, node, role FROM tasks WHERE case_id LIKE :p AND status = 'open' "
                                  "ORDER BY id"), {"p": f"{prefix}%"}).mappings().all()
    for task in tasks:
        if sum(map(ord, task["id"])) % workers != k:
            continue
        try:
            state, _ = engine.store.load_case(task["case_id"])
            node = engine.graph_for(state).nodes[task["node"]]
            assert isinstance(node, HumanTask)
            data = sample_fields({f.id: f for f in node.form}, rng, NOW, present=state.data)
            engine.complete(task["id"], actor=f"{task['role']}_bench", role=task["role"], data=data)
            done.append(task["id"])
        except SvcflowError:  # e.g. escalated meanwhile to another role: recorded as a refusal
            refused += 1
    out.put(("work", len(done), refused, done))


def contend(url: str, due_templates: list[Template], open_templates: list[Template], cases: int, *,
            sweeps: int = 2, workers: int = 4, processes: bool = True) -> dict[str, int]:
    """Two sweeps and four workers on the same `cases` due cases at once; the counts that must be 0."""
    store = Store(url)
    prefix = f"RACE{random.randrange(10**6):06d}"
    fill(store, due_templates, open_templates, 0, cases, due_prefix=prefix)
    context = multiprocessing.get_context("spawn")
    queue: Any = context.Queue() if processes else __import__("queue").Queue()
    jobs: list[tuple[Any, tuple[Any, ...]]] = [(_sweeper, (url, 2, queue)) for _ in range(sweeps)]
    jobs += [(_worker, (url, k, workers, prefix, queue)) for k in range(workers)]
    if processes:
        runners: list[Any] = [context.Process(target=f, args=a) for f, a in jobs]
    else:
        import threading
        runners = [threading.Thread(target=f, args=a) for f, a in jobs]
    for runner in runners:
        runner.start()
    reports = [queue.get(timeout=900) for _ in runners]
    for runner in runners:
        runner.join()
    completed = [task_id for kind, _, _, ids in reports if kind == "work" for task_id in ids]
    return {"cases": cases, "sweep_results": sum(n for kind, n, _, _ in reports if kind == "sweep"),
            "tasks_completed": len(completed),
            "completions_refused": sum(r for kind, _, r, _ in reports if kind == "work"),
            **contention_counts(store, prefix, completed)}


def contention_counts(store: Store, prefix: str, completed: list[str]) -> dict[str, int]:
    """Double escalations and lost updates among the cases whose id starts with `prefix`."""
    like = {"p": f"{prefix}%"}
    with store.engine.connect() as conn:
        double_rows = conn.execute(text(
            "SELECT count(*) FROM (SELECT 1 FROM escalations WHERE case_id LIKE :p "
            "GROUP BY case_id, clock_id, level HAVING count(*) > 1) d"), like).scalar_one()
        escalated = conn.execute(text("SELECT count(*) FROM escalations WHERE case_id LIKE :p"), like).scalar_one()
        double_events = conn.execute(text(
            "SELECT count(*) FROM (SELECT 1 FROM events WHERE case_id LIKE :p AND type = 'escalated' "
            "GROUP BY case_id, payload HAVING count(*) > 1) d"), like).scalar_one()
        last_seq: dict[str, int] = dict(conn.execute(text(
            "SELECT case_id, max(seq) FROM events WHERE case_id LIKE :p GROUP BY case_id"), like).tuples().all())
        states = conn.execute(text("SELECT id, state FROM cases WHERE id LIKE :p"), like).all()
        task_status: dict[str, str] = dict(
            conn.execute(text("SELECT id, status FROM tasks WHERE case_id LIKE :p"), like).tuples().all())
    stale = len([case_id for case_id, state in states
                 if case_id in last_seq and json.loads(state)["seq"] != last_seq[case_id]])
    lost = len([task_id for task_id in completed if task_status.get(task_id) != "completed"])
    return {"escalations": int(escalated), "double_escalations": int(double_rows) + int(double_events),
            "lost_updates": stale + lost}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _backend_cpu(store: Store) -> dict[int, float] | None:
    """CPU seconds used so far by each server process of the bench's database, when the server runs on
    this machine (its /proc is readable); None otherwise. The pass's server CPU is the difference."""
    if store.dialect != "postgresql":
        return None
    with store.engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars().all()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return cpu


def _counts(value: str) -> list[int]:
    """'100000,1000000' -> [100000, 1000000]."""
    try:
        counts = [int(part.replace("_", "")) for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a comma-separated list of whole numbers") from None
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(f"'{value}': counts must be 0 or more")
    return counts


def time_pass(engine: Engine, store: Store, open_n: int, due_n: int, fill_seconds: float) -> dict[str, Any]:
    """One timed sweep pass over the store as filled; its figures (wall, process CPU, server CPU)."""
    notifier = engine.notifier
    assert isinstance(notifier, CountingNotifier)
    notifier.sent = 0
    load_before = _loadavg()
    server_before = _backend_cpu(store)
    cpu = time.process_time()
    started = time.perf_counter()
    results = engine.sweep(limit=due_n + 1_000)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    server_after = _backend_cpu(store)
    server_cpu = (None if server_before is None or server_after is None else
                  round(sum(v - server_before.get(pid, 0.0) for pid, v in server_after.items()), 3))
    left = _due_count(store, NOW)
    swept = len([case_id for case_id, _ in results if case_id.startswith("DUE-")])
    events = sum(len(entries) for _, entries in results)
    print(f"open {open_n:>9,} due {due_n:>7,}: pass {seconds:.3f} s wall, {cpu_seconds:.3f} s CPU here, "
          f"{server_cpu if server_cpu is not None else '?'} s CPU in the server; swept {swept:,} "
          f"(+{len(results) - swept} scheduled starts), {events:,} events, {notifier.sent:,} notifications, "
          f"still due {left}; load average {load_before}")
    return {"open": open_n, "due": due_n, "fill_seconds": round(fill_seconds, 2), "cases_swept": swept,
            "events": events, "notifications": notifier.sent, "still_due": left, "pass_seconds": round(seconds, 3),
            "pass_cpu_seconds": round(cpu_seconds, 3), "pass_server_cpu_seconds": server_cpu,
            "load_average": load_before}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="postgresql://... or sqlite:///file.db")
    parser.add_argument("--open", type=_counts, default=[100_000], metavar="N[,N...]",
                        help="open cases with nothing due; several (ascending) to compare passes as the store grows")
    parser.add_argument("--due", type=_counts, default=[1_000], metavar="M[,M...]",
                        help="cases with an SLA threshold or timer due; several: one pass for each, at each --open")
    parser.add_argument("--schema", default="svcflow_bench_sweep", help="PostgreSQL schema (recreated)")
    parser.add_argument("--contend", type=int, default=0, metavar="CASES",
                        help="then 2 sweeps + 4 workers on CASES fresh due cases; count double escalations and "
                             "lost updates")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the open cases of an earlier run in --schema (filling a million takes minutes); "
                             "only the due ones are loaded again")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here (e.g. bench/results/sweep.json)")
    args = parser.parse_args(argv)

    url = schema_url(args.database, args.schema, args.reuse)
    due_templates, open_templates = templates()
    store = Store(url)
    kept = keep_open_cases(store) if args.reuse else 0
    if kept > min(args.open):
        raise SystemExit(f"--reuse: the schema holds {kept:,} open cases, more than --open {min(args.open):,}")
    print(f"templates: {len(due_templates)} due and {len(open_templates)} open, of "
          f"{len({t.process_id for t in due_templates + open_templates})} processes")
    engine = Engine(store, ProcessLibrary.from_dir(), clock=FakeClock(NOW), notifier=CountingNotifier())
    fill(store, due_templates, open_templates, 0, 200, due_prefix="WARM")
    engine.sweep(limit=1_000)  # warm, as a sweeper that has been running is: definitions compiled, pool open
    passes: list[dict[str, Any]] = []
    for open_n in sorted(args.open):
        started = time.perf_counter()
        rows = fill(store, due_templates, open_templates, open_n - kept, 0, open_from=kept)
        print(f"filled {open_n - kept:,} open cases ({rows}) in {time.perf_counter() - started:.1f} s")
        kept = open_n
        for due_n in args.due:
            keep_open_cases(store)
            started = time.perf_counter()
            fill(store, due_templates, open_templates, 0, due_n)
            passes.append(time_pass(engine, store, open_n, due_n, time.perf_counter() - started))
    last = passes[-1]
    if len(passes) > 1:
        print("one pass, by open and due cases (wall s / CPU s here / CPU s in the server):")
        for figures in passes:
            print(f"  open {figures['open']:>9,}  due {figures['due']:>7,}  {figures['pass_seconds']:.3f} / "
                  f"{figures['pass_cpu_seconds']:.3f} / {figures['pass_server_cpu_seconds']}")
    summary: dict[str, Any] = {
        "benchmark": "one Engine.sweep pass", "database": store.dialect, **last,
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if len(passes) > 1:
        summary["passes"] = passes
    if args.contend:
        counts = contend(url, due_templates, open_templates, args.contend)
        summary["contention"] = counts
        print("contention: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    store.dispose()
    print(f"sweep pass: {last['pass_seconds']:.3f} s")
    return 0 if all(p["still_due"] == 0 and p["cases_swept"] == p["due"] for p in passes) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""What the HTTP layer costs: task completions per second through `POST /api/tasks/{id}/complete`
on a real `svcflow server` process, against `Engine.complete` called directly in the same run.

Run: .venv/bin/python bench/bench_api.py [--tasks 300] [--repeat 3] [--output bench/results/api.json]

Not a unit test. Goal: the HTTP layer costs under 2x the direct call (ratio < 2). Both sides use a
SQLite file in the same temporary directory and the same one-step definition; the HTTP side pays
for the request, token check, the access rules and the JSON answer, sequentially over one
keep-alive connection (a CRM calling one request at a time) from the standard library's
http.client, so the client's own cost stays small.

Two measures: wall time, and CPU time (the server process's plus the client's, against the
direct caller's). On a shared, loaded machine the wall-time ratio mostly measures waiting for a
core twice per request (client and server are two processes); CPU time is what the layer costs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.access import library_roles  # noqa: E402
from engine.definition.library import ProcessLibrary  # noqa: E402
from engine.run.runtime import Engine  # noqa: E402
from engine.store.directory import Directory  # noqa: E402
from tests.server_harness import cpu_seconds, server_process  # noqa: E402

DEFINITION = """\
id: bench_api
version: 1
name: {zh: 接口基准, en: API benchmark}
lanes:
  - {id: agent, name: {zh: 坐席, en: Agent}}
data:
  tier: {type: enum, choices: [gold, standard], default: standard}
nodes:
  - {id: start, kind: start}
  - id: handle
    kind: human
    lane: agent
    sla: {target: 4h}
    form:
      - {id: accepted, type: boolean, required: true, label: {zh: 客户接受, en: Accepted}}
      - {id: note, type: text, label: {zh: 备注, en: Note}}
  - {id: done, kind: end}
edges:
  - {from: start, to: handle}
  - {from: handle, to: done}
"""
FORM = {"accepted": True, "note": "已处理"}


def open_tasks(engine: Engine, count: int) -> list[str]:
    """Start `count` cases; each waits at its one human task (not timed)."""
    tasks = []
    for _ in range(count):
        case_id = engine.start("bench_api", {"tier": "gold"})
        tasks.append(next(iter(engine.store.load_case(case_id)[0].tasks)))
    return tasks


def direct_round(workdir: Path, process_dir: Path, count: int, index: int) -> tuple[float, float]:
    """(wall, CPU) seconds for `count` direct completions."""
    engine = Engine.from_settings(f"sqlite:///{workdir / f'direct-{index}.db'}", process_dir)
    tasks = open_tasks(engine, count)
    began, cpu = time.perf_counter(), time.process_time()
    for task_id in tasks:
        engine.complete(task_id, actor="li", role="agent", data=FORM)
    elapsed, cpu_used = time.perf_counter() - began, time.process_time() - cpu
    engine.store.dispose()
    return elapsed, cpu_used


def http_round(engine: Engine, base: str, server_pid: int, secret: str, count: int) -> tuple[float, float, float]:
    """(wall, CPU of the server, CPU of the client) seconds for `count` completions over HTTP.

    Kept apart because they answer two questions: what the server spends per completion (the
    HTTP layer a service desk runs) and what the calling system pays on top (a CRM's client)."""
    tasks = open_tasks(engine, count)
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    body = json.dumps({"data": FORM}, ensure_ascii=False).encode("utf-8")
    try:
        connection.request("GET", "/api/me", headers=headers)  # connect before timing
        connection.getresponse().read()
        began, cpu, server_cpu = time.perf_counter(), time.process_time(), cpu_seconds(server_pid)
        for task_id in tasks:
            connection.request("POST", f"/api/tasks/{task_id}/complete", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"completion refused: {response.status} {answer!r}")
        elapsed = time.perf_counter() - began
        return elapsed, cpu_seconds(server_pid) - server_cpu, time.process_time() - cpu
    finally:
        connection.close()


def run_benchmark(count: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        workdir = Path(tmp)
        process_dir = workdir / "process_defs"
        process_dir.mkdir()
        (process_dir / "bench_api.yaml").write_text(DEFINITION, encoding="utf-8")
        url = f"sqlite:///{workdir / 'http.db'}"
        engine = Engine.from_settings(url, process_dir)
        directory = Directory(engine.store, library_roles(ProcessLibrary.from_dir(process_dir)))
        _, secret = directory.create_token("bench", ["agent"], engine.clock.now())
        direct: list[tuple[float, float]] = []
        http: list[tuple[float, float, float]] = []
        with server_process(url, workdir, SVCFLOW_PROCESS_DIR=str(process_dir)) as (base, process):
            http_round(engine, base, process.pid, secret, min(count, 20))  # warm-up: imports, first connection
            direct_round(workdir, process_dir, min(count, 20), -1)
            for index in range(repeat):
                direct.append(direct_round(workdir, process_dir, count, index))
                http.append(http_round(engine, base, process.pid, secret, count))
        engine.store.dispose()
    direct_s, http_s = statistics.median(d[0] for d in direct), statistics.median(h[0] for h in http)
    direct_cpu, http_cpu = statistics.median(d[1] for d in direct), statistics.median(h[1] + h[2] for h in http)
    server_cpu = statistics.median(h[1] for h in http)
    return {
        "tasks": count, "repeat": repeat,
        "direct_completions_per_s": round(count / direct_s, 1),
        "http_completions_per_s": round(count / http_s, 1),
        "direct_ms_per_completion": round(1000 * direct_s / count, 3),
        "http_ms_per_completion": round(1000 * http_s / count, 3),
        "http_over_direct": round(http_s / direct_s, 2),
        "direct_cpu_ms_per_completion": round(1000 * direct_cpu / count, 3),
        "http_cpu_ms_per_completion": round(1000 * http_cpu / count, 3),
        "http_over_direct_cpu": round(http_cpu / direct_cpu, 2),
        "server_cpu_ms_per_completion": round(1000 * server_cpu / count, 3),
        "server_over_direct_cpu": round(server_cpu / direct_cpu, 2),
        "goal": "http_over_direct < 2",
        "load_average": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    results = run_benchmark(args.tasks, args.repeat)
    print(f"Engine.complete direct: {results['direct_completions_per_s']:>8} completions/s "
          f"({results['direct_ms_per_completion']} ms each)")
    print(f"HTTP API (svcflow server): {results['http_completions_per_s']:>5} completions/s "
          f"({results['http_ms_per_completion']} ms each)")
    print(f"HTTP / direct: {results['http_over_direct']}x wall time (goal < 2); CPU "
          f"{results['http_cpu_ms_per_completion']} vs {results['direct_cpu_ms_per_completion']} ms: "
          f"{results['http_over_direct_cpu']}x with the client, {results['server_over_direct_cpu']}x for the server "
          f"alone ({results['server_cpu_ms_per_completion']} ms; load average {results['load_average']:.1f} on "
          f"{results['cpus']} CPUs)")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

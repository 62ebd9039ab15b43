"""`svcflow demo`: the whole system on one machine, in two minutes, for a newcomer.

A local Prefect server, the served case-flow and sweep deployments, a case of every process
(several tiers, a major complaint, a repair, a retention), simulated operators and customers on
an accelerated clock (one business hour per second by default), so warnings, breaches and
escalations really happen; then flowcharts, a review report and the weekly report on disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.errors import InputError

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEMO_MARKER = ".svcflow-demo-output"
"""Written into --out by the demo: only a directory holding it is ever emptied by a later demo."""


def virtual_start(today: datetime) -> datetime:
    """The Monday 09:00 (Shanghai) of the current week: business hours from the first second."""
    local = today.astimezone(SHANGHAI)
    monday = (local - timedelta(days=local.weekday())).date()
    return datetime(monday.year, monday.month, monday.day, 9, 0, tzinfo=SHANGHAI)


def _free_port(preferred: int) -> int:
    import socket

    for port in (preferred, *range(preferred + 1, preferred + 50)):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port near {preferred}")


def _wait_for_deployment(name: str, timeout: float = 120.0) -> None:
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            try:
                client.read_deployment_by_name(name)
                return
            except Exception:
                time.sleep(1)
    raise RuntimeError(f"the deployment {name} did not appear within {timeout:.0f} s")


def claim_output_dir(out_dir: Path) -> None:
    """Empty --out only if an earlier demo made it; refuse anything else that holds files.

    `--out ~/work` once deleted the user's directory recursively: now a directory is emptied only
    when it holds the demo's marker file, and an empty or missing one is used as it is.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file, not a directory", hint="choose a new directory for the demo")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / DEMO_MARKER).is_file() and not _left_by_an_older_demo(out_dir):
            raise InputError(f"--out {out_dir} is not empty and was not made by the demo; nothing was deleted",
                             hint="choose a new or empty directory, e.g. --out demo-output")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DEMO_MARKER).write_text("made by `svcflow demo`; the next demo may empty this directory\n",
                                       encoding="utf-8")


def _left_by_an_older_demo(out_dir: Path) -> bool:
    """Demos before the marker left their store and Prefect home: names no one else uses together."""
    return (out_dir / "svcflow-demo.db").is_file() and (out_dir / "prefect-home").is_dir()


def prepare_environment(out_dir: Path, sweep_seconds: int) -> None:
    """Settings every demo process shares: the store and a private Prefect home."""
    claim_output_dir(out_dir)
    os.environ.update({
        "SVCFLOW_DATABASE_URL": f"sqlite:///{(out_dir / 'svcflow-demo.db').resolve()}",
        "SVCFLOW_SWEEP_INTERVAL_SECONDS": str(sweep_seconds),
        "SVCFLOW_PAUSE_POLL_SECONDS": "1",
        "PREFECT_HOME": str((out_dir / "prefect-home").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # a short interval schedule would otherwise be expanded 100 runs ahead into the SQLite server
        "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "5",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "20",
        "PREFECT_UI_ENABLED": "true",
    })


def start_virtual_clock(factor: float) -> str:
    """The accelerated clock, shared with the served flows through SVCFLOW_CLOCK; starts now."""

    from engine.time.clock import AcceleratedClock

    now = datetime.now(UTC)
    clock = AcceleratedClock(virtual_start(now), factor, origin=now)
    os.environ["SVCFLOW_CLOCK"] = clock.spec()
    return clock.spec()


def run_demo(*, seconds: int = 100, factor: float = 3600.0, port: int = 4200, out_dir: Path = Path("demo-output"),
             keep: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo; returns what happened (counts and paths) for the closing summary and tests."""
    prepare_environment(out_dir, sweep_seconds=10)
    from svcflow.commands_prefect import local_prefect_server

    port = _free_port(port)
    log(f"starting a local Prefect server (SQLite, {out_dir}/prefect-home) on port {port} ...")
    with local_prefect_server(port) as api_url:
        os.environ["PREFECT_API_URL"] = api_url
        start_virtual_clock(factor)
        serve = _start_serve(out_dir)
        # this process's own runs (the sweep) log to the console only, so stopping the server is quiet
        os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
        try:
            summary = _drive(out_dir, api_url, seconds, log)
            summary.update(_outputs(out_dir, log))
            _print_summary(summary, api_url, out_dir, keep, log)
            if keep:
                log("--keep: the Prefect server, the served case flows and the sweep keep running on the demo's "
                    "clock; the simulated operators have stopped, so the waiting runs are yours: open one in the "
                    "UI and press Resume. Ctrl-C stops everything.")
                serve = keep_serving(serve, out_dir, log)
        finally:
            _stop(serve)
    return summary


def _start_serve(out_dir: Path) -> subprocess.Popen[bytes]:
    """`svcflow serve` (case flows and the sweep) with the demo's settings and clock."""
    env = {**os.environ, "PREFECT_LOGGING_TO_API_ENABLED": "true"}  # the served runs' logs belong in the UI
    return subprocess.Popen([sys.executable, "-m", "svcflow", "serve", "--limit", "8"], env=env,
                            stdout=open(out_dir / "serve.log", "a"), stderr=subprocess.STDOUT)


def _stop(serve: subprocess.Popen[bytes]) -> None:
    if serve.poll() is not None:
        return
    serve.send_signal(signal.SIGINT)
    try:
        serve.wait(20)
    except subprocess.TimeoutExpired:
        serve.kill()


def keep_serving(serve: subprocess.Popen[bytes], out_dir: Path, log: Callable[[str], None],
                 check_seconds: float = 5.0, until: Callable[[], bool] = lambda: False) -> subprocess.Popen[bytes]:
    """Keep `svcflow serve` up until Ctrl-C (or `until()`): a serve that died is started again (it
    takes over the runs the dead one left). Returns the serve process now running."""
    try:
        while not until():
            if serve.poll() is not None:
                log(f"svcflow serve stopped (exit {serve.returncode}); starting it again (see {out_dir}/serve.log)")
                serve = _start_serve(out_dir)
            time.sleep(check_seconds)
    except KeyboardInterrupt:
        log("stopping ...")
    return serve


def _drive(out_dir: Path, api_url: str, seconds: int, log: Callable[[str], None]) -> dict[str, Any]:
    from engine.time.clock import clock_from_spec
    from engine.run.runtime import Engine
    from engine.settings import get_settings
    from flows.case_flow import hand_over, trigger_deployment_run
    from flows.human import resume_runs_for_case
    from flows.runtime import DEFER_ALL, FlowEngine, configure, segment
    from flows.settings import get_flow_settings
    from svcflow.demo_operators import Operators

    settings = get_settings()
    engine = Engine.from_settings(settings.database_url, settings.process_dir, clock=clock_from_spec(settings.clock))
    configure(engine)
    log("waiting for the served deployments ...")
    _wait_for_deployment(get_flow_settings().case_deployment)
    flow_engine = FlowEngine.wrap(engine)

    def complete_in_case_run(task_id: str, **kwargs: Any) -> Any:
        """Staff complete here; the steps that releases run in the case's served flow run, as tasks."""
        with segment(DEFER_ALL):
            state = flow_engine.complete(task_id, **kwargs)
        hand_over(state, task_id)
        return state

    operators = Operators(engine, log=lambda line: log(f"  {engine.clock.now().astimezone(SHANGHAI):%a %H:%M}  {line}"),
                          on_message=resume_runs_for_case, complete=complete_in_case_run)
    case_ids = operators.start_samples()
    flow_settings = get_flow_settings()
    for case_id in case_ids:
        state, _ = engine.store.load_case(case_id)
        trigger_deployment_run(case_id, flow_settings, state)
        time.sleep(0.3)  # the demo's Prefect server is on SQLite: spread the writes
    log(f"{len(case_ids)} cases started; operators at work for {seconds} s "
        f"(virtual time runs {operators_speed(settings.clock)})")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        operators.work()
        time.sleep(1.0)
    events = engine.store.events()
    counts: dict[str, int] = {}
    for event in events:
        counts[event.type] = counts.get(event.type, 0) + 1
    cases = engine.store.cases()
    return {"cases": len(cases), "completed": sum(1 for c in cases if c["status"] == "completed"),
            "warned": counts.get("sla_warned", 0), "breached": counts.get("sla_breached", 0),
            "escalated": counts.get("escalated", 0), "tasks_completed": counts.get("task_completed", 0),
            "case_ids": [c["id"] for c in cases]}


def operators_speed(spec: str) -> str:
    factor = float(spec.rsplit("|", 1)[-1]) if spec.startswith("accelerated") else 1.0
    return f"{factor / 3600:g} h per second" if factor >= 3600 else f"{factor:g}x"


def _outputs(out_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Flowcharts of every process, a case overlay, the review report and the weekly report."""
    from engine.time.clock import clock_from_spec
    from engine.run.runtime import Engine
    from engine.settings import get_settings

    settings = get_settings()
    engine = Engine.from_settings(settings.database_url, settings.process_dir, clock=clock_from_spec(settings.clock))
    produced: dict[str, Any] = {}
    try:
        from visualize.flowchart import flowchart_dot, render
        from visualize.overlay import case_overlay

        charts = out_dir / "flowcharts"
        charts.mkdir(exist_ok=True)
        for process_id in engine.library.process_ids():
            graph = engine.library.get(process_id)
            (charts / f"{process_id}.svg").write_bytes(render(flowchart_dot(graph), "svg"))
        complaint = next((c for c in engine.store.cases(process_id="complaint_handling")), None)
        if complaint is not None:
            view = engine.case(complaint["id"])
            graph = engine.graph_for(view.state)
            overlay = case_overlay(graph, view, engine.clock.now())
            (charts / f"case-{complaint['id']}.svg").write_bytes(render(flowchart_dot(graph, overlay), "svg"))
        produced["flowcharts"] = str(charts)
    except Exception as exc:  # the demo still tells what it did
        log(f"(flowcharts not rendered: {exc})")
    week = engine.clock.now().astimezone(SHANGHAI).isocalendar()
    commands = {
        "review": ["review", "complaint_handling", "--out", str(out_dir / "review-complaint_handling.html")],
        "weekly": ["report", "weekly", "--week", f"{week.year}-W{week.week:02d}", "--out-dir", str(out_dir)],
    }
    for name, args in commands.items():
        result = subprocess.run([sys.executable, "-m", "svcflow", *args], env=os.environ.copy(),
                                capture_output=True, text=True, timeout=300)
        if result.returncode == 0:
            produced[name] = result.stdout.strip().splitlines()[-1:] if result.stdout.strip() else []
        else:
            log(f"({name} report not written: {result.stderr.strip()[-300:]})")
    return produced


def _print_summary(summary: dict[str, Any], api_url: str, out_dir: Path, keep: bool,
                   log: Callable[[str], None]) -> None:
    ui = api_url.removesuffix("/api")
    log("")
    log("=" * 78)
    log(f"svcflow demo: {summary['completed']} of {summary['cases']} cases closed end to end; "
        f"{summary['tasks_completed']} tasks done by simulated operators in business hours;")
    log(f"SLA: {summary['warned']} warnings, {summary['breached']} breaches, {summary['escalated']} escalations.")
    log("")
    log(f"Prefect UI: {ui}" + ("" if keep else "  (run `./scripts/demo.sh --keep` to keep it and the served flows up)"))
    log("  Runs: flow runs named <process>-<case id>, tagged with the process, tier:<tier> and `major`;")
    log("        human steps wait as Suspended/Paused runs — open one and press Resume to see its form.")
    log("  Artifacts: case-<id> (data, current step, SLA clocks, escalations, flowchart), sweep tables.")
    log("  Events: svcflow.sla.warned / svcflow.sla.breached / svcflow.case.escalated.")
    log(f"Outputs in {out_dir}/: flowcharts/*.svg, review-complaint_handling.html (+ .png), weekly-*.md/.html,")
    log(f"  the store svcflow-demo.db (try: SVCFLOW_DATABASE_URL=sqlite:///{out_dir}/svcflow-demo.db svcflow cases)")
    log("=" * 78)

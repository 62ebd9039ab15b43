"""`svcflow serve` and `svcflow run`: the Prefect side of the command line.

Kept apart from svcflow/cli.py so the rest of the CLI never pays Prefect's import time; the
lead wires it in with `register(app)` after the other commands are defined.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

DEFAULT_PORT = 4200


def wait_until_healthy(api_url: str, timeout: float = 90.0) -> None:
    """A fresh `prefect server start` needs ~10 s (migrations, services) before it answers."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"the Prefect server at {api_url} did not become healthy within {timeout:.0f} s: {last}")


def server_environment(api_url: str) -> dict[str, str]:
    """The server's environment: its UI talks to the API on the port actually used, whatever an
    earlier setting (or the default 4200) says — otherwise the UI opens and "Can't connect"."""
    return {**os.environ, "PREFECT_UI_API_URL": api_url, "PREFECT_SERVER_UI_API_URL": api_url}


@contextmanager
def local_prefect_server(port: int = DEFAULT_PORT, host: str = "127.0.0.1", timeout: float = 90.0) -> Iterator[str]:
    """`prefect server start` as a child process for as long as the context lasts; yields its API URL."""
    api_url = f"http://{host}:{port}/api"
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host,
                                "--port", str(port)], env=server_environment(api_url),
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(api_url, timeout)
        yield api_url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def serve_deployments(*, sweep: bool = True, sweep_interval: int | None = None, limit: int | None = None) -> None:
    """Serve the case-flow deployment (continues cases, waits for people by suspending) and the sweep."""
    from prefect import serve

    from flows.case_flow import run_case
    from flows.sweep import sweep_deployment

    deployments: list[Any] = [run_case.to_deployment(
        name="run-case", description="Run or continue one case: `run_case(case_id)`.")]
    if sweep:
        deployments.append(sweep_deployment(sweep_interval))
    from flows.settings import get_flow_settings

    settings = get_flow_settings()
    if settings.reconcile:
        take_over_runs()
    serve(*deployments, limit=limit or settings.serve_limit)


def take_over_runs() -> dict[str, int]:
    """Before serving: the runs a killed `svcflow serve` left Running / Pending are run again (they
    may hold a form submission Prefect accepted), and waiting cases without a run get one."""
    from flows.runtime import get_engine
    from flows.waiting import reconcile_waiting_runs

    try:
        counts = reconcile_waiting_runs(get_engine(), takeover=True)
    except Exception as exc:  # serving matters more; the sweep reconciles again
        print(f"svcflow serve: could not reconcile waiting runs before serving: {exc}", file=sys.stderr)
        return {}
    if any(v for k, v in counts.items() if k != "healthy"):
        print(f"svcflow serve: took over waiting runs: {counts}", file=sys.stderr)
    return counts


def register(app: typer.Typer) -> None:
    """Add `serve` and `run` to the svcflow app."""
    from svcflow.cli import _input, friendly, out, shown

    @app.command("serve")
    @friendly
    def serve_command(
        sweep_interval: int | None = typer.Option(None, "--sweep-interval",
                                                     help="seconds between sweeps (default: SVCFLOW_SWEEP_INTERVAL_SECONDS)"),
        no_sweep: bool = typer.Option(False, "--no-sweep", help="serve only the case flow"),
        port: int = typer.Option(DEFAULT_PORT, "--port", help="port of the local Prefect server, if one is started"),
        limit: int | None = typer.Option(None, "--limit", help="most flow runs at once (default: SVCFLOW_SERVE_LIMIT, 4)"),
    ) -> None:
        """Serve case flows and the escalation sweep against PREFECT_API_URL (or a local server it starts)."""
        from engine.settings import get_settings
        from flows.notify import webhook_notifier_from_settings

        webhook_notifier_from_settings(get_settings())  # a webhook without its secret is refused now, not mid-sweep
        if os.environ.get("PREFECT_API_URL"):
            out.print(f"serving against {os.environ['PREFECT_API_URL']}")
            serve_deployments(sweep=not no_sweep, sweep_interval=sweep_interval, limit=limit)
            return
        out.print(f"PREFECT_API_URL is not set: starting a local Prefect server on port {port} ...")
        with local_prefect_server(port) as api_url:
            os.environ["PREFECT_API_URL"] = api_url
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                out.print(f"Prefect UI: {api_url.removesuffix('/api')}")
                serve_deployments(sweep=not no_sweep, sweep_interval=sweep_interval, limit=limit)

    @app.command("run")
    @friendly
    def run_command(
        case_id: str | None = typer.Argument(None, help="the case to continue"),
        process: str | None = typer.Option(None, "--process", help="start a new case of this process instead"),
        data: Path | None = typer.Option(None, "--data", help="JSON file with the new case's data"),
        sets: list[str] | None = typer.Option(None, "--set", help="key=value (repeatable)"),
        actor: str | None = typer.Option(None, "--as", help="who starts it"),
        no_wait: bool = typer.Option(False, "--no-wait", help="stop at the first human step instead of pausing"),
    ) -> None:
        """Run one case's flow locally: its automatic steps as tasks, waiting (paused) at human steps."""
        from engine.errors import InputError
        from flows.case_flow import continue_case, start_case

        if (case_id is None) == (process is None):
            raise InputError("give a case id, or --process to start a new case", hint="svcflow run CASE_ID")
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            out.print("[yellow]PREFECT_API_URL is not set: the run goes to a temporary Prefect server[/yellow]")
        if process is not None:
            summary = start_case(process, _input(data, sets), actor=actor, wait_for_humans=not no_wait)
        else:
            assert case_id is not None
            summary = continue_case(case_id, wait_for_humans=not no_wait)
        sys.stdout.write(f"{summary['case_id']}\n")
        waiting = ", ".join(summary.get("at") or []) or "-"
        out.print(shown(f"case {summary['case_id']} is {summary['status']}"
                        + (f" ({summary['outcome']})" if summary.get("outcome") else "")
                        + f"; waiting at: {waiting}; open tasks: {', '.join(summary.get('open_tasks') or []) or '-'}"))


__all__ = ["local_prefect_server", "register", "serve_deployments", "server_environment", "take_over_runs",
           "wait_until_healthy"]

"""`svcflow deploy` and `svcflow reconcile`: running svcflow on a Prefect work pool.

`deploy` puts the case flow and the sweep on a process work pool (workers anywhere run them);
`reconcile` repairs what dead processes leave behind (see flows/reconcile.py). Kept apart from
svcflow/cli.py so the rest of the CLI never pays Prefect's import time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer


def _require_api() -> str:
    from engine.errors import InputError

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
    if not url:
        raise InputError("PREFECT_API_URL is not set: which Prefect server?",
                         hint="export PREFECT_API_URL=http://prefect-host:4200/api (or source .prefect-stack/NAME/env)")
    return str(url)


def register(app: typer.Typer) -> None:
    """Add `deploy` and `reconcile` to the svcflow app."""
    from svcflow.cli import friendly, out, shown

    @app.command("deploy")
    @friendly
    def deploy_command(
        pool: str = typer.Option("svcflow", "--pool", help="process work pool (created if missing)"),
        sweep_interval: int | None = typer.Option(None, "--sweep-interval",
                                                     help="seconds between sweeps (default: SVCFLOW_SWEEP_INTERVAL_SECONDS)"),
        no_sweep: bool = typer.Option(False, "--no-sweep", help="deploy only the case flow"),
        code_dir: Path | None = typer.Option(None, "--code-dir", help="checkout the workers run from (default: this one)"),
        pool_limit: int | None = typer.Option(None, "--pool-limit", help="most flow runs at once on the pool"),
    ) -> None:
        """Deploy the case flow and the escalation sweep to a process work pool (start workers with
        `prefect worker start --pool POOL`)."""
        from flows.deploy import deploy_to_pool

        api = _require_api()
        env = {k: v for k, v in os.environ.items() if k.startswith("SVCFLOW_")}
        done = deploy_to_pool(pool, pool_limit=pool_limit, code_dir=code_dir, sweep=not no_sweep, sweep_interval=sweep_interval, env=env)
        out.print(shown(f"deployed {done.case_deployment}" + (f" and {done.sweep_deployment}" if done.sweep_deployment
                                                               else "") + f" to work pool {done.pool} at {api}"))

    @app.command("reconcile")
    @friendly
    def reconcile_command(
        stale_after: float = typer.Option(600.0, "--stale-after",
                                          help="a Running run with no heartbeat or state change for this many "
                                               "seconds is dead (keep it above PREFECT_FLOWS_HEARTBEAT_FREQUENCY)"),
        grace: float = typer.Option(30.0, "--grace", help="leave cases changed this recently (seconds) alone"),
        local: bool = typer.Option(False, "--local", help="also treat runs no process on this machine carries "
                                                          "as dead (run beside the workers)"),
        forms: bool = typer.Option(False, "--forms", help="give cases waiting for people a run with the form"),
        dry_run: bool = typer.Option(False, "--dry-run", help="report, change nothing"),
        every: float | None = typer.Option(None, "--every", help="repeat every N seconds until interrupted"),
        as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    ) -> None:
        """Re-run cases whose flow runs died, and mark dead runs so none stays Running for ever."""
        from flows.reconcile import reconcile
        from flows.runtime import get_engine

        _require_api()
        engine = get_engine()
        while True:
            result = reconcile(engine, stale_after=stale_after, grace=grace, local=local, forms=forms,
                               dry_run=dry_run)
            if as_json:
                sys.stdout.write(json.dumps(result.as_dict()) + "\n")
            else:
                out.print(shown(
                    f"{result.checked_runs} live run(s), {result.checked_cases} running case(s): "
                    f"{len(result.rescheduled)} dead run(s) rescheduled, {len(result.crashed)} marked crashed, "
                    f"{len(result.woken)} paused run(s) woken, {len(result.triggered)} case(s) given a new run, "
                    f"{len(result.cancelled)} paused duplicate(s) cancelled"))
                for label, items in (("rescheduled", result.rescheduled), ("crashed", result.crashed),
                                     ("woken", result.woken), ("triggered", result.triggered),
                                     ("cancelled", result.cancelled)):
                    if items:
                        out.print(shown(f"  {label}: {', '.join(items)}"))
            if every is None:
                return
            time.sleep(every)


__all__ = ["register"]

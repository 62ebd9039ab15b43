"""`svcflow export bpmn|log` and `svcflow import bpmn`: interchange with modelers and process-mining tools.

Registered by svcflow/cli.py. Export only reads definitions and the event log; import writes a
definition file and validates it, printing every element it could not carry over with its line.
"""

from __future__ import annotations

import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from zoneinfo import ZoneInfo

import typer


class LogFormat(str, Enum):
    xes = "xes"
    ocel = "ocel"
    csv = "csv"


def register(app: typer.Typer) -> None:
    """Add the `export` and `import` command groups to the svcflow app."""
    from svcflow.cli import err, friendly, out

    export_app = typer.Typer(no_args_is_help=True, help="Export a process as BPMN 2.0, or the event log as "
                                                         "XES / OCEL 2.0 / CSV.")
    import_app = typer.Typer(no_args_is_help=True, help="Import a BPMN 2.0 file as a svcflow definition.")
    app.add_typer(export_app, name="export")
    app.add_typer(import_app, name="import")

    @export_app.command("bpmn")
    @friendly
    def export_bpmn_command(
        process: str = typer.Argument(..., help="process id"),
        output: Path | None = typer.Option(None, "--out", "-o", help="file to write (default: <process>.bpmn)"),
    ) -> None:
        """BPMN 2.0 XML with diagram (lanes, shapes, edges); SLAs, ladders and clocks in the svc: extension."""
        from engine.definition.library import ProcessLibrary
        from engine.settings import get_settings
        from interop.bpmn_export import export_bpmn

        graph = ProcessLibrary.from_dir(get_settings().process_dir).get(process)
        target = output or Path.cwd() / f"{process}.bpmn"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(export_bpmn(graph))
        sys.stdout.write(f"{target}\n")

    @export_app.command("log")
    @friendly
    def export_log_command(
        fmt: LogFormat = typer.Option(..., "--format", "-f", help="xes, ocel or csv"),
        output: Path = typer.Option(..., "--out", "-o", help="file to write"),
        process: str | None = typer.Option(None, "--process", help="only this process's cases"),
        since: str | None = typer.Option(None, "--since", help="only cases started on or after this date "
                                                               "(YYYY-MM-DD, display time zone)"),
    ) -> None:
        """The store's event log for process mining, read and written in batches (any size of log)."""
        from engine.errors import InputError
        from engine.settings import get_settings
        from engine.store.sql import Store
        from interop.eventlog import EXPORT_TYPES, cases, read_store, store_versions

        settings = get_settings()
        start: datetime | None = None
        if since is not None:
            try:
                start = datetime.fromisoformat(since)
            except ValueError:
                raise InputError(f"cannot read --since {since!r} as a date", hint="write e.g. 2025-09-01") from None
            if start.tzinfo is None:
                start = start.replace(tzinfo=ZoneInfo(settings.display_timezone))
        store = Store(settings.database_url)
        versions = store_versions(store)
        traces = cases(read_store(store, process_id=process, since=start, types=EXPORT_TYPES),
                       lambda case_id, _process: versions.get(case_id), since=start)
        output.parent.mkdir(parents=True, exist_ok=True)
        if fmt is LogFormat.xes:
            from interop.xes import write_xes

            summary = f"{write_xes(traces, output)} traces"
        elif fmt is LogFormat.ocel:
            from interop.ocel import write_ocel

            events, objects = write_ocel(traces, output)
            summary = f"{events} events, {objects} objects"
        else:
            from interop.csv_log import write_csv

            summary = f"{write_csv(traces, output)} rows"
        out.print(f"{output}: {summary}", highlight=False)

    @import_app.command("bpmn")
    @friendly
    def import_bpmn_command(
        source: Path = typer.Argument(..., help="a .bpmn file (Camunda Modeler, bpmn.io, svcflow export)"),
        output: Path | None = typer.Option(None, "--out", "-o",
                                           help="definition to write (default: <process id>.yaml here)"),
        process: str | None = typer.Option(None, "--process", help="which process of the file (default: the first)"),
    ) -> None:
        """Translate BPMN to a definition; report each element not carried over (id, line) and validate."""
        from engine.definition.validation import validate_paths
        from engine.errors import InputError
        from engine.run.handlers import default_registry
        from interop.bpmn_import import import_file

        if not source.is_file():
            raise InputError(f"no such file: {source}")
        result = import_file(source, process)
        target = output or Path.cwd() / f"{result.raw['id']}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(result.yaml(), encoding="utf-8")
        for finding in result.findings:
            mark = "[yellow]✗ not carried over:[/yellow]" if finding in result.refused else "[dim]note:[/dim]"
            err.print(f"{mark} {finding}", highlight=False, soft_wrap=True)
        problems = validate_paths([target], default_registry())
        for problem in problems:
            err.print(f"[red]✗ invalid:[/red] {problem}", highlight=False, soft_wrap=True)
        out.print(f"{target}: {len(result.raw['nodes'])} steps, {len(result.refused)} element(s) not carried over, "
                  f"{'valid' if not problems else f'{len(problems)} validation problem(s)'}", highlight=False)
        if problems:
            raise typer.Exit(1)


__all__ = ["register", "LogFormat"]

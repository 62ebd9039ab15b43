"""`svcflow render`: a process's flowchart, or one case painted over its process.

Registered by svcflow/cli.py. It only reads definitions, cases and the event log.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from zoneinfo import ZoneInfo

import typer


class RenderFormat(str, Enum):
    svg = "svg"
    png = "png"
    pdf = "pdf"
    dot = "dot"


def register(app: typer.Typer) -> None:
    """Add the `render` command to the svcflow app."""
    # imported here, not at module level: svcflow.cli imports this module while it is being built
    from svcflow.cli import _engine, friendly

    @app.command("render")
    @friendly
    def render_command(
        process: str | None = typer.Argument(None, metavar="[PROCESS]",
                                                help="process id (may be omitted with --case)"),
        fmt: RenderFormat = typer.Option(RenderFormat.svg, "--format", "-f", help="svg, png, pdf or dot"),
        output: Path | None = typer.Option(None, "--out", "-o",
                                              help="file to write (default: <process>.<format>, "
                                                   "or <process>-<case>.<format> with --case)"),
        case_id: str | None = typer.Option(None, "--case", help="paint this case's path, waits and delays"),
    ) -> None:
        """Draw a process as a flowchart (swimlanes, SLAs, escalation ladders); with --case, the case on it."""
        from engine.errors import InputError
        from engine.definition.library import ProcessLibrary
        from engine.settings import get_settings
        from visualize.flowchart import flowchart_dot, render
        from visualize.overlay import case_overlay

        settings = get_settings()
        if case_id is not None:
            engine = _engine()
            view = engine.case(case_id)
            if process is not None and process != view.state.process_id:
                raise InputError(f"case {case_id} is a case of '{view.state.process_id}', not of '{process}'",
                                 hint="omit PROCESS with --case")
            graph = engine.graph_for(view.state)  # the version the case runs, not the latest
            overlay = case_overlay(graph, view, engine.clock.now(), zone=ZoneInfo(settings.display_timezone))
            dot = flowchart_dot(graph, overlay)
            default_name = f"{graph.process_id}-{case_id}.{fmt.value}"
        else:
            if process is None:
                raise InputError("name a PROCESS to render, or give --case CASE_ID",
                                 hint="svcflow list shows the processes")
            graph = ProcessLibrary.from_dir(settings.process_dir).get(process)
            dot = flowchart_dot(graph)
            default_name = f"{graph.process_id}.{fmt.value}"
        data = render(dot, fmt.value)
        target = output or Path.cwd() / default_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        sys.stdout.write(f"{target}\n")


__all__ = ["register", "RenderFormat"]

"""`svcflow render` and `svcflow diff`: flowcharts of processes, drafts, cases and edits.

Registered by svcflow/cli.py. It only reads definitions, cases and the event log.

The designer's loop: `svcflow render draft.yaml --watch` redraws a draft (a file outside the
library) every time it is saved; `svcflow diff old.yaml new.yaml` draws one chart with what an
edit added, removed and changed.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import typer

if TYPE_CHECKING:
    from engine.definition.graph import ProcessGraph

WATCH_INTERVAL = 0.3  # seconds between looks at a watched file


class RenderFormat(str, Enum):
    svg = "svg"
    png = "png"
    pdf = "pdf"
    dot = "dot"


class RenderView(str, Enum):
    detail = "detail"
    summary = "summary"
    both = "both"


def is_definition_file(argument: str) -> bool:
    """A PROCESS argument naming a YAML file (a draft) rather than a process of the library."""
    return argument.endswith((".yaml", ".yml")) or "/" in argument or Path(argument).is_file()


def load_draft(path: Path) -> ProcessGraph:
    """A definition file outside the library, drawn as it is: schema errors stop the drawing
    (they are reported located), problems of the process itself are warnings on stderr, since a
    draft is drawn to be fixed."""
    from engine.definition.library import ProcessLibrary, errors_only
    from engine.definition.loader import load_file
    from engine.definition.validation import validate_graph
    from engine.errors import InputError

    if not path.is_file():
        raise InputError(f"{path}: no such file", hint="give the path of a process definition (.yaml)")
    graph = ProcessLibrary().graph_of(load_file(path))
    for problem in errors_only(validate_graph(graph, None, None)):
        sys.stderr.write(f"warning: {problem}\n")
    return graph


def _views(view: RenderView) -> list[str]:
    return ["detail", "summary"] if view is RenderView.both else [view.value]


def _target(output: Path | None, stem: str, view: str, fmt: str, several: bool) -> Path:
    """Where one view goes: --out as given (with -summary before the suffix for the second view
    of --view both), else <stem>[-summary].<format> in the current directory."""
    suffix = "-summary" if view == "summary" and (several or output is None) else ""
    if output is None:
        return Path.cwd() / f"{stem}{suffix}.{fmt}"
    return output.with_name(f"{output.stem}{suffix}{output.suffix}") if suffix else output


def _write(target: Path, data: bytes) -> None:
    """Write through a temporary file, so a browser or viewer never reads half a chart."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.replace(target)
    sys.stdout.write(f"{target}\n")
    sys.stdout.flush()


def _fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None  # being replaced by an editor's save: look again next time


def _to_stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


def watch(path: Path, draw: Callable[[], None], *, max_renders: int | None, interval: float = WATCH_INTERVAL,
          report: Callable[[str], None] = _to_stderr) -> int:
    """Draw now and after every change of the file's content, until `max_renders` drawings
    (forever without). A save that does not load (half-written, invalid) is reported and the
    watch goes on: the next save is drawn. Returns the number of drawings made."""
    from engine.errors import SvcflowError

    renders = 0
    seen: str | None = None
    while max_renders is None or renders < max_renders:
        current = _fingerprint(path)
        if current is not None and current != seen:
            seen = current
            try:
                draw()
            except (SvcflowError, OSError) as exc:  # the watch outlives a bad save or a file moved away
                report(f"error: {exc}")
            renders += 1
            if max_renders is not None and renders >= max_renders:
                break
        time.sleep(interval)
    return renders


def register(app: typer.Typer) -> None:
    """Add the `render` and `diff` commands to the svcflow app."""
    # imported here, not at module level: svcflow.cli imports this module while it is being built
    from svcflow.cli import _engine, friendly

    @app.command("render")
    @friendly
    def render_command(
        process: str | None = typer.Argument(None, metavar="[PROCESS|FILE.yaml]",
                                             help="process id, or a definition file outside the library "
                                                  "(may be omitted with --case)"),
        fmt: RenderFormat = typer.Option(RenderFormat.svg, "--format", "-f", help="svg, png, pdf or dot"),
        output: Path | None = typer.Option(None, "--out", "-o",
                                           help="file to write (default: <process>.<format>, "
                                                "or <process>-<case>.<format> with --case)"),
        case_id: str | None = typer.Option(None, "--case", help="paint this case's path, waits and delays"),
        view: RenderView = typer.Option(RenderView.detail, "--view",
                                        help="detail, summary (hand-off branches collapsed, for reviews), "
                                             "or both (<name>.svg and <name>-summary.svg)"),
        watch_file: bool = typer.Option(False, "--watch", help="with FILE.yaml: draw again on every save"),
        max_renders: int | None = typer.Option(None, "--max-renders", min=1,
                                               help="with --watch: stop after this many drawings"),
    ) -> None:
        """Draw a process or a draft as a flowchart (swimlanes, SLAs, escalation ladders); with --case, the case on it."""
        from engine.definition.library import ProcessLibrary
        from engine.errors import InputError
        from engine.settings import get_settings
        from visualize.flowchart import flowchart_dot, render
        from visualize.overlay import case_overlay

        settings = get_settings()
        views = _views(view)
        if watch_file and (process is None or not is_definition_file(process)):
            raise InputError("--watch redraws a definition file", hint="svcflow render draft.yaml --watch")
        if case_id is not None:
            engine = _engine()
            case_view = engine.case(case_id)
            if process is not None and process != case_view.state.process_id:
                raise InputError(f"case {case_id} is a case of '{case_view.state.process_id}', not of '{process}'",
                                 hint="omit PROCESS with --case")
            graph = engine.graph_for(case_view.state)  # the version the case runs, not the latest
            overlay = case_overlay(graph, case_view, engine.clock.now(), zone=ZoneInfo(settings.display_timezone))
            for one in views:
                _write(_target(output, f"{graph.process_id}-{case_id}", one, fmt.value, len(views) > 1),
                       render(flowchart_dot(graph, overlay, view=one), fmt.value))  # type: ignore[arg-type]
            return
        if process is None:
            raise InputError("name a PROCESS or a FILE.yaml to render, or give --case CASE_ID",
                             hint="svcflow list shows the processes")

        def draw() -> None:
            assert process is not None
            if is_definition_file(process):
                graph = load_draft(Path(process))
                stem = Path(process).stem
            else:
                graph = ProcessLibrary.from_dir(settings.process_dir).get(process)
                stem = graph.process_id
            for one in views:
                _write(_target(output, stem, one, fmt.value, len(views) > 1),
                       render(flowchart_dot(graph, view=one), fmt.value))  # type: ignore[arg-type]

        if watch_file:
            sys.stderr.write(f"watching {process} (Ctrl-C to stop)\n")
            try:
                watch(Path(process), draw, max_renders=max_renders)
            except KeyboardInterrupt:
                pass
            return
        draw()

    @app.command("diff")
    @friendly
    def diff_command(
        old: Path = typer.Argument(..., metavar="OLD.yaml", help="the definition before the edit"),
        new: Path = typer.Argument(..., metavar="NEW.yaml", help="the definition after the edit"),
        fmt: RenderFormat = typer.Option(RenderFormat.svg, "--format", "-f", help="svg, png, pdf or dot"),
        output: Path | None = typer.Option(None, "--out", "-o", help="file to write (default: <new>-diff.<format>)"),
    ) -> None:
        """Draw one chart of an edit: steps, edges and SLAs added (green), removed (red), changed (amber)."""
        from visualize.diff import diff_chart
        from visualize.flowchart import flowchart_dot, render

        graph, overlay, diff = diff_chart(load_draft(old), load_draft(new))
        sys.stderr.write(("no differences" if diff.empty else diff.summary()) + "\n")
        _write(output or Path.cwd() / f"{new.stem}-diff.{fmt.value}",
               render(flowchart_dot(graph, overlay), fmt.value))


__all__ = ["register", "RenderFormat", "RenderView", "is_definition_file", "load_draft", "watch"]

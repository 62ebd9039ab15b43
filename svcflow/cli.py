"""The `svcflow` command line (typer + rich).

Input errors print one clear message (file, line, node, hint) and exit non-zero, never a
traceback. What they store is the engine's rule: a refused action on an existing case leaves
the case unchanged and one `refused` record in its history; anything else refused stores nothing.
Everything printed that comes from data goes through `shown`, so stored text is never markup.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from engine.errors import DefinitionError, InputError, SvcflowError
from engine.run.forms import parse_assignments

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="svcflow: customer-service processes as graphs, with business-time SLAs and escalation.")
out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
MAX_MESSAGE_CHARS = 2000
_MARKUP_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def shown(value: Any) -> str:
    """Any stored or typed text as the CLI prints it: rich markup in it is shown, never interpreted.

    Roles, assignees, enum values, labels, data and messages can hold `[/x]` or `[a-z_]+`; printed
    raw they raise MarkupError (breaking `tasks` for everyone) or lose the bracketed part. Same
    pattern as rich.markup.escape, without its extra backslash after a trailing one: our templates
    never put a tag right after a value.
    """
    text = "" if value is None else str(value)
    return _MARKUP_TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", text)


def _clipped(text: str) -> str:
    """An error message that echoes a huge input is cut: the reader needs the start and the size."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_MESSAGE_CHARS]}… ({len(text) - MAX_MESSAGE_CHARS:,} more characters)"


def friendly(function: F) -> F:
    """Turn our own errors into a message and exit code instead of a traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except DefinitionError as exc:
            for problem in exc.problems:
                err.print(f"[red]✗[/red] {shown(_clipped(str(problem)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except SvcflowError as exc:
            err.print(f"[red]error:[/red] {shown(_clipped(str(exc)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except (OSError, ValueError) as exc:
            err.print(f"[red]error:[/red] {shown(_clipped(str(exc)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _engine() -> Any:
    from engine.run.runtime import Engine
    from engine.settings import get_settings

    from engine.time.clock import clock_from_spec

    settings = get_settings()
    engine = Engine.from_settings(settings.database_url, settings.process_dir, clock=clock_from_spec(settings.clock))
    _refresh_artifacts(engine)
    return engine


ARTIFACT_FLUSH_SECONDS = 15.0


def _refresh_artifacts(engine: Any) -> None:
    """With a Prefect API configured, what a command changes shows in the case's Prefect artifact too:
    published in the background, waited for (at most ARTIFACT_FLUSH_SECONDS) when the command ends."""
    import atexit

    from flows.refresh import refresh_artifacts

    refresher = refresh_artifacts(engine)
    if refresher is not None:
        atexit.register(refresher.flush, ARTIFACT_FLUSH_SECONDS)


def _gate() -> Any:
    """Engine behind the directory's rules (engine/access.py): who may do what, refusals recorded."""
    from engine.access import open_gate
    from engine.settings import get_settings

    return open_gate(_engine(), get_settings())


def _input(data_file: Path | None, sets: list[str] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if data_file is not None:
        try:
            loaded = json.loads(data_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"no such data file: {data_file}") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{data_file}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{data_file}: the JSON must be an object of field: value")
        values.update(loaded)
    values.update(parse_assignments(sets or []))
    return values


def _action_input(engine: Any, data_file: Path | None, sets: list[str] | None, event: str, *,
                  case_id: str | None = None, task_id: str | None = None, actor: str | None = None,
                  role: str | None = None) -> dict[str, Any]:
    """The input of an action on a case: unreadable input is that action's refusal, recorded like the engine's."""
    try:
        return _input(data_file, sets)
    except InputError as exc:
        engine.record_refusal(exc, event, case_id=case_id, task_id=task_id, actor=actor, role=role)
        raise


def _when(value: Any) -> str:
    """Times shown in the service desk's zone (SVCFLOW_DISPLAY_TIMEZONE, default Asia/Shanghai)."""
    if isinstance(value, datetime):
        from engine.settings import get_settings

        return value.astimezone(ZoneInfo(get_settings().display_timezone)).strftime("%Y-%m-%d %H:%M")
    return "" if value is None else str(value)


def _cells(*values: Any) -> list[str]:
    """A table row: every cell through `shown` (rich parses markup in table cells too)."""
    return [shown(value) for value in values]


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


# -- definitions ------------------------------------------------------------------------------------
@app.command()
@friendly
def validate(paths: list[Path] = typer.Argument(..., help="definition files or directories")) -> None:
    """Check definitions and report ALL problems (file, line, node, hint). Exit 0 when clean."""
    from engine.run.handlers import default_registry
    from engine.definition.library import definition_files
    from engine.definition.validation import validate_paths

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise InputError(f"no such file or directory: {', '.join(map(str, missing))}")
    problems = validate_paths(list(paths), default_registry())
    files = definition_files(paths)
    errors = [p for p in problems if p.is_error]
    for problem in problems:
        mark = "[red]✗[/red]" if problem.is_error else "[yellow]⚠ warning:[/yellow]"
        err.print(f"{mark} {shown(problem)}", highlight=False, soft_wrap=True)
    if errors:
        err.print(f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s) in "
                  f"{len({p.file for p in problems})} of {len(files)} file(s)")
        raise typer.Exit(1)
    warned = f" ({len(problems)} warning(s))" if problems else ""
    out.print(f"[green]✓[/green] {len(files)} definition(s) valid{warned}")


@app.command()
@friendly
def schema(output: Path | None = typer.Option(None, "--out", help="write to this file instead of stdout")) -> None:
    """Print the JSON Schema of the definition format, for editors (yaml-language-server)."""
    from engine.definition.model import json_schema

    text = json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n"
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        out.print(f"schema written to {shown(output)}")
    else:
        sys.stdout.write(text)


@app.command("list")
@friendly
def list_processes(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the processes of the library."""
    from engine.definition.library import ProcessLibrary
    from engine.settings import get_settings

    library = ProcessLibrary.from_dir(get_settings().process_dir)
    rows = []
    for process_id in library.process_ids():
        loaded = library.latest[process_id]
        d = loaded.definition
        human = sum(1 for n in d.nodes if n.kind == "human")
        rows.append({"id": d.id, "version": d.version, "name_zh": d.name.zh, "name_en": d.name.en,
                     "nodes": len(d.nodes), "human_tasks": human, "hash": loaded.hash})
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "version", "name", "nodes", "human tasks")
    for r in rows:
        table.add_row(*_cells(r["id"], r["version"], f"{r['name_zh']} / {r['name_en']}", r["nodes"],
                              r["human_tasks"]))
    out.print(table)


# -- cases ------------------------------------------------------------------------------------------
@app.command()
@friendly
def start(process: str,
          data: Path | None = typer.Option(None, "--data", help="JSON file with the case data"),
          sets: list[str] | None = typer.Option(None, "--set", help="key=value (repeatable)"),
          actor: str | None = typer.Option(None, "--as", help="who starts it (a directory user)")) -> None:
    """Start a case; prints its id."""
    gate = _gate()
    case_id = gate.start(gate.principal(actor), process, _input(data, sets))
    sys.stdout.write(case_id + "\n")


@app.command()
@friendly
def tasks(role: str | None = typer.Option(None, "--role"),
          overdue: bool = typer.Option(False, "--overdue", help="only tasks past their due time"),
          case: str | None = typer.Option(None, "--case"),
          now: str | None = typer.Option(None, "--now", help="ISO time for --overdue (default: now)"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """List open human tasks."""
    engine = _engine()
    at = _parse_now(now, engine.clock) if overdue else None
    rows = engine.store.tasks(role=role, overdue_at=at, case_id=case)
    if as_json:
        _print_json(rows)
        return
    table = Table("task", "case", "step", "role", "assignee", "due", "priority", "level")
    for r in rows:
        table.add_row(*_cells(r["id"], r["case_id"], r["node"], r["role"], r["assignee"], _when(r["due_at"]),
                              r["priority"], r["escalation_level"]))
    out.print(table)
    if not rows:
        out.print("no open tasks")


@app.command()
@friendly
def complete(task_id: str,
             actor: str = typer.Option(..., "--as", help="user completing the task (a directory user)"),
             role: str | None = typer.Option(None, "--role", help="role the user acts in (default: one they "
                                             "hold that the task accepts; required without a directory)"),
             data: Path | None = typer.Option(None, "--data", help="JSON file with the form values"),
             sets: list[str] | None = typer.Option(None, "--set", help="key=value (repeatable)")) -> None:
    """Complete a human task (role-checked, form-validated). Continues a waiting Prefect run too."""
    gate = _gate()
    values = _action_input(gate.engine, data, sets, "CompleteTask", task_id=task_id, actor=actor, role=role)
    state = _complete(gate, actor, task_id, values, role)
    out.print(shown(f"task {task_id} completed; case {state.case_id} is {state.status}"
                    + (f" at {', '.join(sorted({t.node for t in state.tokens.values()}))}" if state.tokens else "")))


def _complete(gate: Any, actor: str, task_id: str, values: dict[str, Any], role: str | None) -> Any:
    """With Prefect (PREFECT_API_URL), the automatic steps the completion releases run in the case's
    flow run (flows/case_flow.py), and the state returned is where the case is after them."""
    import os

    if os.environ.get("PREFECT_API_URL"):
        from flows.case_flow import complete_in_case_run

        return complete_in_case_run(gate, gate.principal(actor), task_id, values, role=role)
    return gate.complete(gate.principal(actor), task_id, values, role=role)


@app.command()
@friendly
def assign(task_id: str,
           to: str = typer.Option(..., "--to", help="the person who will own the task"),
           actor: str = typer.Option(..., "--as", help="who assigns it (a directory user)"),
           role: str | None = typer.Option(None, "--role", help="role the assigner acts in")) -> None:
    """Give a task to a named person (the dedicated owner); they may then complete it.

    With a directory: claiming (--to yourself) needs the task's role; assigning to someone else
    needs a supervisor role, and the assignee must hold the task's role."""
    gate = _gate()
    state = gate.assign(gate.principal(actor), task_id, to, role=role)
    out.print(shown(f"task {task_id} of case {state.case_id} assigned to {to}"))


@app.command()
@friendly
def message(case_id: str, name: str,
            data: Path | None = typer.Option(None, "--data"),
            sets: list[str] | None = typer.Option(None, "--set"),
            actor: str | None = typer.Option(None, "--as")) -> None:
    """Deliver a message the case waits for (e.g. customer_reply)."""
    gate = _gate()
    values = _action_input(gate.engine, data, sets, "MessageArrived", case_id=case_id, actor=actor)
    state = gate.message(gate.principal(actor), case_id, name, values)
    out.print(shown(f"message {name} delivered; case {case_id} is {state.status}"))


@app.command()
@friendly
def update(case_id: str,
           data: Path | None = typer.Option(None, "--data"),
           sets: list[str] | None = typer.Option(None, "--set"),
           actor: str | None = typer.Option(None, "--as")) -> None:
    """Reclassify a case (tier, category...): SLA targets are re-chosen, start times kept.

    With a directory: needs a role holding an open task on the case, or a supervisor role."""
    gate = _gate()
    values = _action_input(gate.engine, data, sets, "UpdateData", case_id=case_id, actor=actor)
    state = gate.update(gate.principal(actor), case_id, values)
    out.print(shown(f"case {case_id} updated; priority {state.priority}"))


@app.command()
@friendly
def cancel(case_id: str,
           reason: str = typer.Option(..., "--reason", help="why the case is cancelled"),
           actor: str | None = typer.Option(None, "--as", help="who cancels it (a supervisor)")) -> None:
    """Cancel a case (with a directory: supervisor roles only)."""
    gate = _gate()
    state = gate.cancel(gate.principal(actor), case_id, reason)
    out.print(shown(f"case {case_id} is {state.status}"))


@app.command()
@friendly
def cases(process: str | None = typer.Option(None, "--process"),
          status: str | None = typer.Option(None, "--status"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """List cases."""
    engine = _engine()
    rows = engine.store.cases(process_id=process, status=status)
    if as_json:
        _print_json(rows)
        return
    table = Table("case", "process", "status", "at", "priority", "tier", "level", "started")
    for r in rows:
        table.add_row(*_cells(r["id"], r["process_id"], r["status"], r["current_nodes"], r["priority"], r["tier"],
                              r["escalation_level"], _when(r["created_at"])))
    out.print(table)


@app.command()
@friendly
def show(case_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A case: state, open tasks, SLA clocks, history."""
    from engine.time import sla

    engine = _engine()
    view = engine.case(case_id)
    state = view.state
    graph = engine.graph_for(state)
    now = engine.clock.now()
    clocks = []
    for clock in state.clocks.values():
        clocks.append({"clock": clock.id, "target": clock.target_text,
                       "status": sla.status_of(clock, now, graph.calendar),
                       "percent": round(sla.percent(clock, now, graph.calendar), 1), "due_at": clock.due_at,
                       "breached": clock.breached})
    open_tasks = [t for t in state.tasks.values() if t.status == "open"]
    if as_json:
        _print_json({"case": state.to_dict(), "clocks": clocks, "children": view.children,
                     "events": [e._asdict() for e in view.events]})
        return
    d = graph.definition
    out.print(f"[bold]{shown(case_id)}[/bold]  {shown(d.name.zh)} / {shown(d.name.en)} v{d.version}  "
              f"status [bold]{shown(state.status)}[/bold]"
              + (f" ({shown(state.outcome)})" if state.outcome else "")
              + f"  priority {shown(state.priority)}  escalation level {state.escalation_level}")
    out.print("data: " + shown(json.dumps(state.data, ensure_ascii=False, default=str)), highlight=False)
    if view.children:
        out.print("sub-cases: " + shown(", ".join(view.children)))
    table = Table("open task", "step", "role", "assignee", "due", "priority", "level", title="Open tasks")
    for t in open_tasks:
        table.add_row(*_cells(t.id, t.node, t.role, t.assignee, _when(t.due_at), t.priority, t.escalation_level))
    out.print(table)
    table = Table("clock", "target", "status", "used %", "due", title="SLA clocks")
    for c in clocks:
        table.add_row(*_cells(c["clock"], c["target"], c["status"], f"{c['percent']:.0f}", _when(c["due_at"])))
    out.print(table)
    table = Table("#", "at", "event", "node", "details", title="History")
    for e in view.events:
        details = ", ".join(f"{k}={v}" for k, v in e.data.items() if k not in ("token",) and v not in (None, {}, []))
        table.add_row(*_cells(e.seq or "-", _when(e.at), e.type, e.node, details[:120]))
    out.print(table)


@app.command()
@friendly
def sweep(now: str | None = typer.Option(None, "--now", help="ISO time to sweep at (default: now)")) -> None:
    """Apply due timers, SLA warnings, breaches and escalations once."""
    from engine.settings import get_settings
    from flows.notify import CompositeNotifier, webhook_notifier_from_settings

    engine = _engine()
    webhooks = webhook_notifier_from_settings(get_settings())
    if webhooks is not None:
        engine.notifier = CompositeNotifier([engine.notifier, webhooks])
    at = _parse_now(now, engine.clock)
    results = engine.sweep(at if now else None)
    count = 0
    for case_id, events in results:
        for e in events:
            if e.type.startswith(("sla_", "escalated", "timer_fired")):
                count += 1
                out.print(shown(f"{case_id}  {e.type}  {e.node or ''}  {e.data.get('clock', '')} "
                                f"{e.data.get('percent', '')}"))
    out.print(f"swept at {at.isoformat()}: {len(results)} case(s), {count} SLA/timer event(s)")
    if webhooks is not None:  # a short-lived process: deliver what this sweep queued before exiting
        webhooks.close(timeout=max(30.0, webhooks.timeout_seconds * webhooks.attempts))
        out.print(f"webhooks: {webhooks.delivered} delivered, {webhooks.dropped + webhooks.pending()} not delivered")


def _parse_now(text: str | None, clock: Any) -> datetime:
    """--now, or the engine's clock (SVCFLOW_CLOCK) like every other command: never the wall clock directly."""
    if not text:
        return clock.now()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"cannot read --now {text!r}", hint="write e.g. 2025-10-09T10:00:00+08:00") from None
    if value.tzinfo is None:
        raise InputError(f"--now {text!r} needs a time zone", hint="append e.g. +08:00")
    return value


@app.command()
@friendly
def demo(keep: bool = typer.Option(False, "--keep", help="keep the Prefect server up afterwards"),
         seconds: int = typer.Option(100, "--seconds", help="how long the simulated operators work"),
         factor: float = typer.Option(3600.0, "--speed", help="virtual seconds per real second (3600: 1 h/s)"),
         port: int = typer.Option(4200, "--port", help="port of the local Prefect server"),
         out_dir: Path = typer.Option(Path("demo-output"), "--out",
                                      help="where outputs go: a new or empty directory, or one an earlier demo made "
                                           "(emptied first)")) -> None:
    """Run the demo: Prefect server, served flows, sample cases, simulated operators, reports."""
    from svcflow.demo import run_demo

    run_demo(seconds=seconds, factor=factor, port=port, out_dir=out_dir, keep=keep)


def _register_extensions() -> None:
    """Commands that live with their subsystems (Prefect, rendering, reports)."""
    import importlib

    for name in ("svcflow.commands_prefect", "svcflow.commands_render", "svcflow.commands_review",
                 "svcflow.commands_users", "svcflow.commands_interop", "svcflow.commands_production"):
        importlib.import_module(name).register(app)


_register_extensions()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

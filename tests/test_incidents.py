"""A failing system step becomes a recorded incident on the case, never a silent stall (issue 13).

Each case below was seen leaving a case "running" for ever with nothing to wait for: the
person's completion stored, then a raw exception, no incident, and the CLI saying that
nothing was stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.run.handlers import HandlerRegistry, default_registry
from engine.run.runtime import Engine
from tests.test_semantics import definition

ASK = """
  - {id: start, kind: start}
  - {id: ask, kind: human, lane: agent, form: [{id: ok, type: boolean, required: true}]}
"""

BAD_OUTPUT = definition("""
data: {score: {type: integer}}
nodes:""" + ASK + """
  - id: score
    kind: auto
    handler: test.bad_output
    outputs: {score: {type: integer}}
  - {id: done, kind: end}
edges:
  - {from: start, to: ask}
  - {from: ask, to: score}
  - {from: score, to: done}
""")

CHILD = definition("""
data:
  level: {type: enum, choices: [low, high], required: true}
nodes:
  - {id: start, kind: start}
  - {id: done, kind: end}
edges:
  - {from: start, to: done}
""", process_id="child")

PARENT = definition("""
data: {level: {type: string, default: urgent}}
nodes:""" + ASK + """
  - {id: call, kind: subprocess, process: child, inputs: {level: "data.level"}}
  - {id: done, kind: end}
edges:
  - {from: start, to: ask}
  - {from: ask, to: call}
  - {from: call, to: done}
""")


def second_task(sla: str, calendar: str = "") -> str:
    return definition(calendar + """
nodes:""" + ASK + f"""
  - {{id: review, kind: human, lane: supervisor, sla: {{target: {sla}}}, form: [{{id: ok, type: boolean}}]}}
  - {{id: done, kind: end}}
edges:
  - {{from: start, to: ask}}
  - {{from: ask, to: review}}
  - {{from: review, to: done}}
""")


def bad_output_handlers() -> HandlerRegistry:
    handlers = HandlerRegistry()
    handlers.add("test.bad_output", lambda ctx: {"score": "not a number"})
    return handlers


def complete_ask(engine: Engine, case_id: str) -> None:
    task = engine.open_tasks(case_id)[0]
    assert task["node"] == "ask"
    engine.complete(task["id"], actor="li", role="agent", data={"ok": True})


def incidents(engine: Engine, case_id: str) -> list[str]:
    return [str(e.data["message"]) for e in engine.case(case_id).events if e.type == "incident"]


def assert_parked(engine: Engine, case_id: str) -> None:
    """The completion is kept and the case is visibly an incident, with the reason in its log."""
    view = engine.case(case_id)
    assert view.status == "incident", view.history
    completed = [e for e in view.events if e.type == "task_completed"]
    assert [e.node for e in completed] == ["ask"]
    assert "refused" not in view.history


def test_a_handler_output_that_does_not_fit_its_type_is_the_steps_incident_with_the_output_kept(make_engine):
    engine = make_engine(BAD_OUTPUT, handlers=bad_output_handlers())
    case_id = engine.start("demo", {})
    complete_ask(engine, case_id)
    assert_parked(engine, case_id)
    failed = [e for e in engine.case(case_id).events if e.type == "step_failed"]
    assert len(failed) == 1 and failed[0].node == "score"
    assert "expected a whole number" in failed[0].data["error"]
    assert failed[0].data["output"] == {"score": "not a number"}
    assert engine.case(case_id).state.tokens[next(iter(engine.case(case_id).state.tokens))].incident


def test_complete_returns_the_state_the_step_left_not_the_one_before_it(make_engine):
    engine = make_engine(BAD_OUTPUT, handlers=bad_output_handlers())
    case_id = engine.start("demo", {})
    task = engine.open_tasks(case_id)[0]
    state = engine.complete(task["id"], actor="li", role="agent", data={"ok": True})
    assert state.status == "incident"


def test_a_child_case_whose_input_does_not_fit_parks_the_parent_at_the_subprocess(make_engine):
    engine = make_engine(CHILD, PARENT)
    case_id = engine.start("demo", {})
    complete_ask(engine, case_id)
    assert_parked(engine, case_id)
    view = engine.case(case_id)
    assert not view.children
    incident = [e for e in view.events if e.type == "incident"][-1]
    assert incident.node == "call"
    assert "sub-process 'child' could not start" in incident.data["message"] and "urgent" in incident.data["message"]
    assert "nothing was stored" not in incident.data["message"]


def test_an_sla_beyond_the_calendars_range_parks_the_case_at_the_step_that_opens_it(make_engine):
    engine = make_engine(second_task("99999d"))
    case_id = engine.start("demo", {})
    complete_ask(engine, case_id)
    assert_parked(engine, case_id)
    assert any("ten years ahead" in message for message in incidents(engine, case_id))
    assert [e.node for e in engine.case(case_id).events if e.type == "incident"] == ["review"]


def test_a_calendar_without_working_days_parks_the_case_instead_of_raising(make_engine):
    calendar = "calendar: {working_weekdays: [], use_chinese_holidays: false}\n"
    engine = make_engine(second_task("1d", calendar))
    case_id = engine.start("demo", {})
    complete_ask(engine, case_id)
    assert_parked(engine, case_id)


def test_a_reference_to_an_unknown_node_mid_case_is_an_incident_not_a_key_error(make_engine):
    handlers = HandlerRegistry()
    handlers.add("test.bad_output", lambda ctx: {"score": 5})
    engine = make_engine(BAD_OUTPUT, handlers=handlers)
    graph = engine.library.get("demo")
    edge = graph.outgoing["score"][0]
    graph.outgoing["score"][0] = edge.model_copy(update={"target": "nowhere"})  # a definition gone wrong
    case_id = engine.start("demo", {})
    complete_ask(engine, case_id)
    assert_parked(engine, case_id)
    view = engine.case(case_id)
    assert view.data["score"] == 5  # the handler's result is kept
    assert any("KeyError" in message and "nowhere" in message for message in incidents(engine, case_id))


# -- the command line ---------------------------------------------------------------------------------
def test_the_cli_says_the_completion_was_stored_and_the_case_is_an_incident(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    from svcflow.cli import app

    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "demo.yaml").write_text(BAD_OUTPUT, encoding="utf-8")
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'svcflow.db'}")
    monkeypatch.setenv("SVCFLOW_PROCESS_DIR", str(defs))
    default_registry().add("test.bad_output", lambda ctx: {"score": "not a number"})
    runner = CliRunner()
    try:
        case_id = runner.invoke(app, ["start", "demo"]).stdout.strip()
        tasks = runner.invoke(app, ["tasks", "--json"])
        task_id = [t for t in json.loads(tasks.stdout) if t["case_id"] == case_id][0]["id"]
        result = runner.invoke(app, ["complete", task_id, "--as", "li", "--role", "agent", "--set", "ok=true"])
        shown = runner.invoke(app, ["show", case_id])
    finally:
        default_registry()._handlers.pop("test.bad_output", None)
    assert result.exit_code == 0, result.output
    assert "nothing was stored" not in result.output
    assert f"task {task_id} completed" in result.output and "incident" in result.output
    assert "incident" in shown.output and "step_failed" in shown.output

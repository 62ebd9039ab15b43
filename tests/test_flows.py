"""Cases as Prefect flow runs: names and tags, steps as tasks, human steps as paused runs with a
generated form, sub-cases as linked child runs, the sweep's events and artifact, crash safety
(SIGKILL mid-step) and two sweeps at once on PostgreSQL.

All tests share one Prefect test server (tests/conftest_prefect.py) with the fast settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.time.clock import FakeClock
from engine.run.handlers import HandlerContext, HandlerRegistry
from engine.definition.library import ProcessLibrary
from engine.store.sql import Store
from tests.conftest import MONDAY_9AM, POSTGRES_URL, postgres_available
from tests.prefect_harness import in_thread, wait_until

pytest_plugins = ["tests.conftest_prefect"]
pytestmark = pytest.mark.prefect

ROOT = Path(__file__).resolve().parent.parent

LANES = """
lanes:
  - {id: agent, name: {zh: 坐席, en: Agent}}
  - {id: supervisor, name: {zh: 主管, en: Supervisor}}
"""

FLOWTEST = """
id: flowtest
version: 1
name: {zh: 流程测试, en: Flow test}
""" + LANES + """
data:
  tier: {type: enum, label: {zh: 客户等级, en: Tier}, choices: [gold, standard], default: standard}
  is_major: {type: boolean, label: {zh: 重大, en: Major}, default: false}
  customer_name: {type: string, label: {zh: 客户名称, en: Customer name}}
  skip_review: {type: boolean, default: false}
nodes:
  - {id: start, kind: start}
  - {id: prepare, kind: auto, handler: ft.prepare, retries: 2, timeout_seconds: 30}
  - {id: route, kind: exclusive}
  - id: review
    kind: human
    name: {zh: 审核, en: Review}
    description: {zh: 核对客户资料后给出结论。, en: Check the customer's file and decide.}
    lane: agent
    sla: {target: 4h, escalation: [{at: 50, notify: [supervisor]}]}
    form:
      - id: decision
        type: enum
        label: {zh: 结论, en: Decision}
        choices: [approve, reject]
        required: true
      - {id: note, type: text, label: {zh: 备注, en: Note}}
      - {id: callback_date, type: date, label: {zh: 回访日期, en: Callback date}}
      - {id: score, type: integer, label: {zh: 评分, en: Score}, minimum: 1, maximum: 5}
  - {id: finish, kind: auto, handler: ft.finish}
  - {id: end, kind: end, outcome: done}
edges:
  - {from: start, to: prepare}
  - {from: prepare, to: route}
  - {from: route, to: finish, when: data.skip_review}
  - {from: route, to: review, default: true}
  - {from: review, to: finish}
  - {from: finish, to: end}
"""

PARENT = """
id: parent_proc
version: 1
name: {zh: 父流程, en: Parent}
""" + LANES + """
data:
  amount: {type: number, default: 0}
  child_result: {type: string, default: ""}
nodes:
  - {id: start, kind: start}
  - id: sub
    kind: subprocess
    process: child_proc
    inputs: {amount: data.amount}
    outputs: {child_result: data.result}
  - {id: after, kind: auto, handler: ft.finish}
  - {id: end, kind: end}
edges:
  - {from: start, to: sub}
  - {from: sub, to: after}
  - {from: after, to: end}
"""

CHILD = """
id: child_proc
version: 1
name: {zh: 子流程, en: Child}
""" + LANES + """
data:
  amount: {type: number, default: 0}
  result: {type: string, default: ""}
nodes:
  - {id: start, kind: start}
  - {id: child_step, kind: auto, handler: ft.child}
  - {id: end, kind: end}
edges:
  - {from: start, to: child_step}
  - {from: child_step, to: end}
"""

SWEEPY = """
id: sweepy
version: 1
name: {zh: 升级测试, en: Escalation test}
""" + LANES + """
data:
  tier: {type: enum, choices: [gold, standard], default: standard}
ladders:
  reroute:
    - {at: 50, notify: [supervisor]}
    - {at: 100, notify: [supervisor], raise_priority: high}
    - {at: 150, notify: [supervisor], route: to_rescue}
  plain:
    - {at: 50, notify: [supervisor]}
    - {at: 100, notify: [supervisor], raise_priority: high}
    - {at: 150, reassign: supervisor}
nodes:
  - {id: start, kind: start}
  - {id: pick, kind: exclusive}
  - {id: wait, kind: human, lane: agent, sla: {target: 1h, escalation: reroute}}
  - {id: hold, kind: human, lane: agent, sla: {target: 1h, escalation: plain}}
  - {id: rescue, kind: auto, handler: ft.finish}
  - {id: end, kind: end}
edges:
  - {from: start, to: pick}
  - {from: pick, to: wait, when: 'data.tier == "gold"'}
  - {from: pick, to: hold, default: true}
  - {from: wait, to: end}
  - {from: hold, to: end}
  - {id: to_rescue, from: wait, to: rescue, kind: escalation}
  - {from: rescue, to: end}
"""


class Calls:
    """What the test handlers saw, per step."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[int]] = {}

    def record(self, ctx: HandlerContext) -> None:
        self.attempts.setdefault(ctx.node_id, []).append(ctx.attempt)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def registry(calls: Calls) -> HandlerRegistry:
    registry = HandlerRegistry()

    def prepare(ctx: HandlerContext) -> dict[str, Any]:
        calls.record(ctx)
        if ctx.data.get("customer_name") == "flaky" and ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {"prepared": True}

    def finish(ctx: HandlerContext) -> dict[str, Any]:
        calls.record(ctx)
        return {}

    def child(ctx: HandlerContext) -> dict[str, Any]:
        calls.record(ctx)
        return {"result": f"handled {ctx.data.get('amount')}"}

    registry.add("ft.prepare", prepare)
    registry.add("ft.finish", finish)
    registry.add("ft.child", child)
    return registry


def library(*texts: str) -> ProcessLibrary:
    lib = ProcessLibrary()
    for i, text in enumerate(texts):
        lib.add_text(text, f"inline{i}.yaml")
    return lib


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_9AM)


@pytest.fixture
def engine(prefect_api: str, tmp_path: Path, clock: FakeClock, registry: HandlerRegistry,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A flow engine on a SQLite file (flows run in threads; the file is shared safely) used by every
    flow run started in this test's context."""
    from flows.notify import PrefectEventNotifier
    from flows.runtime import FlowEngine, use_engine

    monkeypatch.setenv("SVCFLOW_PAUSE_POLL_SECONDS", "0.1")
    monkeypatch.setenv("SVCFLOW_ARTIFACT_FLOWCHART", "false")  # ~0.1 s of Graphviz per segment; one test draws
    engine = FlowEngine(Store(f"sqlite:///{tmp_path / 'svcflow.db'}"), library(FLOWTEST, PARENT, CHILD, SWEEPY),
                        clock=clock, handlers=registry, notifier=PrefectEventNotifier())
    with use_engine(engine):
        yield engine
    engine.store.dispose()


def client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def flow_run_named(name: str) -> Any:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with client() as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    assert len(runs) == 1, [r.name for r in runs]
    return runs[0]


def paused_run(tag: str) -> Any:
    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    with client() as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[tag]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
    return runs[0] if runs else None


def run_input(run: Any, suffix: str) -> Any:
    keyset = run.state.state_details.run_input_keyset
    with client() as c:
        return json.loads(c.read_flow_run_input(run.id, keyset[suffix]))


def start_in_thread(process: str, data: dict[str, Any], case_id: str) -> tuple[Any, dict[str, Any]]:
    from flows.case_flow import start_case

    return in_thread(lambda: start_case(process, data, case_id=case_id))


def only_open_task(engine: Any, case_id: str) -> dict[str, Any]:
    tasks = engine.open_tasks(case_id)
    assert len(tasks) == 1, tasks
    return tasks[0]


def finish_thread(thread: Any, box: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    thread.join(timeout)
    assert not thread.is_alive(), "the flow run did not finish"
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


# -- names, tags, tasks ------------------------------------------------------------------------------
def test_case_flow_run_is_named_after_process_and_case_and_tagged(engine: Any) -> None:
    from flows.case_flow import start_case

    summary = start_case("flowtest", {"tier": "gold", "is_major": True, "skip_review": True}, case_id="FT-1")
    assert summary["status"] == "completed"
    run = flow_run_named("flowtest-FT-1")
    assert {"flowtest", "tier:gold", "major", "case:FT-1"} <= set(run.tags)
    assert run.state.is_completed()

    start_case("flowtest", {"skip_review": True}, case_id="FT-2")
    assert "major" not in flow_run_named("flowtest-FT-2").tags


def test_automatic_steps_are_task_runs_named_after_the_step_with_the_definitions_retries(
        engine: Any, calls: Calls, captured_events: Callable[[], list[Any]]) -> None:
    from flows.case_flow import start_case

    start_case("flowtest", {"customer_name": "flaky", "skip_review": True}, case_id="FT-3")
    run = flow_run_named("flowtest-FT-3")
    completed = [e for e in captured_events() if e.event == "prefect.task-run.Completed"]
    by_name = {e.resource.name: e for e in completed}
    assert {"prepare", "finish"} <= set(by_name)
    prepare = by_name["prepare"].payload["task_run"]
    assert prepare["empirical_policy"]["retries"] == 2  # from the definition
    assert prepare["run_count"] == 2  # the first attempt failed, Prefect retried
    assert any(r.id == f"prefect.flow-run.{run.id}" for r in by_name["prepare"].related)
    assert calls.attempts["prepare"] == [1, 2]  # the handler sees Prefect's attempt number
    view = engine.case("FT-3")
    assert [e.node for e in view.events if e.type == "step_completed"] == ["prepare", "finish"]
    assert view.status == "completed"


# -- human steps ------------------------------------------------------------------------------------
def test_the_resume_form_is_generated_from_the_steps_form(engine: Any) -> None:
    from flows.human import task_input_model

    case_id = engine.start("flowtest", {"tier": "gold", "customer_name": "张三"}, case_id="FT-4")
    state = engine.store.load_case(case_id)[0]
    task = state.open_tasks()[0]
    model = task_input_model(engine.graph_for(state), state, task, now=engine.clock.now())
    schema = model.model_json_schema()
    props = schema["properties"]
    assert list(props)[:4] == ["decision", "note", "callback_date", "score"]
    assert props["decision"]["title"] == "结论 / Decision"
    assert props["decision"]["enum"] == ["approve", "reject"]
    assert props["callback_date"]["format"] == "date"
    assert props["score"]["minimum"] == 1 and props["score"]["maximum"] == 5
    assert "default" not in props["note"]  # no null for the form to send back
    assert set(schema["required"]) == {"decision", "actor"}
    assert props["actor"]["title"] == "处理人 / Actor"
    assert props["role"]["default"] == "agent" and props["role"]["enum"] == ["agent"]
    assert props["completed_externally"]["default"] is False
    description = model._description
    assert "FT-4" in description and "审核 / Review" in description
    assert "2025-09-22 14:30" in description  # 4 business hours after Monday 09:00, lunch excluded
    assert "4h 0m" not in description and "4h" in description
    assert "escalation level **0**" in description
    assert "核对客户资料后给出结论" in description and "张三" in description
    assert props["decision"]["description"].startswith(description)  # drawn inside the form, never squeezed


def test_the_resume_form_starts_from_what_the_case_already_holds(engine: Any) -> None:
    from flows.human import task_input_model

    case_id = engine.start("flowtest", {"tier": "gold"}, case_id="FT-4b")
    state = engine.store.load_case(case_id)[0]
    # what an earlier round of the step left in the case (a rework loop comes back to it)
    state.data.update(decision="reject", score=4, note="客户已来电 / called", callback_date=20251009)
    props = task_input_model(engine.graph_for(state), state, state.open_tasks()[0],
                             now=engine.clock.now()).model_json_schema()["properties"]
    assert props["decision"]["default"] == "reject"
    assert props["score"]["default"] == 4 and props["note"]["default"] == "客户已来电 / called"
    assert "default" not in props["callback_date"]


def _paused_on(task_id: str, previous: Any = None) -> Any:
    def check() -> Any:
        run = paused_run(f"task:{task_id}")
        if run is None:
            return None
        if previous is not None and run.state.state_details.pause_key == previous:
            return None
        return run

    return wait_until(check, what=f"a run paused on {task_id}")


def test_a_human_step_pauses_the_run_and_valid_input_completes_it_through_the_engine(engine: Any) -> None:
    thread, box = start_in_thread("flowtest", {"customer_name": "李四"}, "FT-5")
    task = wait_until(lambda: engine.open_tasks("FT-5"), what="the task")[0]
    run = _paused_on(task["id"])
    assert run.name == "flowtest-FT-5"
    schema = run_input(run, "schema")
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject"]
    assert "李四" in run_input(run, "description")
    with client() as c:
        c.resume_flow_run(run.id, run_input={"decision": "approve", "actor": "li", "score": 4,
                                             "callback_date": "2025-10-09"})
    summary = finish_thread(thread, box)
    assert summary["status"] == "completed"
    state = engine.store.load_case("FT-5")[0]
    assert state.tasks[task["id"]].completed_by == "li"
    assert state.data["decision"] == "approve" and state.data["score"] == 4
    assert state.data["callback_date"] == "2025-10-09"
    assert "task:" not in " ".join(flow_run_named("flowtest-FT-5").tags)


def test_invalid_input_keeps_the_task_open_and_the_run_paused(engine: Any) -> None:
    thread, box = start_in_thread("flowtest", {}, "FT-6")
    task = wait_until(lambda: engine.open_tasks("FT-6"), what="the task")[0]
    run = _paused_on(task["id"])
    with client() as c:
        refused = c.resume_flow_run(run.id, run_input={"decision": "maybe", "actor": "li"})
    assert refused.status.value == "REJECT"  # Prefect checks the form's schema first
    key = run.state.state_details.pause_key
    with client() as c:  # passes the schema, fails svcflow's check: no such date
        c.resume_flow_run(run.id, run_input={"decision": "approve", "actor": "li", "callback_date": "2025-02-30"})
    again = _paused_on(task["id"], previous=key)
    assert engine.open_tasks("FT-6")[0]["status"] == "open"
    assert run.state.message.startswith("等待 / Waiting for: 审核 / Review")
    assert again.state.message.startswith("上次提交被拒绝 / Last submission refused: «回访日期 / Callback date»")
    refusals = [e for e in engine.case("FT-6").events if e.type == "refused"]
    assert len(refusals) == 1 and "callback_date" in refusals[0].data["reason"]
    with client() as c:
        c.resume_flow_run(again.id, run_input={"decision": "reject", "actor": "wang"})
    assert finish_thread(thread, box)["status"] == "completed"


def test_a_resume_from_the_prefect_ui_checks_the_typed_actor_against_the_directory(engine: Any) -> None:
    from engine.access import library_roles
    from engine.store.directory import Directory

    directory = Directory(engine.store, library_roles(engine.library))
    directory.add_user("li", "李四", ["agent"], engine.clock.now())
    directory.add_user("zhao", "赵六", [], engine.clock.now())
    thread, box = start_in_thread("flowtest", {}, "FT-6D")
    task = wait_until(lambda: engine.open_tasks("FT-6D"), what="the task")[0]
    run = _paused_on(task["id"])
    for actor in ("mallory", "zhao"):  # unknown; known but without the role
        with client() as c:
            c.resume_flow_run(run.id, run_input={"decision": "approve", "actor": actor})
        run = _paused_on(task["id"], previous=run.state.state_details.pause_key)
    assert engine.open_tasks("FT-6D")[0]["status"] == "open"
    refusals = [e.data for e in engine.case("FT-6D").events if e.type == "refused"]
    assert [(r["actor"], r["actor_kind"]) for r in refusals] == [("mallory", "unknown"), ("zhao", "user")]
    assert "inbox" in run_input(run, "description")
    with client() as c:
        c.resume_flow_run(run.id, run_input={"decision": "approve", "actor": "Li"})
    assert finish_thread(thread, box)["status"] == "completed"
    assert engine.store.load_case("FT-6D")[0].tasks[task["id"]].completed_by == "li"


def test_automatic_steps_after_an_external_completion_run_as_task_runs_of_the_cases_flow_run(
        engine: Any, calls: Calls, captured_events: Callable[[], list[Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """`svcflow complete` with Prefect: the step the completion releases (`finish`) is a task run of
    the case's flow run, not code run inside the command, and the state returned is after it."""
    from engine.access import open_gate
    from engine.settings import get_settings
    from flows.case_flow import complete_in_case_run, start_case

    monkeypatch.setenv("SVCFLOW_CASE_DEPLOYMENT", "svcflow-case/not-served-here")  # no served deployment
    start_case("flowtest", {}, case_id="FT-7C", wait_for_humans=False)  # as `svcflow run --no-wait` leaves it
    task = only_open_task(engine, "FT-7C")
    gate = open_gate(engine, get_settings())
    state = complete_in_case_run(gate, gate.principal("zhao"), task["id"], {"decision": "approve"}, role="agent")
    assert state.status == "completed" and calls.attempts["finish"] == [1]
    finished = [e for e in captured_events() if e.event == "prefect.task-run.Completed"
                and e.resource.name == "finish"]
    assert len(finished) == 1
    run_ids = {r.id for r in finished[0].related if r.id.startswith("prefect.flow-run.")}
    with client() as c:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["flowtest-FT-7C"])))
    assert run_ids & {f"prefect.flow-run.{r.id}" for r in runs}  # a run of the case, named after it


def test_resume_run_for_task_continues_a_run_after_an_external_completion(engine: Any) -> None:
    from flows.human import resume_run_for_task

    thread, box = start_in_thread("flowtest", {}, "FT-7")
    task = wait_until(lambda: engine.open_tasks("FT-7"), what="the task")[0]
    _paused_on(task["id"])
    engine.complete(task["id"], actor="zhao", role="agent", data={"decision": "approve"})  # `svcflow complete`
    assert resume_run_for_task(task["id"]) is True
    summary = finish_thread(thread, box)
    assert summary["status"] == "completed"
    assert engine.store.load_case("FT-7")[0].tasks[task["id"]].completed_by == "zhao"
    assert resume_run_for_task("NO-SUCH-TASK") is False


def test_a_pause_that_times_out_ends_the_run_and_running_the_case_again_continues(
        engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.case_flow import continue_case, start_case

    monkeypatch.setenv("SVCFLOW_PAUSE_MIN_SECONDS", "1")
    monkeypatch.setenv("SVCFLOW_PAUSE_MAX_SECONDS", "1")
    summary = start_case("flowtest", {}, case_id="FT-8")
    assert summary["segment"] in ("timeout", "failed") and summary["status"] == "running"
    task = only_open_task(engine, "FT-8")
    engine.complete(task["id"], actor="li", role="agent", data={"decision": "approve"})
    assert continue_case("FT-8")["status"] == "completed"


# -- sub-processes ------------------------------------------------------------------------------------
def test_a_sub_process_runs_as_a_linked_child_flow_run(engine: Any, calls: Calls) -> None:
    from flows.case_flow import start_case

    summary = start_case("parent_proc", {"amount": 12}, case_id="PP-1")
    assert summary["status"] == "completed"
    children = engine.case("PP-1").children
    assert len(children) == 1
    parent_run = flow_run_named("parent_proc-PP-1")
    child_run = flow_run_named(f"child_proc-{children[0]}")
    assert child_run.parent_task_run_id is not None
    with client() as c:
        link = c.read_task_run(child_run.parent_task_run_id)
    assert link.flow_run_id == parent_run.id
    assert {"child_proc", f"case:{children[0]}", "parent:PP-1"} <= set(child_run.tags)
    assert "parent_proc" not in child_run.tags and "case:PP-1" not in child_run.tags
    assert engine.store.load_case("PP-1")[0].data["child_result"] == "handled 12"
    assert calls.attempts == {"child_step": [1], "after": [1]}


# -- the sweep ------------------------------------------------------------------------------------------
def test_the_sweep_emits_events_and_a_table_artifact_and_continues_a_rerouted_case(
        engine: Any, clock: FakeClock, calls: Calls, captured_events: Callable[[], list[Any]]) -> None:
    from flows.sweep import SWEEP_ARTIFACT_KEY, escalation_sweep

    engine.start("sweepy", {"tier": "gold"}, case_id="SW-1")  # reroutes at 150 %
    engine.start("sweepy", {"tier": "standard"}, case_id="SW-2")  # only warns, breaches, reassigns
    clock.advance(timedelta(hours=2))
    result = escalation_sweep()
    assert result["cases"] == 2 and result["escalated"] == 6
    assert result["sla_warned"] == 2 and result["sla_breached"] == 2
    assert result["moved"] == ["SW-1"]
    events = [e for e in captured_events() if e.event.startswith("svcflow.")]
    names = [e.event for e in events if e.resource.get("svcflow.case") == "SW-1"]
    assert names.count("svcflow.sla.warned") == 1 and names.count("svcflow.sla.breached") == 1
    assert names.count("svcflow.case.escalated") == 3
    warned = next(e for e in events if e.event == "svcflow.sla.warned" and e.resource.get("svcflow.case") == "SW-1")
    assert warned.resource.id == "svcflow.case.SW-1"
    assert warned.resource.get("svcflow.process") == "sweepy" and warned.resource.name == "sweepy-SW-1"
    assert warned.payload["percent"] == 50 and warned.payload["level"] == 1
    assert warned.payload["roles"] == ["supervisor"] and warned.payload["clock"].startswith("task:")
    assert any(e.event == "svcflow.notification.warned" for e in events)
    # the interrupting escalation moved SW-1 to an automatic step: its own case run did it, as a task
    assert engine.case("SW-1").status == "completed" and calls.attempts == {"rescue": [1]}
    flow_run_named("sweepy-SW-1")
    assert engine.case("SW-2").status == "running"
    assert engine.open_tasks("SW-2")[0]["role"] == "supervisor"
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with client() as c:
        table = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[SWEEP_ARTIFACT_KEY])))
        cases = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["case-sw-2"])))
    assert table and table[-1].type == "table"
    rows = json.loads(table[-1].data) if isinstance(table[-1].data, str) else table[-1].data
    assert len(rows) == 10 and {r["event"] for r in rows} == {"sla_warned", "sla_breached", "escalated"}
    assert cases and "升级记录 / Escalations" in cases[-1].data


def test_a_sweep_with_nothing_due_publishes_no_artifact_version(engine: Any, clock: FakeClock) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.sweep import SWEEP_ARTIFACT_KEY, escalation_sweep

    def versions() -> int:
        with client() as c:
            return len(c.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[SWEEP_ARTIFACT_KEY]))))

    engine.start("sweepy", {"tier": "standard"}, case_id="SW-9")  # this test's store holds this case only
    before = versions()
    idle = escalation_sweep(now=clock.now())  # nothing of SW-9 is due yet
    assert idle["cases"] == 0 and versions() == before
    busy = escalation_sweep(now=clock.now() + timedelta(hours=2))
    assert busy["sla_warned"] >= 1 and versions() == before + 1


def test_serve_runs_at_most_the_configured_number_of_flow_runs_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect

    from svcflow.commands_prefect import serve_deployments

    seen: dict[str, Any] = {}
    monkeypatch.setattr(prefect, "serve", lambda *deployments, limit=None: seen.update(limit=limit, n=len(deployments)))
    monkeypatch.setenv("SVCFLOW_RECONCILE", "false")  # no Prefect server here to take runs over from
    serve_deployments(sweep=True)
    assert seen == {"limit": 4, "n": 2}
    monkeypatch.setenv("SVCFLOW_SERVE_LIMIT", "2")
    serve_deployments(sweep=False)
    assert seen == {"limit": 2, "n": 1}
    serve_deployments(sweep=False, limit=9)
    assert seen["limit"] == 9


def test_each_case_has_a_keyed_markdown_artifact_that_follows_it(engine: Any) -> None:
    from flows.artifacts import artifact_key, render_case
    from flows.case_flow import start_case

    assert artifact_key("CH-1a2B_x") == "case-ch-1a2b-x"
    start_case("flowtest", {"skip_review": True, "customer_name": "王五"}, case_id="FT-9")
    markdown = render_case(engine, "FT-9", flowchart=shutil.which("dot") is not None)
    assert "流程测试 / Flow test" in markdown and "王五" in markdown
    assert "| 1 |" in markdown and "`prepare`" in markdown  # the path taken
    if shutil.which("dot"):
        assert "![flowchart](data:image/svg+xml;base64," in markdown
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with client() as c:
        versions = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["case-ft-9"])))
    assert versions and versions[-1].type == "markdown" and "completed" in versions[-1].data


def test_a_clock_stopped_after_its_target_shows_breached_not_met_in_the_case_artifact(
        engine: Any, clock: FakeClock) -> None:
    from flows.artifacts import render_case

    case_id = engine.start("flowtest", {}, case_id="FT-9S")
    task = only_open_task(engine, case_id)
    clock.advance(timedelta(days=1))  # the 4-hour review target passes; no sweep ever fires the 100 % level
    engine.complete(task["id"], actor="li", role="agent", data={"decision": "approve"})
    sla_table = render_case(engine, case_id, flowchart=False).split("## SLA")[1].split("##")[0]
    row = next(line for line in sla_table.splitlines() if "4h" in line)
    assert "| breached |" in row and "| met |" not in row


def test_the_sweep_is_served_on_an_interval_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.sweep import sweep_deployment

    monkeypatch.setenv("SVCFLOW_SWEEP_INTERVAL_SECONDS", "45")
    assert sweep_deployment().schedules[0].schedule.interval == timedelta(seconds=45)
    assert sweep_deployment(90).schedules[0].schedule.interval == timedelta(seconds=90)


# -- crash safety -------------------------------------------------------------------------------------
CRASHY = """
id: crashy
version: 1
name: {zh: 崩溃测试, en: Crash test}
lanes:
  - {id: agent, name: {zh: 坐席, en: Agent}}
nodes:
  - {id: start, kind: start}
  - {id: one, kind: auto, handler: crash.effect}
  - {id: two, kind: auto, handler: crash.effect}
  - {id: end, kind: end}
edges:
  - {from: start, to: one}
  - {from: one, to: two}
  - {from: two, to: end}
"""


def crash_handler(folder: Path) -> Callable[[HandlerContext], dict[str, Any]]:
    """Writes its effect once per idempotency key, then blocks while `block-<step>` exists."""

    def effect(ctx: HandlerContext) -> dict[str, Any]:
        import time as _time

        effects = folder / "effects.txt"
        done = effects.read_text().split() if effects.exists() else []
        if ctx.idempotency_key not in done:
            with effects.open("a") as fh:
                fh.write(ctx.idempotency_key + "\n")
        if (folder / f"block-{ctx.node_id}").exists():
            (folder / f"in-{ctx.node_id}").touch()
            while (folder / f"block-{ctx.node_id}").exists():
                _time.sleep(0.05)
        return {}

    return effect


CHILD_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from engine.run.handlers import HandlerRegistry
from engine.definition.library import ProcessLibrary
from engine.store.sql import Store
from flows.case_flow import start_case
from flows.runtime import FlowEngine, configure
from tests.test_flows import CRASHY, crash_handler
folder = Path({folder!r})
registry = HandlerRegistry()
registry.add("crash.effect", crash_handler(folder))
library = ProcessLibrary()
library.add_text(CRASHY, "crashy.yaml")
configure(FlowEngine(Store({url!r}), library, handlers=registry))
start_case("crashy", case_id="CR-1")
"""


def test_a_run_killed_mid_step_is_continued_by_the_next_run_and_each_step_happens_once(
        prefect_api: str, tmp_path: Path) -> None:
    from flows.case_flow import continue_case
    from flows.runtime import FlowEngine, use_engine

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    (tmp_path / "block-two").touch()
    script = CHILD_SCRIPT.format(root=str(ROOT), folder=str(tmp_path), url=url)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=str(ROOT),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (tmp_path / "in-two").exists() or child.poll() is not None, timeout=60,
                   what="the step to block")
        assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
        os.kill(child.pid, signal.SIGKILL)  # dies after step two's side effect, before its commit
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    (tmp_path / "block-two").unlink()

    registry = HandlerRegistry()
    registry.add("crash.effect", crash_handler(tmp_path))
    lib = ProcessLibrary()
    lib.add_text(CRASHY, "crashy.yaml")
    engine = FlowEngine(Store(url), lib, handlers=registry)
    assert engine.case("CR-1").status == "running"
    with use_engine(engine):
        assert continue_case("CR-1")["status"] == "completed"
    view = engine.case("CR-1")
    completed = [e.node for e in view.events if e.type == "step_completed"]
    assert completed == ["one", "two"]
    effects = (tmp_path / "effects.txt").read_text().split()
    assert len(effects) == 2 and len(set(effects)) == 2
    assert [key.split(":")[2] for key in effects] == ["one", "two"]
    engine.store.dispose()


# -- two sweeps at once on PostgreSQL -----------------------------------------------------------------
@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL, dropped afterwards. CI=true must have the server."""
    if not postgres_available(POSTGRES_URL):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    import psycopg

    schema = f"flows_{uuid.uuid4().hex[:10]}"
    plain = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.postgres
def test_two_sweeps_at_once_apply_each_escalation_exactly_once(
        prefect_api: str, postgres_schema_url: str, clock: FakeClock, registry: HandlerRegistry,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.notify import PrefectEventNotifier
    from flows.runtime import FlowEngine, use_engine
    from flows.sweep import escalation_sweep

    monkeypatch.setenv("SVCFLOW_ARTIFACTS", "false")
    lib = library(SWEEPY)
    engines = [FlowEngine(Store(postgres_schema_url), lib, clock=clock, handlers=registry,
                          notifier=PrefectEventNotifier()) for _ in range(2)]
    cases = 40
    for i in range(cases):
        engines[0].start("sweepy", {"tier": "standard"}, case_id=f"PG-{i:03d}")
    clock.advance(timedelta(hours=2))
    import threading

    barrier = threading.Barrier(2)

    def sweep(engine: FlowEngine) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            with use_engine(engine):
                barrier.wait()
                return escalation_sweep(continue_moved=False)  # type: ignore[no-any-return]
        return run

    threads = [in_thread(sweep(e)) for e in engines]
    results = [finish_thread(t, box, timeout=120) for t, box in threads]
    assert sum(r["escalated"] for r in results) == cases * 3
    rows = engines[0].store.escalations()
    assert len(rows) == cases * 3
    assert len({(r["case_id"], r["clock_id"], r["level"]) for r in rows}) == cases * 3
    logged = engines[0].store.events(types=["escalated"])
    assert len(logged) == cases * 3
    for engine in engines:
        engine.store.dispose()


# -- notifiers -----------------------------------------------------------------------------------------
def test_smtp_notifier_mails_the_roles_addresses_and_composite_survives_a_failing_channel() -> None:
    from engine.run.events import Notify
    from flows.notify import CompositeNotifier, SmtpNotifier

    sent: list[Any] = []

    class FakeSmtp:
        def __init__(self, host: str, port: int) -> None:
            assert (host, port) == ("mail.local", 2525)

        def __enter__(self) -> FakeSmtp:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def send_message(self, msg: Any) -> None:
            sent.append(msg)

    class Broken:
        def notify(self, *args: Any) -> None:
            raise RuntimeError("channel down")

    smtp = SmtpNotifier("mail.local", 2525, "desk@example.test",
                        {"supervisor": ["boss@example.test"], "agent": ["a@example.test"]}, smtp_factory=FakeSmtp)
    command = Notify("breached", ("supervisor", "director"), "task:x", 2, 100, "limit missed")
    CompositeNotifier([Broken(), smtp]).notify("CH-1", "complaint_handling", command)
    assert len(sent) == 1
    assert sent[0]["To"] == "boss@example.test" and "CH-1" in sent[0]["Subject"]
    smtp.notify("CH-1", "complaint_handling", Notify("warned", ("nobody",), "c", 1, 50, "m"))
    assert len(sent) == 1


# -- the command line ------------------------------------------------------------------------------------
def test_svcflow_run_continues_a_case_through_its_flow(prefect_api: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from engine.run.handlers import default_registry
    from flows.runtime import configure

    from svcflow.cli import app
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "child.yaml").write_text(CHILD, encoding="utf-8")
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("SVCFLOW_PROCESS_DIR", str(defs))
    configure(None)
    default_registry().add("ft.child", lambda ctx: {"result": "cli"})
    try:
        result = CliRunner().invoke(app, ["run", "--process", "child_proc", "--set", "amount=3"])
        assert result.exit_code == 0, result.output
        case_id = re.search(r"case (\S+) is completed", result.output).group(1)  # type: ignore[union-attr]
        result = CliRunner().invoke(app, ["run", case_id, "--no-wait"])
        assert result.exit_code == 0, result.output
        assert f"case {case_id} is completed" in result.output
        result = CliRunner().invoke(app, ["run"])
        assert result.exit_code != 0 and "give a case id" in result.output
    finally:
        default_registry()._handlers.pop("ft.child", None)
        configure(None)


# -- served: suspended runs free the worker -----------------------------------------------------------
HUMANS = """
id: humans
version: 1
name: {zh: 两步人工, en: Two human steps}
lanes:
  - {id: agent, name: {zh: 坐席, en: Agent}}
nodes:
  - {id: start, kind: start}
  - id: first
    kind: human
    lane: agent
    form:
      - {id: answer, type: enum, label: {zh: 答复, en: Answer}, choices: ["yes", "no"], required: true}
      - {id: visit_on, type: date, label: {zh: 上门日期, en: Visit on}}
  - {id: check, kind: subprocess, process: checker, outputs: {checked: data.is_major}}
  - id: second
    kind: human
    lane: agent
    form:
      - {id: remark, type: text, label: {zh: 说明, en: Remark}, required: true}
  - {id: end, kind: end, outcome: done}
edges:
  - {from: start, to: first}
  - {from: first, to: check}
  - {from: check, to: second}
  - {from: second, to: end}
"""

CHECKER = """
id: checker
version: 1
name: {zh: 检查, en: Check}
data:
  is_major: {type: boolean, label: {zh: 重大, en: Major}, default: false}
  major_reasons: {type: list}
lanes:
  - {id: agent, name: {zh: 坐席, en: Agent}}
nodes:
  - {id: start, kind: start}
  - {id: detect, kind: auto, handler: complaints.detect_major}
  - {id: end, kind: end}
edges:
  - {from: start, to: detect}
  - {from: detect, to: end}
"""

SERVE_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from svcflow.commands_prefect import serve_deployments
serve_deployments(sweep=False)
"""


@contextlib.contextmanager
def serving(prefect_api: str, tmp_path: Path) -> Iterator[Any]:
    """`svcflow serve`'s deployments in their own process against the session's Prefect server, over
    a store of the HUMANS and CHECKER definitions; yields an engine on that store."""
    from flows.runtime import FlowEngine

    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "humans.yaml").write_text(HUMANS, encoding="utf-8")
    (defs / "checker.yaml").write_text(CHECKER, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'served.db'}"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SVCFLOW_DATABASE_URL": url,
           "SVCFLOW_PROCESS_DIR": str(defs), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "SVCFLOW_ARTIFACT_FLOWCHART": "false"}
    server = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT.format(root=str(ROOT))], env=env, cwd=str(ROOT),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    engine = FlowEngine(Store(url), ProcessLibrary.from_dir(defs))
    try:
        def deployed() -> Any:
            with client() as c:
                try:
                    return c.read_deployment_by_name("svcflow-case/run-case")
                except Exception:
                    return None

        wait_until(lambda: deployed() or server.poll() is not None, timeout=60, what="the deployment")
        assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
        yield engine
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        engine.store.dispose()


def suspended_on(engine: Any, case_id: str, node: str, previous: Any = None) -> tuple[Any, dict[str, Any]]:
    """The run suspended at the open task of `node` (with another pause key than `previous`), and the task."""
    def check() -> Any:
        tasks = [t for t in engine.open_tasks(case_id) if t["node"] == node] \
            if engine.store.case_exists(case_id) else []
        current = paused_run(f"task:{tasks[0]['id']}") if tasks else None
        if current is not None and current.state.name == "Suspended" \
                and current.state.state_details.pause_key != previous:
            return current, tasks[0]
        return None

    return wait_until(check, timeout=180, interval=0.2, what=f"a run suspended at {node}")  # type: ignore[no-any-return]


@pytest.mark.timeout(600)  # each served run is a new process: minutes on a loaded machine
def test_deployment_runs_suspend_at_human_steps_and_sub_cases_get_their_own_runs(
        prefect_api: str, tmp_path: Path) -> None:
    """The served path: a run suspends (its process exits) and Prefect re-runs it from the top when
    resumed; the store says where the case is, so the form's input or an external completion
    (resume_run_for_task) is applied once. A sub-case gets its own deployment run, and its end
    starts the parent's next run, which suspends at the next human step."""
    from prefect.deployments import run_deployment

    from flows.human import resume_run_for_task

    with serving(prefect_api, tmp_path) as engine:
        run = run_deployment("svcflow-case/run-case", timeout=0,
                             parameters={"case_id": "SU-1", "process_id": "humans"})
        current, task = suspended_on(engine, "SU-1", "first")
        assert current.id == run.id and current.name == "humans-SU-1"
        assert current.state.state_details.pause_reschedule
        with client() as c:
            c.resume_flow_run(run.id, run_input={"answer": "yes", "actor": "li"})
        current, second = suspended_on(engine, "SU-1", "second")  # after the sub-case's own run ended
        assert current.id != run.id and current.name == "humans-SU-1"
        state = engine.store.load_case("SU-1")[0]
        assert state.tasks[task["id"]].completed_by == "li" and state.data["checked"] is False
        child_id = engine.case("SU-1").children[0]
        child_run = flow_run_named(f"checker-{child_id}")  # its own run (it may suspend), tagged with its parent
        assert {"checker", f"case:{child_id}", "parent:SU-1"} <= set(child_run.tags)
        assert child_run.state.is_completed() and child_run.parent_task_run_id is None
        engine.complete(second["id"], actor="wang", role="agent", data={"remark": "done by phone"})
        assert resume_run_for_task(second["id"]) is True

        def finished() -> Any:
            with client() as c:
                state = c.read_flow_run(current.id).state
            return state if state.is_final() else None

        final = wait_until(finished, timeout=60, interval=0.2, what="the run to finish")
        assert final.is_completed(), final
        view = engine.case("SU-1")
        assert view.status == "completed"
        assert [e.node for e in view.events if e.type == "task_completed"] == ["first", "second"]
        assert [e.node for e in engine.case(child_id).events if e.type == "step_completed"] == ["detect"]


@pytest.mark.timeout(600)  # each served run is a new process: minutes on a loaded machine
def test_a_valid_resume_after_a_refused_one_is_applied_once_by_the_restarted_run(
        prefect_api: str, tmp_path: Path) -> None:
    """Served runs restart from the top on every resume. The refused input is not applied (or
    recorded) again on the replay, the form says why it was refused, and the next valid input —
    saved under the key of the re-opened form — completes the task."""
    from prefect.deployments import run_deployment

    with serving(prefect_api, tmp_path) as engine:
        run = run_deployment("svcflow-case/run-case", timeout=0,
                             parameters={"case_id": "SU-2", "process_id": "humans"})
        first, task = suspended_on(engine, "SU-2", "first")
        with client() as c:  # passes Prefect's schema check, refused by svcflow: no such date
            c.resume_flow_run(run.id, run_input={"answer": "yes", "actor": "li", "visit_on": "2025-02-30"})
        again, same = suspended_on(engine, "SU-2", "first", previous=first.state.state_details.pause_key)
        assert same["id"] == task["id"] and again.id == run.id
        assert again.state.message.startswith("上次提交被拒绝 / Last submission refused: «上门日期 / Visit on»")
        description = run_input(again, "description")
        assert "«上门日期 / Visit on»" in description and "refused" in description
        assert "visit_on" not in description.split("#### 要做什么")[0]  # the reason names the field by its label
        with client() as c:
            c.resume_flow_run(run.id, run_input={"answer": "no", "actor": "li", "visit_on": "2025-02-28"})
        suspended_on(engine, "SU-2", "second")
        view = engine.case("SU-2")
        assert view.state.tasks[task["id"]].completed_by == "li"
        assert view.data["answer"] == "no" and view.data["visit_on"] == "2025-02-28"
        assert len([e for e in view.events if e.type == "refused"]) == 1

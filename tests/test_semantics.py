"""How each node kind and escalation type behaves, on small inline definitions."""

from __future__ import annotations

from datetime import timedelta, UTC

import pytest

from engine.errors import InputError, TaskRefused
from engine.run.events import CompleteTask, StartCase
from engine.run.handlers import HandlerRegistry
from engine.run.interpreter import apply
from engine.definition.library import ProcessLibrary
from engine.store.serializer import state_json
from tests.conftest import MONDAY_9AM, SHANGHAI

HEAD = """
id: {id}
version: 1
name: {{zh: 测试, en: Test}}
lanes:
  - {{id: agent, name: {{zh: 坐席, en: Agent}}}}
  - {{id: supervisor, name: {{zh: 主管, en: Supervisor}}}}
  - {{id: director, name: {{zh: 总监, en: Director}}}}
"""


def definition(body: str, process_id: str = "demo") -> str:
    return HEAD.format(id=process_id) + body


LINEAR = definition("""
data:
  tier: {type: enum, choices: [gold, standard], default: standard}
nodes:
  - {id: start, kind: start}
  - id: handle
    kind: human
    lane: agent
    form:
      - {id: result, type: enum, choices: [ok, failed], required: true}
  - {id: done, kind: end, outcome: closed}
edges:
  - {from: start, to: handle}
  - {from: handle, to: done}
""")


def only_task(engine, case_id):
    tasks = engine.open_tasks(case_id)
    assert len(tasks) == 1, tasks
    return tasks[0]


def test_human_task_opens_and_completion_ends_the_case(make_engine):
    engine = make_engine(LINEAR)
    case_id = engine.start("demo", {})
    task = only_task(engine, case_id)
    assert task["node"] == "handle" and task["role"] == "agent"
    engine.complete(task["id"], actor="li", role="agent", data={"result": "ok"})
    view = engine.case(case_id)
    assert view.status == "completed" and view.outcome == "closed"
    assert view.data["result"] == "ok"
    assert view.path() == ["start", "handle", "done"]


def test_completing_a_task_twice_is_refused_and_recorded(make_engine):
    engine = make_engine(LINEAR)
    case_id = engine.start("demo", {})
    task = only_task(engine, case_id)
    engine.complete(task["id"], actor="li", role="agent", data={"result": "ok"})
    before = engine.case(case_id)
    with pytest.raises(TaskRefused, match="already completed by li"):
        engine.complete(task["id"], actor="wang", role="agent", data={"result": "failed"})
    after = engine.case(case_id)
    assert after.version == before.version and after.data["result"] == "ok"
    assert after.history[-1] == "refused"


def test_completing_without_the_role_is_refused_and_nothing_changes(make_engine):
    engine = make_engine(LINEAR)
    case_id = engine.start("demo", {})
    task = only_task(engine, case_id)
    version = engine.case(case_id).version
    with pytest.raises(TaskRefused, match="may not act on"):
        engine.complete(task["id"], actor="zhao", role="supervisor", data={"result": "ok"})
    view = engine.case(case_id)
    assert view.version == version and view.status == "running"
    refused = [e for e in view.events if e.type == "refused"]
    assert refused and refused[0].data["actor"] == "zhao"


def test_invalid_form_input_leaves_the_task_open_and_says_why(make_engine):
    engine = make_engine(LINEAR)
    case_id = engine.start("demo", {})
    task = only_task(engine, case_id)
    with pytest.raises(InputError, match="expected one of ok, failed"):
        engine.complete(task["id"], actor="li", role="agent", data={"result": "maybe"})
    with pytest.raises(InputError, match="'result'.*is required"):
        engine.complete(task["id"], actor="li", role="agent", data={})
    assert only_task(engine, case_id)["status"] == "open"


def test_bad_start_data_stores_nothing(make_engine):
    engine = make_engine(LINEAR)
    with pytest.raises(InputError, match="tier"):
        engine.start("demo", {"tier": "diamond"})
    assert engine.store.cases() == []


EXCLUSIVE = definition("""
data:
  amount: {type: number, required: true}
nodes:
  - {id: start, kind: start}
  - {id: route, kind: exclusive}
  - {id: big, kind: end, outcome: big}
  - {id: small, kind: end, outcome: small}
edges:
  - {from: start, to: route}
  - {from: route, to: big, when: "data.amount > 5000"}
  - {from: route, to: small, default: true}
""")


@pytest.mark.parametrize(("amount", "outcome"), [(7000, "big"), (7000.5, "big"), (100, "small")])
def test_exclusive_gateway_takes_the_first_true_condition_else_the_default(make_engine, amount, outcome):
    engine = make_engine(EXCLUSIVE)
    case_id = engine.start("demo", {"amount": amount})
    assert engine.case(case_id).outcome == outcome


PARALLEL = definition("""
nodes:
  - {id: start, kind: start}
  - {id: fork, kind: parallel}
  - {id: a, kind: human, lane: agent}
  - {id: b, kind: human, lane: supervisor}
  - {id: join, kind: parallel}
  - {id: done, kind: end}
edges:
  - {from: start, to: fork}
  - {from: fork, to: a}
  - {from: fork, to: b}
  - {from: a, to: join}
  - {from: b, to: join}
  - {from: join, to: done}
""")


def test_parallel_join_waits_for_every_branch(make_engine):
    engine = make_engine(PARALLEL)
    case_id = engine.start("demo", {})
    tasks = {t["node"]: t for t in engine.open_tasks(case_id)}
    assert set(tasks) == {"a", "b"}
    engine.complete(tasks["a"]["id"], actor="li", role="agent")
    assert engine.case(case_id).status == "running"
    engine.complete(tasks["b"]["id"], actor="wu", role="supervisor")
    view = engine.case(case_id)
    assert view.status == "completed"
    assert view.path().count("done") == 1


INCLUSIVE = definition("""
data:
  legal: {type: boolean, default: false}
  finance: {type: boolean, default: false}
nodes:
  - {id: start, kind: start}
  - {id: fork, kind: inclusive}
  - {id: legal_review, kind: human, lane: agent}
  - {id: finance_review, kind: human, lane: supervisor}
  - {id: basic_review, kind: human, lane: agent}
  - {id: join, kind: inclusive}
  - {id: done, kind: end}
edges:
  - {from: start, to: fork}
  - {from: fork, to: legal_review, when: data.legal}
  - {from: fork, to: finance_review, when: data.finance}
  - {from: fork, to: basic_review, default: true}
  - {from: legal_review, to: join}
  - {from: finance_review, to: join}
  - {from: basic_review, to: join}
  - {from: join, to: done}
""")


def test_inclusive_split_takes_every_true_branch_and_the_join_waits_for_those_only(make_engine):
    engine = make_engine(INCLUSIVE)
    case_id = engine.start("demo", {"legal": True, "finance": True})
    tasks = {t["node"]: t for t in engine.open_tasks(case_id)}
    assert set(tasks) == {"legal_review", "finance_review"}
    engine.complete(tasks["legal_review"]["id"], actor="li", role="agent")
    assert engine.case(case_id).status == "running"
    engine.complete(tasks["finance_review"]["id"], actor="wu", role="supervisor")
    assert engine.case(case_id).status == "completed"


def test_inclusive_split_with_no_true_condition_takes_the_default_alone(make_engine):
    engine = make_engine(INCLUSIVE)
    case_id = engine.start("demo", {})
    task = only_task(engine, case_id)
    assert task["node"] == "basic_review"
    engine.complete(task["id"], actor="li", role="agent")
    assert engine.case(case_id).status == "completed"


TIMER = definition("""
nodes:
  - {id: start, kind: start}
  - {id: wait, kind: timer, duration: 1d}
  - {id: done, kind: end}
edges:
  - {from: start, to: wait}
  - {from: wait, to: done}
""")


def test_timer_waits_in_business_time_and_fires_on_the_sweep(make_engine, clock):
    engine = make_engine(TIMER)
    case_id = engine.start("demo", {})  # Monday 09:00; one business day later is Monday 18:00
    clock.advance(timedelta(hours=8, minutes=59))
    engine.sweep()
    assert engine.case(case_id).status == "running"
    clock.advance(timedelta(minutes=1))
    engine.sweep()
    view = engine.case(case_id)
    assert view.status == "completed" and "timer_fired" in view.history


MESSAGE = definition("""
clocks:
  - id: resolution
    policies: [{target: 2h}]
    stop_on: [close]
nodes:
  - {id: start, kind: start}
  - {id: reply, kind: message, message: customer_reply, fields: {accepted: {type: boolean, required: true}}}
  - {id: close, kind: human, lane: agent}
  - {id: done, kind: end}
edges:
  - {from: start, to: reply}
  - {from: reply, to: close}
  - {from: close, to: done}
""")


def test_waiting_for_a_message_pauses_the_case_clock_and_the_reply_resumes_it(make_engine, clock):
    engine = make_engine(MESSAGE)
    case_id = engine.start("demo", {})
    clock.advance(timedelta(hours=5))
    engine.sweep()
    state = engine.case(case_id).state
    assert state.clocks["case:resolution"].status == "paused" and not state.clocks["case:resolution"].breached
    engine.send_message(case_id, "customer_reply", {"accepted": "yes"})
    view = engine.case(case_id)
    assert view.data["accepted"] is True
    assert view.state.clocks["case:resolution"].status == "running"
    assert {"sla_paused", "sla_resumed"} <= set(view.history)


def test_a_message_the_case_does_not_wait_for_is_refused(make_engine):
    engine = make_engine(MESSAGE)
    case_id = engine.start("demo", {})
    with pytest.raises(TaskRefused, match="not waiting for message 'other'"):
        engine.send_message(case_id, "other", {})


AUTO = definition("""
data:
  amount: {type: number, default: 0}
nodes:
  - {id: start, kind: start}
  - id: score
    kind: auto
    handler: test.score
    retries: 2
    outputs: {score: {type: integer}}
    compute: {doubled: "data.score * 2"}
  - {id: done, kind: end}
edges:
  - {from: start, to: score}
  - {from: score, to: done}
""")


def test_automatic_step_runs_its_handler_with_retries_and_computes_values(make_engine):
    calls: list[int] = []
    handlers = HandlerRegistry()

    @handlers.register("test.score")
    def score(ctx):
        calls.append(ctx.attempt)
        if len(calls) < 3:
            raise RuntimeError("flaky")
        return {"score": 21}

    engine = make_engine(AUTO, handlers=handlers)
    case_id = engine.start("demo", {})
    view = engine.case(case_id)
    assert calls == [1, 2, 3]
    assert view.status == "completed" and view.data["score"] == 21 and view.data["doubled"] == 42


def test_automatic_step_that_keeps_failing_parks_the_case_as_an_incident(make_engine):
    handlers = HandlerRegistry()
    handlers.add("test.score", lambda ctx: (_ for _ in ()).throw(RuntimeError("down")))
    engine = make_engine(AUTO, handlers=handlers)
    case_id = engine.start("demo", {})
    view = engine.case(case_id)
    assert view.status == "incident" and "step_failed" in view.history


CHILD = definition("""
data:
  n: {type: integer, default: 1}
nodes:
  - {id: start, kind: start}
  - {id: work, kind: human, lane: agent, form: [{id: answer, type: integer, required: true}]}
  - {id: done, kind: end, outcome: answered}
edges:
  - {from: start, to: work}
  - {from: work, to: done}
""", process_id="child")

PARENT = definition("""
data:
  n: {type: integer, default: 3}
nodes:
  - {id: start, kind: start}
  - id: call
    kind: subprocess
    process: child
    inputs: {n: "data.n + 1"}
    outputs: {child_answer: "data.answer"}
  - {id: done, kind: end}
edges:
  - {from: start, to: call}
  - {from: call, to: done}
""", process_id="parent")


def test_subprocess_gets_data_in_and_gives_data_back(make_engine):
    engine = make_engine(CHILD, PARENT)
    case_id = engine.start("parent", {})
    view = engine.case(case_id)
    assert len(view.children) == 1
    child = engine.case(view.children[0])
    assert child.data["n"] == 4
    task = only_task(engine, child.state.case_id)
    engine.complete(task["id"], actor="li", role="agent", data={"answer": 42})
    parent = engine.case(case_id)
    assert parent.status == "completed" and parent.data["child_answer"] == 42


LOOP = definition("""
data:
  rounds: {type: integer, default: 0}
parameters:
  max_rounds: 2
nodes:
  - {id: start, kind: start}
  - {id: handle, kind: human, lane: agent, compute: {rounds: "data.rounds + 1"},
     form: [{id: accepted, type: boolean, required: true}]}
  - {id: check, kind: exclusive}
  - {id: escalate, kind: human, lane: supervisor}
  - {id: done, kind: end}
edges:
  - {from: start, to: handle}
  - {from: handle, to: check}
  - {from: check, to: done, when: data.accepted}
  - {from: check, to: escalate, when: "data.rounds >= params.max_rounds"}
  - {from: check, to: handle, default: true}
  - {from: escalate, to: done}
""")


def test_rework_loop_repeats_until_its_bound_then_escalates(make_engine):
    engine = make_engine(LOOP)
    case_id = engine.start("demo", {})
    for _ in range(2):
        task = only_task(engine, case_id)
        assert task["node"] == "handle"
        engine.complete(task["id"], actor="li", role="agent", data={"accepted": False})
    task = only_task(engine, case_id)
    assert task["node"] == "escalate"
    assert engine.case(case_id).state.visits["handle"] == 2


ESCALATION = definition("""
data:
  tier: {type: enum, choices: [gold, standard], default: standard}
ladders:
  ladder:
    - {at: 50, notify: [agent]}
    - {at: 100, notify: [supervisor], raise_priority: high}
    - {at: 150, notify: [director], reassign: supervisor}
    - {at: 200, notify: [director], route: to_director}
nodes:
  - {id: start, kind: start}
  - id: handle
    kind: human
    lane: agent
    sla:
      policies:
        - {when: 'data.tier == "gold"', target: 2h}
        - {target: 4h}
      escalation: ladder
  - {id: director_review, kind: human, lane: director}
  - {id: done, kind: end}
edges:
  - {from: start, to: handle}
  - {from: handle, to: done}
  - {id: to_director, from: handle, to: director_review, kind: escalation}
  - {from: director_review, to: done}
""")


def _advance_and_sweep(engine, clock, hours: float):
    clock.advance(timedelta(hours=hours))
    return engine.sweep()


def test_sla_warns_at_fifty_percent_and_notifies_the_role(make_engine, clock):
    engine = make_engine(ESCALATION)
    case_id = engine.start("demo", {})  # 4 business hours from Monday 09:00
    _advance_and_sweep(engine, clock, 2)  # 11:00 = 50 %
    view = engine.case(case_id)
    assert "sla_warned" in view.history and "sla_breached" not in view.history
    assert engine.notifier.sent[-1][1].roles == ("agent",)


def test_breach_raises_priority_and_lets_the_supervisor_complete(make_engine, clock):
    engine = make_engine(ESCALATION)
    case_id = engine.start("demo", {})
    _advance_and_sweep(engine, clock, 5.5)  # 09:00 + 4 business hours (lunch 12:00-13:30) = 14:30
    view = engine.case(case_id)
    assert "sla_breached" in view.history
    task = only_task(engine, case_id)
    assert task["priority"] == "high" and task["escalation_level"] == 2
    engine.complete(task["id"], actor="wu", role="supervisor")
    assert engine.case(case_id).status == "completed"


def test_escalation_reassigns_the_task_to_a_role(make_engine, clock):
    engine = make_engine(ESCALATION)
    case_id = engine.start("demo", {})
    _advance_and_sweep(engine, clock, 7.75)  # Monday 16:45: 6.25 business hours = 156 %
    task = only_task(engine, case_id)
    assert task["role"] == "supervisor" and task["escalation_level"] == 3


def test_interrupting_escalation_routes_the_case_along_its_escalation_edge(make_engine, clock):
    engine = make_engine(ESCALATION)
    case_id = engine.start("demo", {})
    _advance_and_sweep(engine, clock, 48)  # Wednesday 09:00: 15 business hours = 375 %
    task = only_task(engine, case_id)
    assert task["node"] == "director_review"
    view = engine.case(case_id)
    assert [e.data.get("level") for e in view.events if e.type == "escalated"] == [1, 2, 3, 4]
    assert "task_cancelled" in view.history


def test_each_escalation_level_fires_once_even_when_swept_repeatedly(make_engine, clock):
    engine = make_engine(ESCALATION)
    case_id = engine.start("demo", {})
    for _ in range(3):
        _advance_and_sweep(engine, clock, 1)
    warned = [e for e in engine.case(case_id).events if e.type == "sla_warned"]
    assert len(warned) == 1


def test_policy_chooses_the_target_by_tier(make_engine):
    engine = make_engine(ESCALATION)
    gold = engine.start("demo", {"tier": "gold"})
    standard = engine.start("demo", {"tier": "standard"})
    assert only_task(engine, gold)["due_at"] < only_task(engine, standard)["due_at"]


def test_reclassifying_keeps_the_start_time_and_retargets(make_engine, clock):
    engine = make_engine(ESCALATION)
    case_id = engine.start("demo", {"tier": "standard"})
    clock.advance(timedelta(hours=1))
    engine.update(case_id, {"tier": "gold"})
    state = engine.case(case_id).state
    task = state.open_tasks()[0]
    task_clock = state.clocks[f"task:{task.id}"]
    assert task_clock.started_at.isoformat().startswith("2025-09-22T09:00")
    assert task_clock.target_text == "2h"
    assert task.due_at is not None and task.due_at.astimezone(SHANGHAI).hour == 11
    assert "sla_retargeted" in engine.case(case_id).history


def test_running_cases_stay_on_the_definition_version_they_started_with(make_engine):
    engine = make_engine(LINEAR)
    case_id = engine.start("demo", {})
    engine.library.add_text(LINEAR.replace("version: 1", "version: 2").replace("outcome: closed", "outcome: v2"),
                            "inline-v2.yaml")
    task = only_task(engine, case_id)
    engine.complete(task["id"], actor="li", role="agent", data={"result": "ok"})
    assert engine.case(case_id).outcome == "closed"
    new_case = engine.start("demo", {})
    engine.complete(only_task(engine, new_case)["id"], actor="li", role="agent", data={"result": "ok"})
    assert engine.case(new_case).outcome == "v2"


def test_case_priority_follows_data_written_by_a_task(make_engine):
    text = LINEAR.replace("nodes:", 'case_priority: \'data.tier == "gold" ? "high" : "normal"\'\nnodes:').replace(
        "      - {id: result, type: enum, choices: [ok, failed], required: true}",
        "      - {id: result, type: enum, choices: [ok, failed], required: true}\n"
        "      - {id: tier, type: enum, choices: [gold, standard]}")
    engine = make_engine(text)
    case_id = engine.start("demo", {})
    assert engine.case(case_id).state.priority == "normal"
    engine.complete(only_task(engine, case_id)["id"], actor="li", role="agent", data={"result": "ok", "tier": "gold"})
    assert engine.case(case_id).state.priority == "high"


def test_an_accelerated_clock_is_shared_between_processes_through_its_spec():
    from datetime import datetime

    from engine.time.clock import AcceleratedClock, FakeClock, clock_from_spec

    real = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    start = datetime(2025, 9, 22, 9, 0, tzinfo=SHANGHAI)
    clock = AcceleratedClock(start, 3600, real=real)
    real.advance(timedelta(seconds=2))
    assert clock.now() == start + timedelta(hours=2)
    same = clock_from_spec(clock.spec())
    assert isinstance(same, AcceleratedClock) and same._origin == clock._origin and same._factor == 3600
    with pytest.raises(ValueError, match="SVCFLOW_CLOCK"):
        clock_from_spec("fast")


def test_an_assigned_person_may_complete_the_task_without_holding_its_role(make_engine):
    engine = make_engine(LINEAR)
    case_id = engine.start("demo", {})
    task = only_task(engine, case_id)
    engine.assign(task["id"], "expert_chen", actor="wu", role="agent")
    assert only_task(engine, case_id)["assignee"] == "expert_chen"
    engine.complete(task["id"], actor="expert_chen", role="quality", data={"result": "ok"})
    assert engine.case(case_id).status == "completed"
    assert "task_assigned" in engine.case(case_id).history


def test_assigning_requires_the_tasks_role(make_engine):
    engine = make_engine(LINEAR)
    case_id = engine.start("demo", {})
    task = only_task(engine, case_id)
    with pytest.raises(TaskRefused, match="may not act on"):
        engine.assign(task["id"], "me", actor="zhao", role="director")
    assert only_task(engine, case_id)["assignee"] is None


def _linear_start():
    library = ProcessLibrary()
    graph = library.graph_of(library.add_text(LINEAR, "linear.yaml"))
    started = apply(graph, None, StartCase("C-1", {}), MONDAY_9AM)
    return graph, started.state, MONDAY_9AM


def test_apply_leaves_the_given_state_untouched_by_default():
    graph, state, now = _linear_start()
    before = state_json(state)
    task_id = next(iter(state.tasks))
    after = apply(graph, state, CompleteTask(task_id, "li", "agent", {"result": "ok"}), now).state
    assert after is not state and after.status == "completed"
    assert state_json(state) == before


def test_apply_with_reuse_state_advances_the_given_state_itself():
    graph, state, now = _linear_start()
    task_id = next(iter(state.tasks))
    after = apply(graph, state, CompleteTask(task_id, "li", "agent", {"result": "ok"}), now, reuse_state=True).state
    assert after is state and state.status == "completed"


@pytest.mark.parametrize("actor, role, output", [
    ("li", "director", {"result": "ok"}),  # a role the task does not belong to
    ("li", "agent", {"result": "maybe"}),  # a value the form refuses
])
def test_a_refusal_with_reuse_state_leaves_the_given_state_unchanged(actor, role, output):
    graph, state, now = _linear_start()
    before = state_json(state)
    task_id = next(iter(state.tasks))
    with pytest.raises((TaskRefused, InputError)):
        apply(graph, state, CompleteTask(task_id, actor, role, output), now, reuse_state=True)
    assert state_json(state) == before

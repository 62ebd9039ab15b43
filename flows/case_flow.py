"""Every case runs as Prefect flow runs named `<process>-<case id>`: short segments over the store.

A segment loads the case, lets `Engine.recover` run whatever automatic work is outstanding
(as Prefect tasks named after the steps), runs running sub-cases as linked child flow runs,
waits at a human step with a Resume form, and ends when the case ends or only timers and
messages remain. Because the store is the truth and the engine applies each step result once
(token attempt + idempotency key), a run may die at any moment: running the case again
continues where the store says it is. The sweep or a message moves a waiting case on, and a
new run (`run_case(case_id)`, also a deployment) continues it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from prefect import flow, tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.logging import get_run_logger
from prefect.states import State

from engine.errors import ConcurrentModification, NotFound
from engine.run.state import InstanceState
from flows.artifacts import publish_case_artifact
from flows.human import resume_runs_for_case, wait_for_task, waiting_mode
from flows.runtime import FlowEngine, collecting, get_engine, segment
from flows.settings import FlowSettings, get_flow_settings

log = logging.getLogger("svcflow.flows")

CASE_FLOW_NAME = "svcflow-case"
ENDED = ("completed", "cancelled")
_MANAGED_PREFIXES = ("case:", "task:", "tier:", "parent:")
_STACK: ContextVar[tuple[str, ...]] = ContextVar("svcflow_case_stack", default=())


def case_run_name(case_id: str, process_id: str) -> str:
    return f"{process_id}-{case_id}"


def is_major(state: InstanceState) -> bool:
    """Major complaints get a tag so the crisis desk can filter their runs in the UI."""
    return state.process_id == "major_complaint" or state.data.get("is_major") is True


def case_tags(state: InstanceState) -> list[str]:
    """Process id, `case:<id>` (how resumes find the run), `parent:<id>` for sub-cases, `tier:<tier>` and
    `major` where they apply."""
    result = [state.process_id, f"case:{state.case_id}"]
    if state.parent_case:
        result.append(f"parent:{state.parent_case}")
    if state.tier:
        result.append(f"tier:{state.tier}")
    if is_major(state):
        result.append("major")
    return result


def sync_run_tags(wanted: Iterable[str], processes: Iterable[str] = ()) -> None:
    """Make the current flow run's tags follow the case (data changes tier and major on the way).

    Tags a child run inherited from its parent's run (the parent's case, process, task) are ours
    to replace; any other tag (a deployment's, an operator's) stays.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    current = set(run.tags or [])
    managed = set(processes) | {"major"}
    keep = {t for t in current if not t.startswith(_MANAGED_PREFIXES) and t not in managed}
    desired = keep | set(wanted)
    if desired == current:
        return
    try:
        client = context.client
        if hasattr(client, "__aenter__"):  # an async flow's client: use a short-lived sync one
            with get_client(sync_client=True) as sync_client:
                sync_client.update_flow_run(run.id, tags=sorted(desired))
        else:
            client.update_flow_run(run.id, tags=sorted(desired))
        run.tags = sorted(desired)
    except Exception as exc:
        log.warning("could not update the tags of flow run %s: %s", run.name, exc)


def _flow_run_name() -> str:
    context = FlowRunContext.get()
    parameters: Mapping[str, Any] = (context.parameters or {}) if context is not None else {}
    case_id = str(parameters.get("case_id"))
    process_id = parameters.get("process_id")
    if not process_id:
        try:
            process_id = get_engine().store.load_case(case_id)[0].process_id
        except NotFound:
            process_id = "case"
    return case_run_name(case_id, str(process_id))


def _summary(engine: FlowEngine, case_id: str, outcome: str) -> dict[str, Any]:
    state, _ = engine.store.load_case(case_id)
    return {
        "case_id": case_id, "process_id": state.process_id, "status": state.status, "outcome": state.outcome,
        "segment": outcome, "at": sorted({t.node for t in state.tokens.values()}),
        "open_tasks": [t.id for t in state.open_tasks()],
    }


def _next_child(engine: FlowEngine, state: InstanceState, done: set[str]) -> str | None:
    for token in sorted(state.tokens.values(), key=lambda t: (t.since, t.id)):
        child = token.child_case
        if child and child not in done and engine.store.case_exists(child):
            child_state, _ = engine.store.load_case(child)
            if child_state.status not in ENDED:
                return child
    return None


def drive_case(engine: FlowEngine, case_id: str, *, wait_for_humans: bool = True,
               settings: FlowSettings | None = None) -> dict[str, Any]:
    """One segment of a case, inside its flow run. Returns what the case waits for at the end."""
    settings = settings or get_flow_settings()
    logger = get_run_logger()
    mode = waiting_mode(settings) if wait_for_humans else "none"
    stack = (*_STACK.get(), case_id)
    stack_token = _STACK.set(stack)
    ran_children: set[str] = set()
    pauses: dict[str, int] = {}
    processes = engine.library.process_ids()
    outcome = "waiting"
    try:
        with collecting() as touched:
            while True:
                with segment(case_id):
                    state = engine.recover(case_id)
                sync_run_tags(case_tags(state), processes)
                if settings.artifacts:
                    publish_case_artifact(engine, case_id, zone=settings.display_timezone,
                                          flowchart=settings.artifact_flowchart)
                if state.status in ENDED:
                    outcome = state.status
                    break
                child = _next_child(engine, state, ran_children)
                if child is not None:
                    ran_children.add(child)
                    if mode == "suspend" and trigger_child_run(engine, child, settings):
                        continue  # its own linked run on its own worker slot; its end wakes this case
                    run_child_case(child, wait_for_humans=wait_for_humans)
                    continue
                open_tasks = sorted(state.open_tasks(), key=lambda t: (t.created_at, t.id))
                if not open_tasks or mode == "none":
                    outcome = "incident" if state.status == "incident" and not open_tasks else "waiting"
                    break
                task = open_tasks[0]
                attempt = pauses.get(task.id, 0)
                pauses[task.id] = attempt + 1
                sync_run_tags([*case_tags(state), f"task:{task.id}"], processes)
                result = wait_for_task(engine, case_id, task.id, settings=settings, mode=mode, attempt=attempt)
                if result == "timeout":
                    outcome = "timeout"
                    break
        # served, a case that now waits for a person needs a run too: that run shows the form
        wanted = {"step", "child", "task_opened"} if mode == "suspend" else {"step", "child"}
        elsewhere = {other for other, kinds in touched.items()
                     if other not in stack and other not in ran_children and kinds & wanted}
    finally:
        _STACK.reset(stack_token)
    if elsewhere:
        logger.info("case %s moved other cases on: %s", case_id, ", ".join(sorted(elsewhere)))
        continue_cases(sorted(elsewhere), engine=engine)
    if outcome == "incident":
        logger.warning("case %s has an incident: %s", case_id,
                       "; ".join(t.incident or "" for t in state.tokens.values() if t.incident))
    return _summary(engine, case_id, outcome)


@flow(name=CASE_FLOW_NAME, flow_run_name=_flow_run_name, log_prints=False, persist_result=False)
def run_case(case_id: str, process_id: str | None = None, data: dict[str, Any] | None = None,
             actor: str | None = None, wait_for_humans: bool = True) -> dict[str, Any]:
    """Run (or continue) one case: start it first when it does not exist and `process_id` is given."""
    engine = get_engine()
    if not engine.store.case_exists(case_id):
        if not process_id:
            raise NotFound(f"no case with id '{case_id}'", hint="give process_id (and data) to start it")
        try:
            with segment(case_id):
                engine.start(process_id, data or {}, actor=actor, case_id=case_id)
        except ConcurrentModification:
            pass  # started meanwhile by another run of the same case: continue it
    return drive_case(engine, case_id, wait_for_humans=wait_for_humans)


def _call(case_id: str, wanted_tags: list[str], **parameters: Any) -> dict[str, Any]:
    """Call the flow with the case's tags on the new run; a run that ended badly still reports the case."""
    with tags(*wanted_tags):
        state: State[Any] = run_case(case_id, return_state=True, **parameters)
    engine = get_engine()
    if state.is_completed():
        return state.result()
    if not engine.store.case_exists(case_id):
        state.result()  # raises why the case could not start (bad data, unknown process)
    summary = _summary(engine, case_id, state.name.lower() if state.name else "failed")
    summary["flow_state"] = state.name
    summary["message"] = state.message
    return summary


def start_case(process_id: str, data: Mapping[str, Any] | None = None, *, actor: str | None = None,
               case_id: str | None = None, wait_for_humans: bool = True) -> dict[str, Any]:
    """Start a case inside its flow run, so its first automatic steps are task runs too."""
    engine = get_engine()
    case_id = case_id or engine.id_factory(process_id)
    initial = [process_id, f"case:{case_id}"]
    tier = (data or {}).get("tier")
    if tier:
        initial.append(f"tier:{tier}")
    return _call(case_id, initial, process_id=process_id, data=dict(data or {}), actor=actor,
                 wait_for_humans=wait_for_humans)


def continue_case(case_id: str, *, wait_for_humans: bool = True) -> dict[str, Any]:
    """Run the next segment of an existing case (`svcflow run CASE_ID`)."""
    engine = get_engine()
    state, _ = engine.store.load_case(case_id)
    return _call(case_id, case_tags(state), process_id=state.process_id, wait_for_humans=wait_for_humans)


def run_child_case(child_id: str, *, wait_for_humans: bool) -> dict[str, Any]:
    """A sub-case as a child flow run of the parent's run (Prefect links it through a parent task run)."""
    return continue_case(child_id, wait_for_humans=wait_for_humans)


def trigger_child_run(engine: FlowEngine, child_id: str, settings: FlowSettings) -> bool:
    """Served, a sub-case gets its own deployment run, tagged `parent:<case>`. Not a Prefect subflow
    on purpose: a subflow cannot suspend, so every sub-case waiting for people (a major complaint
    waits days) would hold a worker slot; its end starts this case's next run."""
    state, _ = engine.store.load_case(child_id)
    return trigger_deployment_run(child_id, settings, state) is not None


def deployment_context() -> bool:
    """Whether this run came from a deployment (served): then new work goes to deployment runs."""
    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def trigger_deployment_run(case_id: str, settings: FlowSettings, state: InstanceState) -> FlowRun | None:
    """Hand the case to the served `run_case` deployment (frees this run; the worker waits for people)."""
    from prefect.deployments import run_deployment

    try:
        return run_deployment(settings.case_deployment, parameters={"case_id": case_id}, timeout=0,  # type: ignore[return-value]
                              tags=case_tags(state), as_subflow=False,
                              flow_run_name=case_run_name(case_id, state.process_id))
    except Exception as exc:
        log.warning("could not trigger %s for case %s: %s", settings.case_deployment, case_id, exc)
        return None


def continue_cases(case_ids: Iterable[str], *, engine: FlowEngine | None = None,
                   settings: FlowSettings | None = None) -> dict[str, str]:
    """Move cases on after someone else changed them: wake their paused run, else start a run.

    From a deployment the new run is a deployment run (it may then wait for people); locally it
    is a child flow run that stops at the first human step, so the caller is never blocked.
    """
    engine = engine or get_engine()
    settings = settings or get_flow_settings()
    done: dict[str, str] = {}
    for case_id in case_ids:
        if resume_runs_for_case(case_id):
            done[case_id] = "resumed"
            continue
        state, _ = engine.store.load_case(case_id)
        if state.status in ENDED:
            done[case_id] = state.status
            continue
        if deployment_context() and trigger_deployment_run(case_id, settings, state) is not None:
            done[case_id] = "triggered"
            continue
        summary = continue_case(case_id, wait_for_humans=False)
        done[case_id] = f"ran: {summary.get('status')}"
    return done


def complete_in_case_run(gate: Any, principal: Any, task_id: str, values: Mapping[str, Any], *,
                         role: str | None = None, wait_seconds: float = 60.0,
                         poll_seconds: float = 0.5) -> InstanceState:
    """`svcflow complete` with Prefect: the completion is stored here, the automatic steps it releases
    run in the case's flow run (as task runs the UI shows), and the state returned is where the case
    is once that run has done them (or after `wait_seconds`).

    The store takes the completion with every step left outstanding (as a crashed runner leaves
    it); then the run paused on the task is resumed, or else a served deployment run is started,
    or else — no deployment — a local flow run of the case runs the steps and stops at the next
    person. Refusals raise as from `Gate.complete`, with nothing changed in Prefect.
    """
    import time

    from flows.human import resume_run_for_task
    from flows.runtime import DEFER_ALL
    from flows.waiting import outstanding_work

    from engine.access import Gate

    engine = FlowEngine.wrap(gate.engine)
    deferred = Gate(engine, gate.directory, supervisor_roles=gate.supervisor_roles, required=gate.required)
    with segment(DEFER_ALL):
        state = deferred.complete(principal, task_id, dict(values), role=role)
    case_id = state.case_id
    if not outstanding_work(engine, state):
        resume_run_for_task(task_id)  # a paused run re-reads the store and waits at the next step
        return state
    moved = hand_over(state, task_id)
    if not moved:
        try:
            continue_case(case_id, wait_for_humans=False)
        except Exception as exc:  # Prefect unreachable: the completion is stored, so do the steps here
            log.warning("case %s: no flow run could take the steps (%s); running them in this process", case_id, exc)
            engine.recover(case_id)
        return engine.store.load_case(case_id)[0]
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        state = engine.store.load_case(case_id)[0]
        if not outstanding_work(engine, state):
            return state
        time.sleep(poll_seconds)
    return engine.store.load_case(case_id)[0]


def hand_over(state: InstanceState, task_id: str | None = None, settings: FlowSettings | None = None) -> bool:
    """After a change made outside any flow run: let the case's run carry on — the run paused on the
    task (or any paused run of the case) re-reads the store, else a served run is started. False
    when there is neither (no served deployment): the caller runs the case itself."""
    from flows.human import resume_run_for_task

    settings = settings or get_flow_settings()
    if task_id is not None and resume_run_for_task(task_id):
        return True
    if resume_runs_for_case(state.case_id) > 0:
        return True
    return _deployment_exists(settings.case_deployment) and \
        trigger_deployment_run(state.case_id, settings, state) is not None


def _deployment_exists(name: str) -> bool:
    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
        return True
    except Exception:
        return False


__all__ = [
    "CASE_FLOW_NAME", "complete_in_case_run", "hand_over", "case_run_name", "case_tags", "continue_case", "continue_cases", "drive_case", "is_major",
    "run_case", "start_case",
]

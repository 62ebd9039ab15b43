"""The pure interpreter: (graph, instance state, event, now) -> (new state, commands, log).

No I/O, no clock of its own, no randomness: the same input gives the same output. That is
what makes crash recovery (re-apply from the store), replay, simulation and tests cheap.
Refusals (wrong role, task already done, bad form input) raise before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Mapping
from typing import Any, assert_never

from engine.time import sla
from engine.definition.model import (
    PRIORITIES, AutoTask, CaseClock, Edge, EndNode, EscalationLevel, ExclusiveGateway, HumanTask, InclusiveGateway,
    MessageWait, ParallelGateway, StartNode, SubProcess, TimerWait,
)
from engine.errors import InputError, SvcflowError, TaskRefused
from engine.messages import say
from engine.run.events import (
    AssignTask, AutoStepDone, AutoStepFailed, CancelCase, CaseEnded, ChildFinished, Command, CompleteTask, Event, LogEntry,
    MessageArrived, Notify, RecordIncident, RunAutoStep, StartCase, StartChild, TaskClosed, TaskOpened, Tick, UpdateData,
)
from engine.expressions.cel import ExpressionError, compile_expression
from engine.run.forms import check_fields
from engine.definition.graph import ProcessGraph
from engine.run import log
from engine.run.state import InstanceState, SlaClock, Task, Token

MAX_STEPS_PER_EVENT = 10_000
_new_entry = tuple.__new__


@dataclass
class Transition:
    state: InstanceState
    commands: list[Command] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)


def apply(graph: ProcessGraph, state: InstanceState | None, event: Event, now: datetime, *,
          reuse_state: bool = False) -> Transition:
    """Apply one event. `state` is None only for StartCase.

    The input state is never modified, unless the caller gives it up with `reuse_state`: then it
    becomes the new state instead of being copied first (the simulator keeps no old states, and
    the copy was a tenth of its cost). Refusals raise before anything changes either way.
    """
    if isinstance(event, StartCase):
        if state is not None:
            raise SvcflowError(f"case {state.case_id} has already started")
        run = _Run(graph, _new_state(graph, event, now), now)
        run.start(event)
        return run.result()
    if state is None:
        raise SvcflowError("no case state given for an event other than StartCase")
    if state.definition_hash != graph.hash:
        raise SvcflowError(
            f"case {state.case_id} runs definition {state.definition_hash}, not {graph.hash}",
            hint="load the graph of the version the case started with",
        )
    run = _Run(graph, state if reuse_state else state.clone(), now)
    run.dispatch(event)
    return run.result()


def case_scope(state: InstanceState, params: dict[str, Any]) -> dict[str, Any]:
    """What expressions see: data, steps, params and a few facts about the case."""
    return {
        "data": state.data,
        "steps": state.steps,
        "params": params,
        "case": {
            "id": state.case_id,
            "process_id": state.process_id,
            "priority": state.priority,
            "tier": state.tier or "",
            "started_at": state.started_at.isoformat(),
            "status": state.status,
        },
    }


def _new_state(graph: ProcessGraph, event: StartCase, now: datetime) -> InstanceState:
    definition = graph.definition
    data = check_fields(definition.data, event.data, what=f"process '{definition.id}'")
    return InstanceState(
        case_id=event.case_id,
        process_id=definition.id,
        definition_hash=graph.hash,
        started_at=now,
        data=data,
        parent_case=event.parent_case,
        parent_token=event.parent_token,
    )


class _Run:
    """The working set of one apply() call."""

    def __init__(self, graph: ProcessGraph, state: InstanceState, now: datetime) -> None:
        self.graph = graph
        self.definition = graph.definition
        self.state = state
        self.now = now
        self.case_id = state.case_id
        self.process_id = state.process_id
        self.calendar = graph.calendar
        self.commands: list[Command] = []
        self.log: list[LogEntry] = []
        self.steps_taken = 0
        self.at_node: str | None = None  # the node entered last: where an unforeseen failure is reported
        self._scope: dict[str, Any] = {}
        self._scope_key: tuple[Any, ...] | None = None

    # -- plumbing -----------------------------------------------------------------------------
    def result(self) -> Transition:
        return Transition(self.state, self.commands, self.log)

    def emit(self, type_: log.EventType, node: str | None, data: Mapping[str, Any]) -> None:
        """Log an event: `data` is built with the payload type engine/run/log.py declares for `type_`."""
        state = self.state
        state.seq += 1
        # tuple.__new__ skips the NamedTuple's Python-level __new__: a transition logs about six of these
        self.log.append(_new_entry(LogEntry, (self.case_id, self.process_id, state.seq, self.now, type_, node, data)))

    def next_id(self, prefix: str) -> str:
        self.state.counter += 1
        return f"{prefix}{self.state.counter}"

    def scope(self) -> dict[str, Any]:
        """What expressions see; rebuilt only when a fact in its `case` part changed.

        `data` and `steps` are the state's own dicts, changed in place during the run.
        """
        state = self.state
        key = (state.priority, state.status, state.data.get("tier"))
        if key != self._scope_key:
            self._scope_key = key
            self._scope = case_scope(state, self.definition.parameters)
        return self._scope

    def evaluate(self, text: str, where: str) -> Any:
        try:
            return compile_expression(text).evaluate(self.scope())
        except ExpressionError as exc:
            raise _Incident(f"{where}: {exc}") from None

    def condition(self, text: str, where: str | Edge) -> bool:
        """`where` names the condition in an incident; an edge is named only then (it costs a format)."""
        try:
            return compile_expression(text).evaluate_bool(self.scope())
        except ExpressionError as exc:
            label = where if isinstance(where, str) else f"condition on {where.key}"
            raise _Incident(f"{label}: {exc}") from None

    # -- events -----------------------------------------------------------------------------
    def start(self, event: StartCase) -> None:
        self.emit("case_started", None, log.CaseStarted(data=dict(self.state.data), parent_case=event.parent_case,
                                                       actor=event.actor))
        self.update_priority()
        if self.graph.start_id is None:
            raise SvcflowError(f"process '{self.definition.id}' has no start node")
        token = Token(self.next_id("t"), self.graph.start_id, self.now)
        self.state.tokens[token.id] = token

        def begin() -> None:
            for clock in self.definition.clocks:
                if clock.start_on is None:
                    self.start_case_clock(clock)
            self.enter(token)

        self.guarded(begin)

    def dispatch(self, event: Event) -> None:
        closed = self.state.status in ("completed", "cancelled")
        if closed and not isinstance(event, (Tick, CompleteTask, AssignTask)):
            raise TaskRefused(f"case {self.state.case_id} is {self.state.status}; nothing can change it")
        if isinstance(event, CompleteTask):
            self.complete_task(event)
        elif isinstance(event, AssignTask):
            self.assign_task(event)
        elif isinstance(event, AutoStepDone):
            self.auto_done(event)
        elif isinstance(event, AutoStepFailed):
            self.auto_failed(event)
        elif isinstance(event, MessageArrived):
            self.message(event)
        elif isinstance(event, ChildFinished):
            self.child_finished(event)
        elif isinstance(event, Tick):
            self.tick()
        elif isinstance(event, UpdateData):
            self.update_data(event)
        elif isinstance(event, CancelCase):
            self.cancel(event)
        elif isinstance(event, RecordIncident):
            self.record_incident(event.message, event.node, event.token_id)
        else:  # pragma: no cover - the Event union is closed
            raise SvcflowError(f"unknown event {event!r}")

    def guarded(self, action: Any, node: str | None = None) -> None:
        """Run an advance; whatever fails in it parks the case as an incident.

        An expression failure or a missing branch is foreseen (`_Incident`); anything else (a date
        past the calendar's range, a definition referring to something that is not there) is
        not, but it must end the same way: the work done so far - the person's completion, the
        handler's output - is kept with the incident, never lost with a raw exception.
        """
        try:
            action()
        except _Incident as incident:
            self.record_incident(str(incident), incident.node)
        except Exception as exc:  # deliberately everything: see the docstring
            self.record_incident(f"{type(exc).__name__}: {exc}", node or self.at_node)

    def record_incident(self, message: str, node: str | None = None, token_id: str | None = None) -> None:
        token = self.state.tokens.get(token_id) if token_id else None
        if token is not None:
            token.incident = message
        self.state.status = "incident"
        self.emit("incident", node, log.Incident(message=message))

    def open_task_for(self, task_id: str, actor: str, role: str) -> Task:
        """The open task, if this person in this role may act on it; refusals say why."""
        task = self.state.tasks.get(task_id)
        if task is None:
            raise TaskRefused(f"task {task_id} does not belong to case {self.state.case_id}")
        if task.status != "open":
            by = f" by {task.completed_by}" if task.completed_by else ""
            when = f" at {task.completed_at.isoformat()}" if task.completed_at else ""
            raise TaskRefused(f"task {task.id} is already {task.status}{by}{when}",
                              hint="look at open tasks with `svcflow tasks`")
        allowed = {task.role, *task.escalation_roles}
        if role not in allowed and (task.assignee is None or actor != task.assignee):
            raise TaskRefused(
                say("may_not_act", actor=actor, role=role, task=task.id, node=task.node),
                hint=f"the task belongs to role '{task.role}'"
                + (f" or escalation roles {', '.join(task.escalation_roles)}" if task.escalation_roles else "")
                + (f" or its assignee {task.assignee}" if task.assignee else ""),
            )
        return task

    def assign_task(self, event: AssignTask) -> None:
        task = self.open_task_for(event.task_id, event.actor, event.role)
        old = task.assignee
        task.assignee = event.assignee
        self.emit("task_assigned", task.node, log.TaskAssigned(task_id=task.id, assignee=event.assignee, previous=old,
                                                         actor=event.actor, role=event.role))

    def complete_task(self, event: CompleteTask) -> None:
        task = self.open_task_for(event.task_id, event.actor, event.role)
        node = self.graph.human_tasks[task.node]
        for other in node.different_actor_from:
            earlier = [t for t in self.state.tasks.values()
                       if t.node == other and t.status == "completed" and t.completed_by == event.actor]
            if earlier:
                raise TaskRefused(
                    say("four_eyes", actor=event.actor, other=other, node=task.node), hint="a second person must do this step")
        output = check_fields(self.graph.form_specs[task.node], event.output, what=f"task {task.id} ('{task.node}')",
                              present=self.state.data)
        token = self.state.tokens.get(task.token)
        if token is None or token.task_id != task.id:
            raise TaskRefused(f"task {task.id} is no longer active in case {self.state.case_id}")
        task.status = "completed"
        task.completed_at = self.now
        task.completed_by = event.actor
        self.stop_task_clock(task)
        self.commands.append(TaskClosed(task.id, "completed"))
        self.emit("task_completed", task.node, log.TaskCompleted(task_id=task.id, actor=event.actor, role=event.role,
                                                           output=output))
        token.task_id = None
        self.guarded(lambda: self.leave(token, output))

    def auto_done(self, event: AutoStepDone) -> None:
        token = self.state.tokens.get(event.token_id)
        node = self.graph.auto_tasks.get(token.node) if token is not None else None
        if token is None or node is None or token.attempt != event.attempt:
            # a re-run delivering a result already applied: exactly-once means ignore it
            return
        try:
            output = check_fields(node.outputs, event.output, what=f"handler '{node.handler}' output",
                                  allow_unknown=True) if node.outputs else dict(event.output)
        except InputError as exc:  # the handler's fault, not a person's: the step failed
            error = f"output does not fit the declared outputs: {exc.message}"
            token.incident = error
            self.state.status = "incident"
            self.emit("step_failed", token.node, log.StepFailed(attempt=event.attempt, error=error, output=dict(event.output)))
            return
        token.incident = None
        if self.state.status == "incident" and not any(t.incident for t in self.state.tokens.values()):
            self.state.status = "running"
        self.emit("step_completed", token.node, log.StepCompleted(handler=node.handler, attempt=event.attempt, output=output))
        self.guarded(lambda: self.leave(token, output))

    def auto_failed(self, event: AutoStepFailed) -> None:
        token = self.state.tokens.get(event.token_id)
        if token is None or token.attempt != event.attempt:
            return
        token.incident = event.error
        self.state.status = "incident"
        self.emit("step_failed", token.node, log.StepFailed(attempt=event.attempt, error=event.error))

    def message(self, event: MessageArrived) -> None:
        waiting = [t for t in self.state.tokens.values() if t.message == event.message]
        if not waiting:
            expected = sorted({t.message for t in self.state.tokens.values() if t.message})
            raise TaskRefused(
                f"case {self.state.case_id} is not waiting for message '{event.message}'",
                hint=f"it waits for: {', '.join(expected)}" if expected else "it waits for no message now",
            )
        token = sorted(waiting, key=lambda t: (t.since, t.id))[0]
        node = self.graph.message_waits[token.node]
        payload = check_fields(node.fields, event.payload, what=f"message '{event.message}'")
        token.message = None
        self.emit("message_received", token.node, log.MessageReceived(message=event.message, payload=payload,
                                                                 actor=event.actor))
        self.update_pauses()
        self.guarded(lambda: self.leave(token, payload))

    def child_finished(self, event: ChildFinished) -> None:
        token = self.state.tokens.get(event.token_id)
        if token is None or token.child_case != event.child_case:
            return
        node = self.graph.subprocesses[token.node]
        child_scope = {"data": event.child_data, "steps": {}, "params": {}, "case": {"outcome": event.outcome}}
        output: dict[str, Any] = {}
        try:
            for name, text in node.outputs.items():
                output[name] = compile_expression(text).evaluate(child_scope)
        except ExpressionError as exc:
            self.state.status = "incident"
            self.emit("incident", token.node, log.Incident(message=f"sub-process output: {exc}"))
            return
        token.child_case = None
        self.emit("subprocess_completed", token.node, log.SubprocessCompleted(child_case=event.child_case,
                                                                        outcome=event.outcome, output=output))
        self.guarded(lambda: self.leave(token, output))

    def update_data(self, event: UpdateData) -> None:
        changes = check_fields(self.definition.data, event.data, what=f"process '{self.definition.id}'",
                               apply_defaults=False)
        self.state.data.update(changes)
        self.emit("data_updated", None, log.DataUpdated(changes=changes, actor=event.actor))
        self.update_priority()
        self.guarded(self.retarget_case_clocks)
        for task in self.state.open_tasks():
            node = self.graph.human_tasks[task.node]
            clock = self.state.clocks.get(f"task:{task.id}")
            if node.sla and clock is not None:
                self.retarget(clock, self.graph.sla_policies[node.id], f"SLA of '{node.id}'")
                task.due_at = clock.due_at
                task.priority = _max_priority(task.priority, self.state.priority)

    def cancel(self, event: CancelCase) -> None:
        for token in list(self.state.tokens.values()):
            self.drop_token(token, "cancelled")
        for clock in self.state.clocks.values():
            if clock.status in ("running", "paused"):
                sla.stop(clock, self.now, self.calendar, "stopped")
                self.emit("sla_stopped", None, log.SlaEnded(clock=clock.id))
        self.finish("cancelled", event.reason)

    # -- moving tokens ----------------------------------------------------------------------------
    def enter(self, token: Token) -> None:
        """Activate the node the token stands on; runs through instant nodes until tokens wait."""
        self.steps_taken += 1
        if self.steps_taken > MAX_STEPS_PER_EVENT:
            raise _Incident(f"more than {MAX_STEPS_PER_EVENT} steps without waiting: an endless loop?", token.node)
        node_id = self.at_node = token.node
        node = self.graph.nodes[node_id]
        token.since = self.now
        self.state.visits[node_id] = self.state.visits.get(node_id, 0) + 1
        self.emit("node_entered", node_id, log.NodeEntered(token=token.id, kind=node.kind))
        for clock_def in self.graph.clocks_started_at.get(node_id, ()):
            if f"case:{clock_def.id}" not in self.state.clocks:
                self.start_case_clock(clock_def)
        match node:  # one case per node class; mypy checks that none is missing (assert_never)
            case StartNode():
                self.leave(token, {})
            case EndNode():
                self.apply_compute(node_id)
                del self.state.tokens[token.id]
                self.emit("node_completed", node_id, log.NodeCompleted(token=token.id))
                if not self.state.tokens:
                    self.finish("completed", node.outcome or node_id)
            case HumanTask():
                self.open_task(token, node)
            case AutoTask():
                token.attempt += 1
                self.commands.append(RunAutoStep(
                    token.id, node_id, node.handler, token.attempt, node.retries, node.retry_delay_seconds,
                    node.timeout_seconds, f"{self.state.case_id}:{token.id}:{node_id}:{self.state.visits[node_id]}",
                ))
                self.emit("step_started", node_id, log.StepStarted(handler=node.handler, attempt=token.attempt))
            case TimerWait():
                self.start_timer(token, node)
            case MessageWait():
                token.message = node.message
                self.emit("message_awaited", node_id, log.MessageAwaited(message=node.message))
                self.update_pauses()
            case SubProcess():
                data = {name: self.evaluate(text, f"input '{name}' of '{node_id}'")
                        for name, text in node.inputs.items()}
                token.child_case = f"{self.state.case_id}.{token.id}.{self.state.visits[node_id]}"
                self.commands.append(StartChild(token.id, node.process, data))
                self.emit("subprocess_started", node_id,
                          log.SubprocessStarted(process=node.process, child_case=token.child_case))
            case ExclusiveGateway() | InclusiveGateway() | ParallelGateway():
                self.gateway(token, node.kind)
            case _:  # pragma: no cover - a node class added to the model but not here fails mypy
                assert_never(node)

    def start_timer(self, token: Token, node: TimerWait) -> None:
        """Set the token's due instant: a business duration from now, or the date `until` computes."""
        if node.duration is not None:
            token.timer_due = self.calendar.add(self.now, sla.target_seconds(node.duration, self.calendar))
        else:
            value = self.evaluate(node.until or "", f"timer '{node.id}'")
            try:
                due = datetime.fromisoformat(str(value))
            except ValueError:
                raise _Incident(f"timer '{node.id}': 'until' gave {value!r}, not a date-time", node.id) from None
            token.timer_due = due if due.tzinfo else due.replace(tzinfo=self.now.tzinfo)
        self.emit("timer_started", node.id, log.TimerStarted(due=token.timer_due.isoformat()))

    def leave(self, token: Token, output: dict[str, Any]) -> None:
        """Complete the token's node with its output and follow the single outgoing edge."""
        node_id = token.node
        if output:
            self.state.data.update(output)
            self.state.steps[node_id] = output
        self.apply_compute(node_id)
        computed = self.graph.nodes[node_id].compute
        if output or computed:
            inputs = self.graph.priority_inputs
            if inputs is None or any(name in inputs for name in output) or any(name in inputs for name in computed):
                self.update_priority()
            inputs = self.graph.clock_policy_inputs
            if inputs is None or any(name in inputs for name in output) or any(name in inputs for name in computed):
                self.retarget_case_clocks()
        token.timer_due = None
        token.incident = None
        self.emit("node_completed", node_id, log.NodeCompleted(token=token.id))
        for clock_def in self.graph.clocks_stopped_at.get(node_id, ()):
            clock = self.state.clocks.get(f"case:{clock_def.id}")
            if clock is not None and clock.status in ("running", "paused"):
                in_time = sla.stop(clock, self.now, self.calendar, "met")
                self.emit("sla_met", node_id, log.SlaEnded(clock=clock.id, in_time=in_time, consumed=clock.consumed,
                                                         target=clock.target))
        edges = self.graph.outgoing.get(node_id, [])
        if not edges:
            raise _Incident(f"node '{node_id}' has no outgoing edge", node_id)
        self.move(token, edges[0].target, edges[0].key)

    def move(self, token: Token, target: str, edge_key: str) -> None:
        self.emit("edge_taken", token.node, log.EdgeTaken(edge=edge_key, to=target))
        token.node = target
        self.enter(token)

    def apply_compute(self, node_id: str) -> None:
        node = self.graph.nodes[node_id]
        for name, text in node.compute.items():
            self.state.data[name] = self.evaluate(text, f"compute '{name}' of '{node_id}'")

    def gateway(self, token: Token, kind: str) -> None:
        node_id = token.node
        if self.graph.is_join(node_id):
            join = self.state.joins.setdefault(node_id, {"expected": 0, "arrived": 0})
            if join["expected"] == 0:
                join["expected"] = len(self.graph.incoming[node_id])
            join["arrived"] += 1
            if join["arrived"] < join["expected"]:
                del self.state.tokens[token.id]
                self.emit("join_waiting", node_id, log.JoinWaiting(arrived=join["arrived"], expected=join["expected"]))
                return
            del self.state.joins[node_id]
            self.emit("join_completed", node_id, log.JoinCompleted(arrived=join["arrived"]))
            if not self.graph.is_split(node_id):
                self.leave(token, {})
                return
        self.apply_compute(node_id)
        edges = self.graph.outgoing.get(node_id, [])
        if kind == "parallel":
            chosen = list(edges)
        else:
            chosen = []
            default = None
            for edge in edges:
                if edge.default:
                    default = edge
                    continue
                if edge.when is None or self.condition(edge.when, edge):
                    chosen.append(edge)
                    if kind == "exclusive":
                        break
            if not chosen and default is not None:
                chosen = [default]
            if not chosen:
                raise _Incident(f"no condition of gateway '{node_id}' holds and it has no default edge", node_id)
        self.emit("node_completed", node_id, log.NodeCompleted(token=token.id, branches=[e.key for e in chosen]))
        if len(chosen) > 1 or (kind != "exclusive" and self.graph.is_split(node_id)):
            join_id = self.graph.split_joins.get(node_id)
            if join_id is not None:
                self.state.joins[join_id] = {"expected": len(chosen), "arrived": 0}
        del self.state.tokens[token.id]
        new_tokens = []
        for edge in chosen:
            branch = Token(self.next_id("t"), node_id, self.now)
            self.state.tokens[branch.id] = branch
            new_tokens.append((branch, edge))
        for branch, edge in new_tokens:
            if branch.id in self.state.tokens:
                self.move(branch, edge.target, edge.key)

    def drop_token(self, token: Token, status: str) -> None:
        """Withdraw a token from where it waits (interrupting escalation, cancellation)."""
        if token.task_id:
            task = self.state.tasks[token.task_id]
            task.status = status
            self.stop_task_clock(task, "stopped")
            self.commands.append(TaskClosed(task.id, status))
            self.emit("task_cancelled", task.node, log.TaskCancelled(task_id=task.id, reason=status))
        self.state.tokens.pop(token.id, None)
        if token.message:
            token.message = None
            self.update_pauses()

    def finish(self, status: str, outcome: str | None) -> None:
        s = self.state
        for clock in s.clocks.values():
            if clock.status in ("running", "paused"):
                in_time = sla.stop(clock, self.now, self.calendar, "met" if status == "completed" else "stopped")
                self.emit("sla_met" if status == "completed" else "sla_stopped", None,
                          log.SlaEnded(clock=clock.id, in_time=in_time, consumed=clock.consumed, target=clock.target))
        s.status = status
        s.outcome = outcome
        s.ended_at = self.now
        self.emit("case_completed" if status == "completed" else "case_cancelled", None,
                  log.CaseEndedPayload(outcome=outcome))
        self.commands.append(CaseEnded(status, outcome, s.parent_case, s.parent_token))

    # -- human tasks ---------------------------------------------------------------------------
    def open_task(self, token: Token, node: HumanTask) -> None:
        task = Task(
            id=f"{self.state.case_id}-{self.next_id('k')}",
            node=node.id,
            token=token.id,
            role=node.lane,
            created_at=self.now,
            priority=_max_priority(node.priority or "normal", self.state.priority),
            visit=self.state.visits.get(node.id, 1),
        )
        self.state.tasks[task.id] = task
        token.task_id = task.id
        if node.sla is not None:
            clock = self.start_clock(
                f"task:{task.id}", "task", node.id, self.graph.sla_policies[node.id], f"node:{node.id}",
                f"SLA of '{node.id}'",
            )
            clock.task_id = task.id
            task.due_at = clock.due_at
        self.commands.append(TaskOpened(task.id, node.id, task.role, task.due_at))
        self.emit("task_opened", node.id, log.TaskOpenedPayload(task_id=task.id, role=task.role,
                                                          due_at=task.due_at.isoformat() if task.due_at else None,
                                                          priority=task.priority))

    def stop_task_clock(self, task: Task, status: str = "met") -> None:
        clock = self.state.clocks.get(f"task:{task.id}")
        if clock is None or clock.status not in ("running", "paused"):
            return
        in_time = sla.stop(clock, self.now, self.calendar, status)
        self.emit("sla_met" if status == "met" else "sla_stopped", task.node,
                  log.SlaEnded(clock=clock.id, in_time=in_time, consumed=clock.consumed, target=clock.target))

    # -- SLA clocks -----------------------------------------------------------------------------
    def schedule(self, clock: SlaClock) -> None:
        sla.schedule(clock, self.graph.thresholds(clock.ladder), self.calendar)

    def choose_target(self, policies: list[Any], where: str) -> str:
        for policy in policies:
            if policy.when is None or self.condition(policy.when, f"{where} policy"):
                return str(policy.target)
        raise _Incident(f"{where}: no SLA policy applies and none is unconditional")

    def start_clock(self, clock_id: str, scope: str, node: str | None, policies: list[Any], ladder: str,
                    where: str) -> SlaClock:
        target_text = self.choose_target(policies, where)
        clock = SlaClock(
            id=clock_id, scope=scope, name=where, target=sla.target_seconds(target_text, self.calendar),
            target_text=target_text, started_at=self.now, ladder=ladder, running_since=self.now,
        )
        self.state.clocks[clock_id] = clock
        self.schedule(clock)
        self.emit("sla_started", node, log.SlaStarted(clock=clock_id, target=target_text,
                                                    due_at=clock.due_at.isoformat() if clock.due_at else None))
        if scope == "case" and self.paused_by_wait():
            clock_def = self._clock_def(clock_id)
            if clock_def is not None and clock_def.pause_when_waiting:
                sla.pause(clock, self.now, self.calendar)
                self.emit("sla_paused", node, log.SlaPaused(clock=clock_id))
        return clock

    def start_case_clock(self, clock_def: CaseClock) -> None:
        self.start_clock(f"case:{clock_def.id}", "case", clock_def.start_on, clock_def.policies,
                         f"clock:{clock_def.id}", clock_def.name.both() if clock_def.name else clock_def.id)

    def _clock_def(self, clock_id: str) -> CaseClock | None:
        for clock_def in self.definition.clocks:
            if f"case:{clock_def.id}" == clock_id:
                return clock_def
        return None

    def retarget(self, clock: SlaClock, policies: list[Any], where: str) -> None:
        target_text = self.choose_target(policies, where)
        if target_text == clock.target_text:
            return
        old = clock.target_text
        clock.target_text = target_text
        clock.target = sla.target_seconds(target_text, self.calendar)
        self.schedule(clock)
        self.emit("sla_retargeted", None, log.SlaRetargeted(
            clock=clock.id, old=old, new=target_text, started_at=clock.started_at.isoformat(),
            due_at=clock.due_at.isoformat() if clock.due_at else None))

    def retarget_case_clocks(self) -> None:
        """Re-choose the running case clocks' targets after the data they depend on changed.

        Retroactive: the original start time (and banked time) stays. A clock that starts when the
        case is received runs before the registration records e.g. the tier; this is what gives it
        the tier's target once known.
        """
        for clock_def in self.definition.clocks:
            clock = self.state.clocks.get(f"case:{clock_def.id}")
            if clock is not None and clock.status in ("running", "paused"):
                self.retarget(clock, clock_def.policies, f"clock {clock_def.id}")

    def paused_by_wait(self) -> bool:
        for token in self.state.tokens.values():
            if token.message:
                node = self.graph.message_waits.get(token.node)
                if node is not None and node.pauses_sla:
                    return True
        return False

    def update_pauses(self) -> None:
        waiting = self.paused_by_wait()
        for clock_def in self.definition.clocks:
            if not clock_def.pause_when_waiting:
                continue
            clock = self.state.clocks.get(f"case:{clock_def.id}")
            if clock is None:
                continue
            if waiting and clock.status == "running":
                sla.pause(clock, self.now, self.calendar)
                self.emit("sla_paused", None, log.SlaPaused(clock=clock.id, consumed=clock.consumed))
            elif not waiting and clock.status == "paused":
                sla.resume(clock, self.now, self.graph.thresholds(clock.ladder), self.calendar)
                self.emit("sla_resumed", None,
                          log.SlaResumed(clock=clock.id, due_at=clock.due_at.isoformat() if clock.due_at else None))

    def update_priority(self) -> None:
        """Re-derive the case priority (callers skip it when no field it reads changed)."""
        expression = self.definition.case_priority
        if not expression:
            return
        try:
            value = str(compile_expression(expression).evaluate(self.scope()))
        except ExpressionError as exc:
            self.emit("incident", None, log.Incident(message=f"case_priority: {exc}"))
            return
        if value in PRIORITIES and PRIORITIES.index(value) > PRIORITIES.index(self.state.priority):
            old = self.state.priority
            self.state.priority = value
            self.emit("priority_raised", None, log.PriorityRaised(old=old, new=value))

    # -- the sweep: timers and escalation -----------------------------------------------------------
    def tick(self) -> None:
        if self.state.status in ("completed", "cancelled"):
            return
        for token in sorted(self.state.tokens.values(), key=lambda t: (t.timer_due or self.now, t.id)):
            if token.timer_due is not None and token.timer_due <= self.now and token.id in self.state.tokens:
                self.emit("timer_fired", token.node, log.TimerFired(due=token.timer_due.isoformat()))
                self.guarded(lambda token=token: self.leave(token, {}))
        for clock_id in sorted(self.state.clocks):
            clock = self.state.clocks.get(clock_id)
            try:
                while (clock is not None and clock.status == "running" and clock.next_at is not None
                       and clock.next_at <= self.now and clock.next_pct is not None):
                    self.fire(clock, clock.next_pct)
                    clock = self.state.clocks.get(clock_id)
            except Exception as exc:  # an escalation that cannot be applied parks the case
                if clock is not None:  # never due again: one incident, not one per sweep
                    clock.next_at = None
                    clock.next_pct = None
                self.record_incident(f"SLA clock {clock_id}: {type(exc).__name__}: {exc}")

    def fire(self, clock: SlaClock, pct: int) -> None:
        clock.fired.append(pct)
        levels = self.graph.ladder(clock.ladder)  # lowest threshold first
        level_no = next((i + 1 for i, lv in enumerate(levels) if lv.at == pct), 0)
        node = self.graph.nodes.get(clock.ladder.partition(":")[2]) if clock.scope == "task" else None
        node_id = node.id if node is not None else None
        due = clock.next_at.isoformat() if clock.next_at else None
        if pct == sla.BREACH_PCT:
            clock.breached = True
            self.emit("sla_breached", node_id, log.SlaThreshold(clock=clock.id, percent=pct, level=level_no, due=due))
        elif pct < sla.BREACH_PCT:
            self.emit("sla_warned", node_id, log.SlaThreshold(clock=clock.id, percent=pct, level=level_no, due=due))
        level = next((lv for lv in levels if lv.at == pct), None)
        kind = "warned" if pct < 100 else "breached" if pct == 100 else "escalated"
        if level is not None:
            self.escalate(clock, level, level_no, kind)
        sla.schedule(clock, self.graph.thresholds(clock.ladder), self.calendar, due_known=True)

    def escalate(self, clock: SlaClock, level: EscalationLevel, level_no: int, kind: str) -> None:
        s = self.state
        tasks = [s.tasks[clock.task_id]] if clock.task_id else s.open_tasks()
        tasks = [t for t in tasks if t.status == "open"]
        s.escalation_level = max(s.escalation_level, level_no)
        entry = log.Escalated(clock=clock.id, level=level_no, percent=level.at, kind=kind)  # actions added below
        for task in tasks:
            task.escalation_level = max(task.escalation_level, level_no)
            for role in level.notify:
                if role not in task.escalation_roles and role != task.role:
                    task.escalation_roles.append(role)
        if level.notify:
            entry["notify"] = list(level.notify)
            status = ", ".join(f"{t.node} ({t.role}{', ' + t.assignee if t.assignee else ''})" for t in tasks)
            message = (level.message.both() + " — " if level.message else "") + (
                f"{clock.name}: {level.at}% of {clock.target_text} used; open: {status or 'none'}")
            self.commands.append(Notify(kind, tuple(level.notify), clock.id, level_no, level.at, message))
        if level.reassign:
            entry["reassign"] = level.reassign
            for task in tasks:
                if task.role != level.reassign:
                    if task.role not in task.escalation_roles:
                        task.escalation_roles.append(task.role)
                    task.role = level.reassign
                    task.assignee = None
        if level.raise_priority:
            entry["raise_priority"] = level.raise_priority
            if PRIORITIES.index(level.raise_priority) > PRIORITIES.index(s.priority):
                old = s.priority
                s.priority = level.raise_priority
                self.emit("priority_raised", None, log.PriorityRaised(old=old, new=s.priority))
            for task in tasks:
                task.priority = _max_priority(task.priority, level.raise_priority)
        node_id = tasks[0].node if clock.task_id and tasks else None
        if level.route:
            entry["route"] = level.route
        self.emit("escalated", node_id, entry)
        if level.route:
            self.route(clock, level.route)

    def route(self, clock: SlaClock, edge_id: str) -> None:
        """Interrupting escalation: withdraw the waiting token(s) and move along the escalation edge."""
        edge = self.graph.escalation_edges.get(edge_id)
        if edge is None:
            self.record_incident(f"escalation edge '{edge_id}' does not exist")
            return
        if clock.task_id:
            task = self.state.tasks.get(clock.task_id)
            tokens = [self.state.tokens[task.token]] if task and task.token in self.state.tokens else []
        else:
            tokens = list(self.state.tokens.values())
        for token in tokens:
            self.drop_token(token, "interrupted")
        token = Token(self.next_id("t"), edge.source, self.now)
        self.state.tokens[token.id] = token
        self.guarded(lambda: self.move(token, edge.target, edge.key))


class _Incident(Exception):
    """Something the definition did not foresee at run time; parks the case for an operator."""

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


def _max_priority(a: str, b: str) -> str:
    return a if PRIORITIES.index(a) >= PRIORITIES.index(b) else b


__all__ = ["Transition", "apply", "InputError"]

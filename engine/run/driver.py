"""The command driver: the one loop that turns the interpreter's commands into actions.

The interpreter decides; something must then run the automatic step it asked for, start the
child case, report a finished child to its parent, tell the roles to notify, and feed each
result back as an event. That loop exists once, here. What differs between its users is only
where cases live and how time passes, so those are a `CaseHost`'s business:

- `Engine` (engine/run/runtime.py): the SQL store, a real or injected clock, handlers run by an
  executor with the definition's retries and timeout;
- `FlowEngine` (flows/runtime.py): the same, with steps run as Prefect tasks and other cases'
  steps left outstanding for their own flow runs;
- the simulator (simulation/simulator.py): states in memory, a virtual clock, a log kept as a
  list, steps that may take a sampled time, people who work queued tasks.

Same commands in, same events back, same order: that is what makes the simulator's log the
engine's log (tested in tests/test_driver.py).

A failure after the user's own event was stored is never left to propagate: whatever goes
wrong while the driver acts for a case (a handler output the interpreter rejects, a child
case that cannot start, a parent that cannot take its child's result) is recorded on that
case as an incident, so it is parked for an operator, visible in `show`, and never a case
"running" with nothing left to wait for.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from engine.definition.graph import ProcessGraph
from engine.definition.library import ProcessLibrary
from engine.errors import SvcflowError, TaskRefused
from engine.run.events import (
    AutoStepDone, AutoStepFailed, CaseEnded, ChildFinished, Command, Event, Notify, RecordIncident, RunAutoStep,
    StartCase, StartChild, TaskClosed, TaskOpened,
)
from engine.run.handlers import HandlerContext, HandlerRegistry
from engine.run.interpreter import Transition
from engine.run.state import InstanceState, Token

log = logging.getLogger("svcflow")

Handler = Callable[[HandlerContext], Mapping[str, Any] | None]
StepExecutor = Callable[[RunAutoStep, HandlerContext, Handler], Mapping[str, Any] | None]
WorkItem = tuple[str, "Command | Transition"]
"""(case id, what to do for it): a command, or a transition whose commands are still to come."""

CLOSED = ("completed", "cancelled")


def run_directly(command: RunAutoStep, context: HandlerContext, handler: Handler) -> Mapping[str, Any] | None:
    """The executor of a simulation: one call, no retries, no timeout thread (handlers are deterministic)."""
    return handler(context)


class CaseHost:
    """Where cases live and how commands reach the outside; the driver asks, the host answers.

    The hooks after `begin` default to doing nothing: the engine keeps no people or queues,
    the simulator no notifier.
    """

    library: ProcessLibrary
    handlers: HandlerRegistry
    executor: StepExecutor

    def load(self, case_id: str) -> InstanceState:
        raise NotImplementedError

    def graph_for(self, state: InstanceState) -> ProcessGraph:
        raise NotImplementedError

    def exists(self, case_id: str) -> bool:
        raise NotImplementedError

    def commit(self, case_id: str, event: Event) -> Transition:
        """Apply one event to a stored case and keep the result (raises refusals unchanged)."""
        raise NotImplementedError

    def begin(self, graph: ProcessGraph, event: StartCase) -> Transition:
        """Apply a StartCase and keep the new case."""
        raise NotImplementedError

    def observe(self, case_id: str, command: Command) -> None:
        """Every command, before it is acted on (listeners, the Prefect collector)."""

    def after(self, case_id: str, transition: Transition) -> None:
        """A transition of `case_id` is about to have its commands acted on."""

    def settled(self, touched: list[str]) -> None:
        """Nothing more to do at this instant for these cases (which changed, in order)."""

    def task_opened(self, case_id: str, command: TaskOpened) -> None:
        """A human task is open (the simulator queues it for a person)."""

    def task_closed(self, case_id: str, command: TaskClosed) -> None:
        """A human task is closed (the simulator frees its person)."""

    def notify(self, case_id: str, command: Notify) -> None:
        """Tell roles about an SLA event."""

    def defer_step(self, case_id: str, command: RunAutoStep) -> bool:
        """True when the step runs later or elsewhere (then `CommandDriver.run_step` runs it)."""
        return False

    def replace_child(self, parent_id: str, token: Token, command: StartChild) -> bool:
        """True when the host stands in for the child case itself (a simulated duration)."""
        return False


class CommandDriver:
    """Acts on commands for a host until nothing is left to do at this instant."""

    def __init__(self, host: CaseHost) -> None:
        self.host = host

    # -- entry points ----------------------------------------------------------------------------
    def start(self, graph: ProcessGraph, event: StartCase) -> Transition:
        """Start a case and everything it sets off; bad start data raises before anything is kept."""
        transition = self.host.begin(graph, event)
        self.drive(event.case_id, transition)
        return transition

    def act(self, case_id: str, event: Event) -> Transition:
        """A person's (or the sweep's) event: refusals raise unchanged, then its consequences run."""
        transition = self.host.commit(case_id, event)
        self.drive(case_id, transition)
        return transition

    def system(self, case_id: str, event: Event, node: str | None = None, token_id: str | None = None) -> None:
        """An event from outside the case's people (a child's end, a step's result): failure is an incident."""
        queue: deque[WorkItem] = deque()
        self._system(case_id, event, queue, node, token_id)
        self.drain(queue)

    def run_step(self, case_id: str, command: RunAutoStep) -> None:
        """Run a deferred automatic step now and act on what follows."""
        queue: deque[WorkItem] = deque()
        self._run_step(case_id, command, queue)
        self.drain(queue)

    def drive(self, case_id: str, transition: Transition) -> None:
        self.drain(deque([(case_id, transition)]))

    # -- the loop ---------------------------------------------------------------------------------
    def drain(self, queue: deque[WorkItem]) -> None:
        host = self.host
        touched: list[str] = []
        while queue:
            case_id, item = queue.popleft()
            if type(item) is Transition:
                touched.append(case_id)
                host.after(case_id, item)
                queue.extend((case_id, command) for command in item.commands)
                continue
            command: Any = item
            host.observe(case_id, command)
            kind = type(command)
            if kind is TaskOpened:
                host.task_opened(case_id, command)
            elif kind is TaskClosed:
                host.task_closed(case_id, command)
            elif kind is RunAutoStep:
                if not host.defer_step(case_id, command):
                    self._run_step(case_id, command, queue)
            elif kind is StartChild:
                self._start_child(case_id, command, queue)
            elif kind is CaseEnded:
                if command.parent_case and command.parent_token:
                    self._child_ended(case_id, command, queue)
            elif kind is Notify:
                self._notify(case_id, command)
        host.settled(touched)

    # -- actions ----------------------------------------------------------------------------------
    def _run_step(self, case_id: str, command: RunAutoStep, queue: deque[WorkItem]) -> None:
        host = self.host
        state = host.load(case_id)
        token = state.tokens.get(command.token_id)
        if token is None or token.attempt != command.attempt or token.node != command.node:
            return  # already applied by an earlier run
        context = HandlerContext(case_id, state.process_id, command.node, 1, command.idempotency_key,
                                 dict(state.data), host.graph_for(state).definition.parameters)
        event: Event
        try:
            handler = host.handlers.get(command.handler)
            output = host.executor(command, context, handler)
            event = AutoStepDone(command.token_id, command.attempt, dict(output or {}))
        except Exception as exc:  # the step's failure is the case's incident, not our crash
            log.error("case %s: step %s failed: %s", case_id, command.node, exc)
            event = AutoStepFailed(command.token_id, command.attempt, f"{type(exc).__name__}: {exc}")
        self._system(case_id, event, queue, command.node, command.token_id)

    def _start_child(self, parent_id: str, command: StartChild, queue: deque[WorkItem]) -> None:
        host = self.host
        parent = host.load(parent_id)
        token = parent.tokens.get(command.token_id)
        if token is None or token.child_case is None or host.exists(token.child_case):
            return
        if host.replace_child(parent_id, token, command):
            return
        child_id = token.child_case
        try:
            graph = host.library.get(command.process)
            transition = host.begin(graph, StartCase(child_id, dict(command.data), parent_id, command.token_id))
        except Exception as exc:
            message = f"sub-process '{command.process}' could not start: {_describe(exc)}"
            self._incident(parent_id, token.node, token.id, message, exc, queue)
            return
        queue.append((child_id, transition))

    def _child_ended(self, child_id: str, command: CaseEnded, queue: deque[WorkItem]) -> None:
        assert command.parent_case is not None and command.parent_token is not None
        child = self.host.load(child_id)
        event = ChildFinished(command.parent_token, child_id, child.data, command.outcome)
        self._system(command.parent_case, event, queue, None, command.parent_token)

    def _notify(self, case_id: str, command: Notify) -> None:
        try:
            self.host.notify(case_id, command)
        except Exception:  # a mail server being down must not park the case; the log says who was missed
            log.exception("case %s: could not notify %s", case_id, ", ".join(command.roles))

    def _system(self, case_id: str, event: Event, queue: deque[WorkItem], node: str | None,
                token_id: str | None) -> None:
        try:
            transition = self.host.commit(case_id, event)
        except Exception as exc:
            what = type(event).__name__
            self._incident(case_id, node, token_id, f"{what} could not be applied: {_describe(exc)}", exc, queue)
            return
        queue.append((case_id, transition))

    def _incident(self, case_id: str, node: str | None, token_id: str | None, message: str, cause: Exception,
                  queue: deque[WorkItem]) -> None:
        """Park the case with the reason; a case already ended has nothing left to park."""
        host = self.host
        if isinstance(cause, TaskRefused) and host.load(case_id).status in CLOSED:
            log.warning("case %s: %s (the case has ended)", case_id, message)
            return
        log.error("case %s: incident: %s", case_id, message)
        try:
            transition = host.commit(case_id, RecordIncident(message, node, token_id))
        except Exception as exc:
            raise exc from cause
        queue.append((case_id, transition))


def _describe(exc: Exception) -> str:
    """The failure without its user-facing hint (an input hint such as "nothing was stored" is not true here)."""
    text = exc.message if isinstance(exc, SvcflowError) else str(exc)
    return f"{type(exc).__name__}: {text}"


__all__ = ["CaseHost", "CommandDriver", "StepExecutor", "run_directly"]

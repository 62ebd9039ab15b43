"""The engine service: interpreter + store + handlers + notifier, driven by a clock.

The engine is the `CaseHost` of the command driver (engine/run/driver.py) on the SQL store:
the driver turns commands into actions (run an automatic step, start a child case, notify
roles) and feeds the results back as events; the engine says how a case is loaded, stored
and timed. The CLI, the Prefect flows and the tests all go through it, so they refuse and
record the same things; the simulator runs the same driver on memory and a virtual clock.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from engine.time.clock import Clock, SystemClock
from engine.errors import ConcurrentModification, InputError, NotFound, SvcflowError, TaskRefused
from engine.run.driver import CaseHost, CommandDriver, StepExecutor, WorkItem
from engine.run.events import (
    AssignTask, CancelCase, CaseEnded, Command, CompleteTask, Event, MessageArrived, Notify, RecordIncident,
    RunAutoStep, StartCase, StartChild, Tick, UpdateData,
)
from engine.definition.graph import ProcessGraph
from engine.run.handlers import HandlerContext, HandlerRegistry, default_registry
from engine.expressions.cel import compile_expression
from engine.run.interpreter import Transition, apply, case_scope
from engine.run.limits import REASON_CHARS, Limits
from engine.run.schedules import due_starts
from engine.definition.library import ProcessLibrary
from engine.definition.loader import load_text
from engine.run.state import InstanceState
from engine.run.log import LogEntry
from engine.store.serializer import state_from_json
from engine.store.sql import BatchItem, Store

log = logging.getLogger("svcflow")
MAX_RETRIES_ON_CONFLICT = 5
SWEEP_BATCH = 1000
"""Cases the sweep writes per transaction: few round trips, row locks held briefly."""
_CHANGES_THE_CASE_AGAIN = (RunAutoStep, StartChild)
Swept = tuple[InstanceState, InstanceState, list[LogEntry], int, Transition]
"""One case ticked by the sweep: (state read, new state, its log entries, version read, the transition)."""


class Notifier(Protocol):
    def notify(self, case_id: str, process_id: str, command: Notify) -> None: ...


class LogNotifier:
    """The default notifier: a log line per notification, kept in memory for tests and the demo."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Notify]] = []

    def notify(self, case_id: str, process_id: str, command: Notify) -> None:
        self.sent.append((case_id, command))
        log.warning("[%s] %s %s level %s -> %s: %s", case_id, process_id, command.kind, command.level,
                    ", ".join(command.roles), command.message)


def run_in_process(command: RunAutoStep, context: HandlerContext,
                   handler: Callable[[HandlerContext], Mapping[str, Any] | None]) -> Mapping[str, Any] | None:
    """Run a handler here, with the definition's retries and timeout.

    A timeout ends the wait at the timeout, not when the handler returns: a hanging handler
    must not hang the engine. Python cannot kill a thread, so an attempt that times out is left
    running in a daemon thread (it does not keep the process alive) and whatever it returns or
    raises later is discarded. The next attempt, or a later `recover`, calls the handler again
    with the same `idempotency_key`, which is what makes a side effect done twice safe.
    """
    attempts = command.retries + 1
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        ctx = HandlerContext(context.case_id, context.process_id, context.node_id, attempt,
                             context.idempotency_key, context.data, context.params)
        try:
            if command.timeout_seconds:
                return _call_with_timeout(handler, ctx, command.timeout_seconds)
            return handler(ctx)
        except TimeoutError:
            last = TimeoutError(f"handler '{command.handler}' took longer than {command.timeout_seconds:g} s")
        except Exception as exc:  # a handler's failure is the case's incident, not our crash
            last = exc
        if attempt < attempts and command.retry_delay_seconds:
            time.sleep(command.retry_delay_seconds)
    assert last is not None
    raise last


def _call_with_timeout(handler: Callable[[HandlerContext], Mapping[str, Any] | None], context: HandlerContext,
                       timeout: float) -> Mapping[str, Any] | None:
    """The handler's result if it comes within `timeout` seconds, else TimeoutError (the thread runs on)."""
    outcome: list[Any] = []
    finished = threading.Event()

    def attempt() -> None:
        try:
            outcome.append((True, handler(context)))
        except BaseException as exc:  # handed to the waiting caller, not lost in the thread
            outcome.append((False, exc))
        finally:
            finished.set()

    threading.Thread(target=attempt, name=f"svcflow-step-{context.node_id}", daemon=True).start()
    if not finished.wait(timeout):
        raise TimeoutError
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


@dataclass
class CaseView:
    """A case as `svcflow show` and tests see it."""

    state: InstanceState
    version: int
    events: list[LogEntry]
    children: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def outcome(self) -> str | None:
        return self.state.outcome

    @property
    def data(self) -> dict[str, Any]:
        return self.state.data

    @property
    def history(self) -> list[str]:
        return [e.type for e in self.events]

    def path(self) -> list[str]:
        """Nodes in the order they were entered."""
        return [e.node for e in self.events if e.type == "node_entered" and e.node]


class Engine(CaseHost):
    """Everything that acts on cases. Thread-safe per call; cross-process safety comes from the store."""

    def __init__(self, store: Store, library: ProcessLibrary, *, clock: Clock | None = None,
                 handlers: HandlerRegistry | None = None, notifier: Notifier | None = None,
                 executor: StepExecutor | None = None, id_factory: Callable[[str], str] | None = None,
                 limits: Limits | None = None) -> None:
        self.store = store
        self.library = library
        self.clock = clock or SystemClock()
        self.handlers = handlers or default_registry()
        library.require_valid(self.handlers)  # nothing invalid runs: the validator's errors, located
        self.notifier = notifier or LogNotifier()
        self.executor = executor or run_in_process
        self.id_factory = id_factory or _new_case_id
        self.limits = limits or Limits.from_settings()
        self.listeners: list[Callable[[str, Command], None]] = []
        # called with the case id after each stored change of a case (the front doors refresh the
        # operators' view of it); a failing hook is logged and never undoes or fails the change
        self.on_stored: list[Callable[[str], None]] = []
        self.driver = CommandDriver(self)
        self._lock = threading.RLock()
        self._process_of: dict[str, str] = {}  # the sweep's batch being driven: no reload to notify

    @classmethod
    def in_memory(cls, clock: Clock | None = None, library: ProcessLibrary | None = None, **kwargs: Any) -> Engine:
        """An engine on an in-memory SQLite store with the process library: for tests and simulations."""
        return cls(Store("sqlite://"), library or ProcessLibrary.from_dir(), clock=clock, **kwargs)

    @classmethod
    def from_settings(cls, database_url: str, process_dir: Path, **kwargs: Any) -> Engine:
        return cls(Store(database_url), ProcessLibrary.from_dir(process_dir), **kwargs)

    # -- definitions --------------------------------------------------------------------------
    def graph_for(self, state: InstanceState) -> ProcessGraph:
        """The graph of the version the case started with (running cases never switch)."""
        graph = self.library.cached_graph(state.definition_hash)
        if graph is not None:
            return graph
        latest = self.library.latest.get(state.process_id)
        if latest is not None and latest.hash == state.definition_hash:
            return self.library.graph_of(latest)
        text, file = self.store.definition_source(state.definition_hash)
        return self.library.graph_of(load_text(text, file))

    # -- actions ----------------------------------------------------------------------------
    def start(self, process_id: str, data: Mapping[str, Any] | None = None, *, actor: str | None = None,
              case_id: str | None = None) -> str:
        """Start a case of the latest version; returns its id. Bad data stores nothing: there is no case yet."""
        graph = self.library.get(process_id)
        case_id = case_id or self.id_factory(process_id)
        try:
            self.limits.check_start(process_id, case_id, data or {}, actor)
            self.driver.start(graph, StartCase(case_id, dict(data or {}), None, None, actor))
        except (TaskRefused, InputError) as exc:
            _say_what_was_stored(exc, "nothing was stored")
            raise
        return case_id

    def complete(self, task_id: str, *, actor: str, role: str, data: Mapping[str, Any] | None = None) -> InstanceState:
        """Complete a human task: role/assignee check and form validation; refusals are recorded."""
        return self._act_on_task(task_id, CompleteTask(task_id, actor, role, dict(data or {})))

    def assign(self, task_id: str, assignee: str, *, actor: str, role: str) -> InstanceState:
        """Give a task to a named person (or claim it); same role check as completing it."""
        return self._act_on_task(task_id, AssignTask(task_id, assignee, actor, role))

    def _act_on_task(self, task_id: str, event: CompleteTask | AssignTask) -> InstanceState:
        """A task's event: its case is looked up by the task, decided and stored on one connection."""
        with self.store.command():
            state, version, node = self.store.load_case_of_task(task_id)
            transition = self._decide(state.case_id, event, node, (state, version))
        return self._follow(state.case_id, transition)

    def send_message(self, case_id: str, message: str, payload: Mapping[str, Any] | None = None, *,
                     actor: str | None = None) -> InstanceState:
        return self.act(case_id, MessageArrived(message, dict(payload or {}), actor))

    def update(self, case_id: str, data: Mapping[str, Any], *, actor: str | None = None) -> InstanceState:
        return self.act(case_id, UpdateData(dict(data), actor))

    def cancel(self, case_id: str, reason: str, *, actor: str | None = None) -> InstanceState:
        return self.act(case_id, CancelCase(reason, actor))

    def act(self, case_id: str, event: Event, *, node: str | None = None,
            loaded: tuple[InstanceState, int] | None = None) -> InstanceState:
        """Apply a user's event. A refusal leaves the case unchanged and one `refused` audit record.

        Only the user's own event can be refused. Once it is stored, whatever fails in what it
        sets off (a step, a child case) is recorded on the case as an incident by the driver and
        never reported to the user as a refusal of what was in fact stored.
        """
        with self.store.command():
            transition = self._decide(case_id, event, node, loaded)
        return self._follow(case_id, transition)

    def _decide(self, case_id: str, event: Event, node: str | None,
                loaded: tuple[InstanceState, int] | None) -> Transition:
        """Check, apply and store a user's event, or record its refusal (on the command's connection)."""
        try:
            self.limits.check_event(event)
            return self._commit(case_id, event, loaded)
        except (TaskRefused, InputError) as exc:
            details: dict[str, Any] = {}
            if isinstance(event, (CompleteTask, AssignTask)):
                details.update(task_id=event.task_id, role=event.role)
            self.record_refusal(exc, type(event).__name__, case_id=case_id, node=node,
                                actor=getattr(event, "actor", None), state=loaded[0] if loaded else None, **details)
            raise

    def _follow(self, case_id: str, transition: Transition) -> InstanceState:
        """Act on a stored transition's commands (after its connection went back: steps may take long)."""
        self.driver.drive(case_id, transition)
        if any(type(command) in _CHANGES_THE_CASE_AGAIN for command in transition.commands):
            return self.load(case_id)  # a step or a child moved it on (or parked it as an incident)
        return transition.state

    def record_refusal(self, exc: SvcflowError, event: str, *, case_id: str | None = None,
                       task_id: str | None = None, node: str | None = None, actor: str | None = None,
                       state: InstanceState | None = None, **details: Any) -> bool:
        """The audit record of a refused action on an existing case: who tried what, and why.

        Adapters that refuse before the engine (unreadable --data, a bad --set) call this too, so
        every refusal of an action on a case is recorded the same way. Returns False when there is
        no case to record it on (unknown case or task): then nothing is stored at all.
        """
        try:
            if state is None and case_id is None and task_id is not None:
                state, _, node = self.store.load_case_of_task(task_id)
            elif state is None and case_id is not None:
                state, _ = self.store.load_case(case_id)
        except NotFound:
            state = None
        if state is None:
            _say_what_was_stored(exc, "nothing was stored")
            return False
        if task_id is not None:
            details["task_id"] = task_id
        record = {"reason": Limits.clip(str(exc), REASON_CHARS), "event": event, "actor": Limits.clip(actor),
                  **{k: Limits.clip(v) for k, v in details.items() if v is not None}}
        self.store.record_refusal(state.case_id, state.process_id, self.clock.now(), "refused", node, record)
        _say_what_was_stored(exc, f"case {state.case_id} is unchanged; the refusal is recorded in its history")
        return True

    def _commit(self, case_id: str, event: Event, loaded: tuple[InstanceState, int] | None = None) -> Transition:
        """Apply and store one event; on a concurrent change, re-read and re-decide."""
        with self.store.command():  # read and write on one connection (a no-op inside act's)
            for _attempt in range(MAX_RETRIES_ON_CONFLICT):
                state, version = loaded or self.store.load_case(case_id)
                loaded = None  # a retry must re-read
                now = self.clock.now()
                transition = apply(self.graph_for(state), state, event, now)
                self.limits.check_case_data(transition.state, event)
                try:
                    self.store.write(state, transition.state, transition.log, version, now)
                except ConcurrentModification:
                    continue
                self._stored(case_id)  # committed: the write commits on the command's connection
                return transition
        raise ConcurrentModification(f"case {case_id} kept changing under us; nothing was stored",
                                     hint="try again")

    def sweep(self, now: datetime | None = None, limit: int = 500,
              batch: int = SWEEP_BATCH) -> list[tuple[str, list[LogEntry]]]:
        """Apply due timers, SLA warnings, breaches and escalations once. Returns what happened per case.

        In batches: one query reads the due cases' ids, states and versions; the ticks are
        applied here; each batch of `batch` cases is written in one transaction in which a case
        is stored only if its version is still the one read (store.write_batch). A case changed
        meanwhile by a user or another sweep is skipped and left for the next pass, never
        overwritten, so several sweeps may run at once without escalating anything twice. The
        commands of what was stored (notifications, automatic steps) are driven afterwards.

        The due cases are decided at the clock's time after their states were read, not at the
        sweep's start: a user's change committed before the read must not end up with sweep
        events stamped before it (never back-dated). An explicit `now` (tests, `svcflow sweep
        --now`) is used as given.
        """
        start = now or self.clock.now()
        results: list[tuple[str, list[LogEntry]]] = self.start_scheduled(start)
        rows = self.store.due_states(start, limit)
        at = now or self.clock.now()
        with _collector_paused(), _BatchWriter(self.store, overlap=self.store.dialect != "sqlite") as writer:
            try:
                for first in range(0, len(rows), batch):
                    writer.submit(self._tick_due(rows[first:first + batch], at), at)
                    for chunk, written in writer.finished():  # the batch before, stored meanwhile
                        self._drive_swept(chunk, written, results)
            finally:  # every batch stored is driven, even when another one's write failed
                for chunk, written in writer.drain():
                    self._drive_swept(chunk, written, results)
        return results

    def _tick_due(self, rows: list[tuple[str, str, int]], at: datetime) -> list[Swept]:
        """The transitions of one batch of due rows (id, state JSON, version), each state decoded once."""
        decided: list[Swept] = []
        for case_id, text, version in rows:
            state: InstanceState | None = None
            try:
                state = state_from_json(text, case_id)
                due = state.next_due_at()
                if due is None or due > at:
                    continue
                transition = apply(self.graph_for(state), state, Tick(), at)
                decided.append((state, transition.state, transition.log, version, transition))
            except Exception as exc:  # one broken case must not stop the sweep for all the others
                self._sweep_failed(case_id, state, exc)
        return decided

    def _drive_swept(self, chunk: list[Swept], written: set[str],
                     results: list[tuple[str, list[LogEntry]]]) -> None:
        """The commands (notifications, automatic steps) of the cases of a batch that were stored."""
        for case_id in sorted(written):
            self._stored(case_id)
        self._process_of.update((new.case_id, new.process_id) for _, new, _, _, _ in chunk)
        try:
            for _, new, entries, _, transition in chunk:
                if new.case_id in written:
                    results.append((new.case_id, entries))
                    self.driver.drive(new.case_id, transition)
        finally:
            self._process_of.clear()

    def _sweep_failed(self, case_id: str, state: InstanceState | None, exc: Exception) -> None:
        """A case the sweep could not tick: logged, and parked as an incident (once)."""
        log.error("case %s: the sweep could not apply what is due: %s", case_id, exc)
        if state is not None and state.status != "incident":
            try:
                self.driver.system(case_id, RecordIncident(f"sweep: {type(exc).__name__}: {exc}"))
            except ConcurrentModification:  # changed meanwhile: the next pass sees it again
                pass

    def start_scheduled(self, now: datetime | None = None) -> list[tuple[str, list[LogEntry]]]:
        """Start the current period's case of every schedule of the library, once (see schedules.py)."""
        now = now or self.clock.now()
        started: list[tuple[str, list[LogEntry]]] = []
        latest = self.library.latest
        for due in due_starts([latest[pid].definition for pid in sorted(latest)], now):
            if self.store.case_exists(due.case_id):
                continue
            try:
                transition = self.driver.start(self.library.get(due.process_id),
                                               StartCase(due.case_id, dict(due.data), None, None, due.actor))
            except ConcurrentModification:  # another sweep started it a moment ago
                continue
            except SvcflowError as exc:  # one bad schedule must not stop the sweep's escalations
                log.warning("schedule %s of %s did not start case %s: %s", due.schedule_id, due.process_id,
                            due.case_id, exc)
                continue
            started.append((due.case_id, transition.log))
        return started

    def recover(self, case_id: str) -> InstanceState:
        """Continue a case whose runner died: redo the work its commands asked for, exactly once.

        Automatic steps still waiting are run again with the same idempotency key; children that
        were never created are created; finished children are reported to the parent.
        """
        state, _ = self.store.load_case(case_id)
        graph = self.graph_for(state)
        queue: deque[WorkItem] = deque()
        for token in state.tokens.values():
            auto = graph.auto_tasks.get(token.node)
            if auto is not None and token.attempt and not token.incident:
                queue.append((case_id, RunAutoStep(
                    token.id, auto.id, auto.handler, token.attempt, auto.retries,
                    auto.retry_delay_seconds, auto.timeout_seconds,
                    f"{case_id}:{token.id}:{auto.id}:{state.visits.get(auto.id, 1)}")))
            if token.child_case:
                if not self.store.case_exists(token.child_case):
                    call = graph.subprocesses[token.node]
                    scope = case_scope(state, graph.definition.parameters)
                    data = {name: compile_expression(text).evaluate(scope)
                            for name, text in call.inputs.items()}
                    queue.append((case_id, StartChild(token.id, call.process, data)))
                else:
                    child, _ = self.store.load_case(token.child_case)
                    if child.status in ("completed", "cancelled"):
                        queue.append((token.child_case, CaseEnded(child.status, child.outcome, case_id, token.id)))
                    else:
                        self.recover(token.child_case)
        self.driver.drain(queue)
        return self.store.load_case(case_id)[0]

    # -- the driver's host: where cases live ------------------------------------------------------
    def load(self, case_id: str) -> InstanceState:
        return self.store.load_case(case_id)[0]

    def exists(self, case_id: str) -> bool:
        return self.store.case_exists(case_id)

    def commit(self, case_id: str, event: Event) -> Transition:
        return self._commit(case_id, event)

    def begin(self, graph: ProcessGraph, event: StartCase) -> Transition:
        now = self.clock.now()
        transition = apply(graph, None, event, now)
        if event.parent_case is None:  # a child's data comes from its parent, already within the limits
            self.limits.check_case_data(transition.state)
        self.store.save_definition(graph.loaded, now)
        self.store.write(None, transition.state, transition.log, None, now)
        self._stored(transition.state.case_id)
        return transition

    def _stored(self, case_id: str) -> None:
        for hook in self.on_stored:
            try:
                hook(case_id)
            except Exception as exc:  # the change is stored: a hook's trouble is the hook's
                log.warning("case %s: hook %r after a stored change failed: %s", case_id, hook, exc)

    def observe(self, case_id: str, command: Command) -> None:
        for listener in self.listeners:
            listener(case_id, command)

    def notify(self, case_id: str, command: Notify) -> None:
        process_id = self._process_of.get(case_id) or self.load(case_id).process_id
        self.notifier.notify(case_id, process_id, command)

    # -- reading --------------------------------------------------------------------------------
    def case(self, case_id: str) -> CaseView:
        state, version = self.store.load_case(case_id)
        children = [row["id"] for row in self.store.cases(parent=case_id)]
        return CaseView(state, version, self.store.events(case_id), children)

    def open_tasks(self, case_id: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
        return self.store.tasks(case_id=case_id, role=role)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a sweep pass (if it was on), back on afterwards.

    A pass decodes thousands of states into dicts, dataclasses and datetimes that live until
    their batch is written; the collector's passes over them (each generation-2 pass walks every
    one) were half the CPU of decoding and ticking. What a pass allocates is freed by reference
    counting; anything cyclic is collected once the collector is back on.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


class _BatchWriter:
    """The sweep's batches stored by store.write_batch, in submission order.

    On PostgreSQL the writes run in a thread of their own (a pooled connection of their own), so
    the next batch is decoded and ticked while the database stores this one: the two halves of a
    pass use both cores instead of taking turns. On SQLite (one writer, and an in-memory store
    shares one connection) each batch is written at once, in the caller's thread.

    A batch's commands must be driven only after it is stored, and every stored batch must be
    driven: `finished` gives the batches stored but the one still being written, `drain` gives
    the rest; when a write fails, `__exit__` waits for the write already under way so nothing is
    half done, and the caller drives what was stored before the error is raised.
    """

    def __init__(self, store: Store, *, overlap: bool) -> None:
        self.store = store
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="svcflow-sweep-write") if overlap else None
        self.pending: deque[tuple[list[Swept], Future[set[str]]]] = deque()

    def __enter__(self) -> _BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, chunk: list[Swept], at: datetime) -> None:
        items: list[BatchItem] = [(old, new, entries, version) for old, new, entries, version, _ in chunk]
        if self.pool is not None:
            self.pending.append((chunk, self.pool.submit(self.store.write_batch, items, at)))
            return
        done: Future[set[str]] = Future()
        try:
            done.set_result(self.store.write_batch(items, at))
        except BaseException as exc:
            done.set_exception(exc)
        self.pending.append((chunk, done))

    def finished(self) -> Iterator[tuple[list[Swept], set[str]]]:
        """The batches stored, but the latest one while it may still be written (it overlaps the next tick)."""
        keep = 1 if self.pool is not None else 0
        while len(self.pending) > keep:
            chunk, future = self.pending.popleft()
            yield chunk, future.result()

    def drain(self) -> Iterator[tuple[list[Swept], set[str]]]:
        """Every batch still pending, once stored; a failed one raises after the others were given."""
        failure: BaseException | None = None
        while self.pending:
            chunk, future = self.pending.popleft()
            try:
                written = future.result()
            except BaseException as exc:
                failure = failure or exc
                continue
            yield chunk, written
        if failure is not None:
            raise failure


def _say_what_was_stored(exc: SvcflowError, stored: str) -> None:
    """Refusal messages end by saying exactly what was stored, so no entry point can claim otherwise."""
    if stored not in (exc.hint or ""):
        exc.hint = f"{exc.hint}; {stored}" if exc.hint else stored


def _new_case_id(process_id: str) -> str:
    prefix = "".join(part[0] for part in process_id.split("_"))[:4].upper()
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


__all__ = ["Engine", "CaseView", "LogNotifier", "Notifier", "run_in_process", "NotFound", "SvcflowError"]

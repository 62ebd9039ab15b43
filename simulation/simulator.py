"""What-if simulation: run many virtual cases through the REAL interpreter on a virtual clock.

The simulator is a host of the engine's own command driver (engine/run/driver.py), with the
states kept in memory and the log kept as records shaped like the store's events, so a run of a
year of complaints takes seconds, and the same review report reads it. Everything the engine
would do is done by the same code: automatic steps run the registered handlers, sub-processes
run as real child cases,
timers and SLA thresholds fire through `Tick` at the instants `state.next_due_at()` names, so
warnings, breaches, escalations and reassignments happen as they would in production.

What the engine does not know comes from a scenario (simulation/scenario.py). People work only in
business hours (the process calendar): a task's work time is laid onto working time with
`calendar.add`, and a role's queue is served by priority, then first come first served.

Randomness comes only from `random.Random` instances seeded from the run's seed (one stream
per concern, so that two variants compared with the same seed see the same arrivals and the
same customers), so the same seed gives identical numbers.
"""

from __future__ import annotations

import gc
import heapq
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from analytics.stats import BusinessTime, ProcessStats, compute_stats, quantile
from engine.definition.graph import ProcessGraph
from engine.definition.library import ProcessLibrary
from engine.definition.model import PRIORITIES, FieldSpec, HumanTask, MessageWait, ProcessDefinition, SubProcess
from engine.errors import InputError, TaskRefused
from engine.run.driver import CaseHost, CommandDriver, run_directly
from engine.run.events import (
    ChildFinished, CompleteTask, Event, MessageArrived, Notify, RunAutoStep, StartCase, StartChild, TaskClosed,
    TaskOpened, Tick,
)
from engine.run.handlers import HandlerRegistry, default_registry
from engine.run.interpreter import Transition, apply
from engine.run.state import InstanceState, Token
from engine.run.log import LogEntry
from simulation.scenario import (
    DEFAULT_MESSAGE_DELAY, ArrivalSpec, ChildSpec, Distribution, Scenario, SimulationError, ValueGenerator,
    _library_for, _variant_id, staff_assumptions,
)

_PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES)}



# -- results ----------------------------------------------------------------------------------------


@dataclass
class RoleUse:
    """A role's people: how busy they were and how long tasks waited for them (business hours)."""

    role: str
    staff: int | None
    tasks: int = 0
    busy_h: float = 0.0
    available_h: float | None = None
    waits_h: list[float] = field(default_factory=list, repr=False)
    max_queue: int = 0

    @property
    def utilisation(self) -> float | None:
        return self.busy_h / self.available_h if self.available_h else None

    @property
    def median_wait_h(self) -> float | None:
        return quantile(sorted(self.waits_h), 0.5)

    @property
    def p90_wait_h(self) -> float | None:
        return quantile(sorted(self.waits_h), 0.9)


@dataclass
class SimulationResult:
    scenario: Scenario
    graph: ProcessGraph
    seed: int
    cases: int
    events: list[LogEntry]
    roles: dict[str, RoleUse]
    started_at: datetime
    ended_at: datetime
    child_cases: int = 0
    applies: int = 0
    notifications: dict[str, int] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)  # what the scenario left open, stated in the report
    _stats: ProcessStats | None = field(default=None, repr=False, compare=False)

    def stats(self) -> ProcessStats:
        """The review statistics of the root process (computed once: reports and summaries share them)."""
        if self._stats is None:
            self._stats = compute_stats(self.graph, self.events)
        return self._stats


# -- the simulation ------------------------------------------------------------------------------------
_ARRIVAL, _TICK, _TASK_DONE, _MESSAGE, _AUTO_DONE, _CHILD_DONE = range(6)


@dataclass
class _Task:
    case_id: str
    task_id: str
    node: str
    process_id: str
    role: str
    priority: str
    enqueued: float
    version: int = 0
    status: str = "queued"  # queued | working | done | cancelled
    worker: str | None = None
    started: float = 0.0


class _Pool:
    """The people of one role. size None = as many as needed (no queue)."""

    def __init__(self, role: str, size: int | None) -> None:
        self.role = role
        self.size = size
        self.free: deque[str] = deque(f"{role}-{i + 1}" for i in range(size or 0))
        self.queue: list[tuple[int, float, int, _Task, int]] = []
        self.waiting = 0
        self.spawned = 0


class Simulation(CaseHost):
    """One run of a scenario. Use `run()`; construct with the library the definitions come from.

    It is a host of the engine's own command driver: the same code that runs the engine's
    steps, children and notifications runs them here, on memory and a virtual clock.
    """

    def __init__(self, scenario: Scenario, *, seed: int | None = None, cases: int | None = None,
                 arrivals: ArrivalSpec | None = None, library: ProcessLibrary | None = None,
                 handlers: HandlerRegistry | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.n_cases = scenario.cases if cases is None else cases
        self.arrival_spec = arrivals or scenario.arrivals
        self.library = _library_for(scenario, library)
        self.graph = self._root_graph()
        self.handlers = handlers or default_registry()
        self.executor = run_directly
        self.driver = CommandDriver(self)
        self.calendar = self.graph.calendar
        self.day_seconds = self.calendar.day_seconds
        self.tz = self.calendar.tz
        self.btime = BusinessTime(self.calendar)
        self.rng_arrivals = random.Random(f"{self.seed}:arrivals")
        self.rng_data = random.Random(f"{self.seed}:data")
        self.streams: dict[str, tuple[random.Random, random.Random, random.Random]] = {}
        self._bind()
        self.states: dict[str, InstanceState] = {}
        self.graphs: dict[str, ProcessGraph] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.tasks: dict[tuple[str, str], _Task] = {}
        self.pools: dict[str, _Pool] = {}
        self.uses: dict[str, RoleUse] = {}
        self.events: list[LogEntry] = []
        self.heap: list[tuple[float, int, int, Any]] = []
        self.counter = 0
        self.tick_at: dict[str, float] = {}
        self.applies = 0
        self.now = scenario.start
        self.children = 0
        self.notifications: dict[str, int] = {}
        self.duration_plans: dict[tuple[str, str], Distribution | None] = {}
        self.output_plans: dict[tuple[str, str], list[tuple[str, ValueGenerator | None, FieldSpec]]] = {}

    # -- set-up ------------------------------------------------------------------------------------
    def _root_graph(self) -> ProcessGraph:
        definition = self.scenario.definition
        process_id = _variant_id(self.scenario) or definition
        return self.library.get(process_id)

    def _bind(self) -> None:
        """Check the scenario against the definitions it names, and build the samplers once."""
        s = self.scenario
        where = s.source or s.name
        graphs = self._reachable_graphs()
        nodes: dict[str, list[tuple[ProcessDefinition, Any]]] = {}
        for graph in graphs:
            for node in graph.definition.nodes:
                nodes.setdefault(node.id, []).append((graph.definition, node))
                nodes.setdefault(f"{graph.definition.id}.{node.id}", []).append((graph.definition, node))
        lanes = list(dict.fromkeys(lane.id for g in graphs for lane in g.definition.lanes))
        problems: list[str] = []  # every mistake of the file, reported at once

        def known(key: str, section: str) -> list[tuple[ProcessDefinition, Any]]:
            if key not in nodes:
                problems.append(f"{section}: no node '{key}' in {', '.join(g.process_id for g in graphs)} "
                                "(use a node id, or process_id.node_id)")
                return []
            return nodes[key]

        def built(make: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return make(*args, **kwargs)
            except SimulationError as exc:
                problems.append(exc.message.removeprefix(f"{where}: ") + (f" ({exc.hint})" if exc.hint else ""))
                return None

        self.durations: dict[str, Distribution] = {}
        for key, spec in s.durations.items():
            if known(key, "durations"):
                self.durations[key] = built(Distribution, spec, day_seconds=self.day_seconds,
                                            where=f"{where}: durations.{key}")
        self.default_duration = built(Distribution, s.default_duration, day_seconds=self.day_seconds,
                                      where=f"{where}: default_duration")
        self.outputs: dict[str, dict[str, ValueGenerator]] = {}
        for key, fields_ in s.outputs.items():
            candidates = known(key, "outputs")
            if not candidates:
                continue
            specs: dict[str, FieldSpec] = {}
            for _definition, node in candidates:
                if isinstance(node, HumanTask):
                    specs.update({f.id: f for f in node.form})
                elif isinstance(node, MessageWait):
                    specs.update(node.fields)
            for name in fields_:
                if name not in specs:
                    problems.append(f"outputs.{key}: the node has no form field '{name}' "
                                    f"(its fields: {', '.join(sorted(specs)) or 'none'})")
            self.outputs[key] = {name: built(ValueGenerator, spec, f"{where}: outputs.{key}.{name}",
                                             specs[name].type) for name, spec in fields_.items() if name in specs}
        root = self.graph.definition
        self.case_data = {name: built(ValueGenerator, spec, f"{where}: case_data.{name}",
                                      root.data[name].type if name in root.data else None)
                          for name, spec in s.case_data.items()}
        self.start_fields = [name for name in s.case_data if name in root.data]
        staff_errors, self.assumptions = staff_assumptions(s, lanes)
        problems += [f"{error} (lanes: {', '.join(lanes)}; or say unlisted_staff: unlimited)" for error in staff_errors]
        self.messages: dict[str, tuple[Distribution, bool]] = {}
        for key, message in s.messages.items():
            self.messages[key] = (built(Distribution, message.delay, day_seconds=self.day_seconds,
                                        where=f"{where}: messages.{key}"), message.business)
        self.default_message = (Distribution({"dist": "exponential", "mean": DEFAULT_MESSAGE_DELAY},
                                             day_seconds=self.day_seconds), True)
        self.child_specs: dict[str, tuple[Distribution, ChildSpec]] = {}
        for key, child in s.subprocesses.items():
            if known(key, "subprocesses"):
                self.child_specs[key] = (built(Distribution, child.duration, day_seconds=self.day_seconds,
                                               where=f"{where}: subprocesses.{key}"), child)
        if problems:
            count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
            raise SimulationError(f"{where}: {count}:\n" + "\n".join(f"  - {p}" for p in problems),
                                  hint="fix them all, then run again")

    def _reachable_graphs(self) -> list[ProcessGraph]:
        graphs = [self.graph]
        seen = {self.graph.process_id}
        i = 0
        while i < len(graphs):
            for node in graphs[i].definition.nodes:
                if isinstance(node, SubProcess) and node.process not in seen:
                    seen.add(node.process)
                    graphs.append(self.library.get(node.process))
            i += 1
        return graphs

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> SimulationResult:
        """Run to the end. The cyclic garbage collector is paused meanwhile: a run keeps hundreds of
        thousands of log records alive, and rescanning them on every full collection made long runs
        grow quadratically; the run itself creates no reference cycles worth collecting."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if enabled:
                gc.enable()

    def _run(self) -> SimulationResult:
        first = self.scenario.start.astimezone(self.tz)
        for index, at in enumerate(self._arrival_times(first)):
            self._push(at, _ARRIVAL, index)
        last_arrival = max((item[0] for item in self.heap), default=first.timestamp())
        deadline = last_arrival + self.scenario.max_days * 86400.0
        now_ts = first.timestamp()
        heap = self.heap
        tick_at = self.tick_at
        while heap:
            ts, _seq, kind, payload = heapq.heappop(heap)
            if ts > deadline:
                break
            if kind == _TICK and tick_at.get(payload) != ts:
                continue  # superseded: the case's due instant moved and a tick for it is queued
            now_ts = ts
            now = self.now = datetime.fromtimestamp(ts, self.tz)
            if kind == _ARRIVAL:
                self._arrive(payload, now)
            elif kind == _TICK:
                self._tick(payload, now)
            elif kind == _TASK_DONE:
                self._task_done(payload, now)
            elif kind == _MESSAGE:
                self._message(payload, now)
            elif kind == _AUTO_DONE:
                case_id, command = payload
                self.driver.run_step(case_id, command)
            elif kind == _CHILD_DONE:
                parent, token_id, child_id, data, outcome = payload
                self.driver.system(parent, ChildFinished(token_id, child_id, data, outcome), None, token_id)
        end = datetime.fromtimestamp(now_ts, self.tz)
        available_s = self.btime.between(first, end) if end > first else 0.0
        for role, use in self.uses.items():
            pool = self.pools[role]
            use.staff = pool.size
            use.available_h = (pool.size * available_s / 3600.0) if pool.size else None
        return SimulationResult(self.scenario, self.graph, self.seed, self.n_cases, self.events,
                                dict(sorted(self.uses.items())), first, end, self.children, self.applies,
                                dict(sorted(self.notifications.items())), list(self.assumptions))

    def _arrival_times(self, first: datetime) -> list[datetime]:
        spec = self.arrival_spec
        rng = self.rng_arrivals
        if spec.interarrival is not None:
            gap = Distribution(spec.interarrival, day_seconds=self.day_seconds, where="arrivals.interarrival")
            business = spec.business
        else:
            rate = spec.rate or 1.0
            per = {"business_hour": 3600.0, "working_day": float(self.day_seconds), "hour": 3600.0,
                   "day": 86400.0}[spec.per]
            gap = Distribution({"dist": "exponential", "mean": per / rate / 60.0}, day_seconds=self.day_seconds)
            business = spec.per in ("business_hour", "working_day")
        times: list[datetime] = []
        at = self.calendar.next_working_instant(first) if business else first
        for _ in range(self.n_cases):
            seconds = gap.sample(rng)
            at = self.calendar.add(at, int(round(seconds))) if business else at + timedelta(seconds=seconds)
            times.append(at)
        return times

    def _push(self, at: datetime | float, kind: int, payload: Any) -> None:
        self.counter += 1
        ts = at if isinstance(at, float) else at.timestamp()
        heapq.heappush(self.heap, (ts, self.counter, kind, payload))

    # -- applying events -----------------------------------------------------------------------------
    def _apply(self, case_id: str, event: Event, now: datetime) -> Transition:
        graph = self.graphs[case_id]
        transition = apply(graph, self.states.get(case_id), event, now, reuse_state=True)
        self.applies += 1
        self.states[case_id] = transition.state
        self.events.extend(transition.log)  # the interpreter's records are the store's event rows
        return transition

    def _feed(self, case_id: str, event: Event, now: datetime) -> None:
        """Apply one event and everything it sets off (auto steps, children, parents) at this instant."""
        self.driver.act(case_id, event)

    # -- the driver's host: cases in memory, on the virtual clock -----------------------------------------
    def load(self, case_id: str) -> InstanceState:
        return self.states[case_id]

    def graph_for(self, state: InstanceState) -> ProcessGraph:
        return self.graphs[state.case_id]

    def exists(self, case_id: str) -> bool:
        return case_id in self.states

    def commit(self, case_id: str, event: Event) -> Transition:
        return self._apply(case_id, event, self.now)

    def begin(self, graph: ProcessGraph, event: StartCase) -> Transition:
        case_id = event.case_id
        self.graphs[case_id] = graph
        if event.parent_case is not None:
            self.profiles[case_id] = self.profiles.get(event.parent_case, {})
            self.children += 1
        return self._apply(case_id, event, self.now)

    def after(self, case_id: str, transition: Transition) -> None:
        self._after(case_id, transition, self.now)

    def settled(self, touched: list[str]) -> None:
        for case_id in touched:
            self._schedule_tick(case_id)

    def task_opened(self, case_id: str, command: TaskOpened) -> None:
        self._task_opened(case_id, command, self.now)

    def task_closed(self, case_id: str, command: TaskClosed) -> None:
        self._task_closed(case_id, command, self.now)

    def notify(self, case_id: str, command: Notify) -> None:
        for role in command.roles:
            self.notifications[role] = self.notifications.get(role, 0) + 1

    def defer_step(self, case_id: str, command: RunAutoStep) -> bool:
        """A step with a duration in the scenario finishes that much business time later."""
        duration = self._duration_of(case_id, command.node, default=False)
        if duration is None:
            return False
        self._push(self.calendar.add(self.now, int(round(duration))), _AUTO_DONE, (case_id, command))
        return True

    def replace_child(self, parent_id: str, token: Token, command: StartChild) -> bool:
        """A sub-process the scenario replaces by a duration and an outcome: no child case at all."""
        key = self._key(self.graphs[parent_id].process_id, token.node, self.child_specs)
        if key is None:
            return False
        duration, spec = self.child_specs[key]
        self._push(self.calendar.add(self.now, int(round(duration.sample(self._streams(parent_id)[0])))), _CHILD_DONE,
                   (parent_id, command.token_id, token.child_case, dict(spec.data), spec.outcome))
        return True

    def _after(self, case_id: str, transition: Transition, now: datetime) -> None:
        """React to what the log says happened: customers to answer, tasks to re-queue after escalation."""
        requeue = False
        for entry in transition.log:
            kind = entry.type
            if kind == "message_awaited":
                self._await_message(case_id, entry.node or "", str(entry.data.get("message", "")), now)
            elif kind == "escalated" or kind == "priority_raised":
                requeue = True
            elif kind == "case_completed" or kind == "case_cancelled":
                self.streams.pop(case_id, None)
        if requeue:
            self._requeue(case_id, now)

    def _schedule_tick(self, case_id: str, due: datetime | None = None) -> None:
        """Keep one tick queued per case, at its next due instant (`tick_at` holds that instant).

        Every change of a case's state goes through the driver, which calls this, so a queued tick
        whose instant is no longer the case's `tick_at` is stale and `_run` drops it unopened.
        """
        if due is None:
            due = self.states[case_id].next_due_at()
            if due is None:
                return
        ts = due.timestamp()
        if self.tick_at.get(case_id) == ts:
            return
        self.tick_at[case_id] = ts
        self._push(ts, _TICK, case_id)

    def _tick(self, case_id: str, now: datetime) -> None:
        self.tick_at.pop(case_id, None)
        due = self.states[case_id].next_due_at()
        if due is None:
            return
        if due > now:
            self._schedule_tick(case_id, due)
            return
        self._feed(case_id, Tick(), now)

    # -- cases -----------------------------------------------------------------------------------------
    def _arrive(self, index: int, now: datetime) -> None:
        case_id = f"SIM-{index + 1:06d}"
        profile = {name: gen.sample(self.rng_data) for name, gen in self.case_data.items()}
        self.profiles[case_id] = profile
        self.graphs[case_id] = self.graph
        data = {name: profile[name] for name in self.start_fields}
        try:
            self.driver.start(self.graph, StartCase(case_id, data, actor="simulator"))
        except InputError as exc:
            raise SimulationError(f"case_data does not fit process '{self.graph.process_id}': {exc}") from None

    # -- people --------------------------------------------------------------------------------------------
    def _pool(self, role: str) -> _Pool:
        pool = self.pools.get(role)
        if pool is None:
            pool = self.pools[role] = _Pool(role, self.scenario.staff.get(role))
            self.uses[role] = RoleUse(role, pool.size)
        return pool

    def _task_opened(self, case_id: str, command: TaskOpened, now: datetime) -> None:
        state = self.states[case_id]
        task_state = state.tasks[command.task_id]
        task = _Task(case_id, command.task_id, command.node, state.process_id, task_state.role,
                     task_state.priority, now.timestamp())
        self.tasks[(case_id, command.task_id)] = task
        self._enqueue(task, now)

    def _enqueue(self, task: _Task, now: datetime) -> None:
        pool = self._pool(task.role)
        task.version += 1
        task.status = "queued"
        self.counter += 1
        heapq.heappush(pool.queue, (-_PRIORITY_RANK.get(task.priority, 1), task.enqueued, self.counter, task,
                                    task.version))
        pool.waiting += 1
        use = self.uses[task.role]
        if pool.waiting > use.max_queue:
            use.max_queue = pool.waiting
        self._dispatch(pool, now)

    def _dispatch(self, pool: _Pool, now: datetime) -> None:
        while pool.queue and (pool.size is None or pool.free):
            _prio, _enq, _seq, task, version = heapq.heappop(pool.queue)
            if task.version != version or task.status != "queued" or task.role != pool.role:
                continue
            pool.waiting -= 1
            if pool.size is None:
                pool.spawned += 1
                worker = f"{pool.role}-{pool.spawned}"
            else:
                worker = pool.free.popleft()
            self._start_work(task, worker, now)

    def _start_work(self, task: _Task, worker: str, now: datetime) -> None:
        task.status = "working"
        task.worker = worker
        start = self.calendar.next_working_instant(now)
        task.started = start.timestamp()
        use = self.uses[task.role]
        use.waits_h.append(max(0.0, self.btime.at_ts(task.started) - self.btime.at_ts(task.enqueued)) / 3600.0)
        seconds = self._duration_of(task.case_id, task.node, default=True) or 0.0
        done = self.calendar.add(start, int(round(seconds)))
        self._push(done, _TASK_DONE, (task, task.version))

    def _release(self, task: _Task, now: datetime) -> None:
        """The person stops working on the task (done or withdrawn) and takes the next one."""
        use = self.uses[task.role]
        use.busy_h += max(0.0, self.btime.at(now) - self.btime.at_ts(task.started)) / 3600.0
        use.tasks += 1
        pool = self.pools[task.role]
        if pool.size is not None and task.worker is not None:
            pool.free.append(task.worker)
        task.worker = None
        self._dispatch(pool, now)

    def _task_done(self, payload: tuple[_Task, int], now: datetime) -> None:
        task, version = payload
        if task.version != version or task.status != "working":
            return
        state = self.states[task.case_id]
        current = state.tasks.get(task.task_id)
        worker = task.worker or "simulator"
        task.status = "done"
        self._release(task, now)
        if current is None or current.status != "open":
            return
        output = self._form_output(task.case_id, current.node, now)
        role = current.role
        for attempt in range(3):
            actor = worker if attempt == 0 else f"{worker}-alt{attempt}"
            try:
                self._feed(task.case_id, CompleteTask(task.task_id, actor, role, output), now)
                return
            except TaskRefused as exc:
                if "four-eyes" not in str(exc):
                    raise SimulationError(f"case {task.case_id}: task '{current.node}' refused: {exc}") from None
            except InputError as exc:
                raise SimulationError(
                    f"the scenario's outputs for '{current.node}' do not fit its form: {exc}",
                    hint=f"set outputs.{current.node} in the scenario") from None

    def _task_closed(self, case_id: str, command: TaskClosed, now: datetime) -> None:
        task = self.tasks.pop((case_id, command.task_id), None)
        if task is None or command.status == "completed":
            return
        if task.status == "working":
            task.status = "cancelled"
            self._release(task, now)
        elif task.status == "queued":
            task.status = "cancelled"
            pool = self.pools.get(task.role)
            if pool is not None:
                pool.waiting -= 1

    def _requeue(self, case_id: str, now: datetime) -> None:
        """Escalation moved a task to another role or raised its priority: its place in the queues changes."""
        state = self.states[case_id]
        for task_state in state.tasks.values():
            if task_state.status != "open":
                continue
            task = self.tasks.get((case_id, task_state.id))
            if task is None or task.status != "queued":
                continue
            if task.role == task_state.role and task.priority == task_state.priority:
                continue
            old = self.pools.get(task.role)
            if old is not None:
                old.waiting -= 1
            task.role = task_state.role
            task.priority = task_state.priority
            self._enqueue(task, now)

    # -- messages ------------------------------------------------------------------------------------------
    def _await_message(self, case_id: str, node: str, message: str, now: datetime) -> None:
        process_id = self.graphs[case_id].process_id
        key = self._key(process_id, node, self.messages) or self._key(process_id, message, self.messages)
        distribution, business = self.messages[key] if key is not None else self.default_message
        seconds = distribution.sample(self._streams(case_id)[2])
        at = self.calendar.add(now, int(round(seconds))) if business else now + timedelta(seconds=seconds)
        self._push(at, _MESSAGE, (case_id, node, message))

    def _message(self, payload: tuple[str, str, str], now: datetime) -> None:
        case_id, node, message = payload
        state = self.states[case_id]
        if state.status in ("completed", "cancelled"):
            return
        if not any(t.message == message and t.node == node for t in state.tokens.values()):
            return
        output = self._form_output(case_id, node, now)
        try:
            self._feed(case_id, MessageArrived(message, output, actor="customer"), now)
        except InputError as exc:
            raise SimulationError(f"the scenario's outputs for message node '{node}' do not fit: {exc}",
                                  hint=f"set outputs.{node} in the scenario") from None

    # -- sampling ----------------------------------------------------------------------------------------------
    def _streams(self, case_id: str) -> tuple[random.Random, random.Random, random.Random]:
        """The case's own random streams (work times, form answers, customer delays).

        Per case, so that a case taking the same path in two variants draws the same numbers
        (common random numbers: the comparison shows the change, not the noise); dropped when
        the case ends to keep memory flat over long runs.
        """
        streams = self.streams.get(case_id)
        if streams is None:
            streams = self.streams[case_id] = (random.Random(f"{self.seed}:work:{case_id}"),
                                               random.Random(f"{self.seed}:outputs:{case_id}"),
                                               random.Random(f"{self.seed}:messages:{case_id}"))
        return streams

    @staticmethod
    def _key(process_id: str, node: str, table: Mapping[str, Any]) -> str | None:
        qualified = f"{process_id}.{node}"
        if qualified in table:
            return qualified
        return node if node in table else None

    def _duration_of(self, case_id: str, node: str, *, default: bool) -> float | None:
        process_id = self.graphs[case_id].process_id
        plan = (process_id, node)
        if plan in self.duration_plans:
            distribution = self.duration_plans[plan]
        else:
            key = self._key(process_id, node, self.durations)
            distribution = self.duration_plans[plan] = self.durations[key] if key is not None else None
        if distribution is None:
            return self.default_duration.sample(self._streams(case_id)[0]) if default else None
        return distribution.sample(self._streams(case_id)[0])

    def _output_plan(self, graph: ProcessGraph, node_id: str) -> list[tuple[str, ValueGenerator | None, FieldSpec]]:
        """Per form field of a step: the scenario's generator (or None) and the field; worked out once."""
        plan = self.output_plans.get((graph.process_id, node_id))
        if plan is None:
            node = graph.nodes[node_id]
            key = self._key(graph.process_id, node_id, self.outputs)
            generators = self.outputs.get(key, {}) if key is not None else {}
            specs: dict[str, FieldSpec]
            if isinstance(node, HumanTask):
                specs = graph.form_specs[node_id]
            elif isinstance(node, MessageWait):
                specs = dict(node.fields)
            else:
                specs = {}
            plan = self.output_plans[(graph.process_id, node_id)] = [
                (name, generators.get(name), spec) for name, spec in specs.items()]
        return plan

    def _form_output(self, case_id: str, node_id: str, now: datetime) -> dict[str, Any]:
        """Form values: the scenario's outputs, else the case's generated profile, else a neutral filler."""
        profile = self.profiles.get(case_id, {})
        output: dict[str, Any] = {}
        rng = self._streams(case_id)[1]
        for name, generator, spec in self._output_plan(self.graphs[case_id], node_id):
            if generator is not None:
                output[name] = generator.sample(rng)
            elif name in profile:
                output[name] = profile[name]
            elif spec.required:
                output[name] = happy_path_value(name, spec, now)
        return output


def happy_path_value(name: str, spec: FieldSpec, now: datetime) -> Any:
    """A value for a required field the scenario says nothing about: the happy path.

    Yes/no answers are yes, bounded scores the best, amounts the minimum, choices the first one
    (a field's default wins over all of these). Without this, an unmentioned "customer accepts?"
    would send every case round the rework loop; whatever matters to a what-if belongs in the
    scenario's `outputs`.
    """
    kind = spec.type
    if spec.default is not None:
        return spec.default
    if kind == "boolean":
        return True
    if kind == "enum":
        return (spec.choices or [""])[0]
    if kind in ("integer", "number"):
        if spec.minimum is not None and spec.maximum is not None:
            value = spec.maximum
        else:
            value = spec.minimum if spec.minimum is not None else 0
        return int(value) if kind == "integer" else float(value)
    if kind == "date":
        return now.date().isoformat()
    if kind == "datetime":
        return now.isoformat()
    if kind == "list":
        return []
    return f"sim {name}"


def simulate(scenario: Scenario, *, cases: int | None = None, seed: int | None = None,
             arrivals: ArrivalSpec | None = None, library: ProcessLibrary | None = None) -> SimulationResult:
    """Run a scenario once; same scenario and seed, same result."""
    return Simulation(scenario, seed=seed, cases=cases, arrivals=arrivals, library=library).run()

"""What-if simulation: run many virtual cases through the REAL interpreter on a virtual clock.

The simulator drives `engine.interpreter.apply` directly with the states kept in memory and the
log kept as records shaped like the store's events, so a run of a year of complaints takes
seconds, and the same review report reads it. Everything the engine would do is done the same
way: automatic steps run the registered handlers, sub-processes run as real child cases,
timers and SLA thresholds fire through `Tick` at the instants `state.next_due_at()` names, so
warnings, breaches, escalations and reassignments happen as they would in production.

What the engine does not know comes from a scenario file: when cases arrive, what their data
looks like, how long each step takes a person (business time), what people answer in forms,
how long customers take to reply, and how many people each role has. People work only in
business hours (the process calendar): a task's work time is laid onto working time with
`calendar.add`, and a role's queue is served by priority, then first come first served.

Randomness comes only from `random.Random` instances seeded from the run's seed (one stream
per concern, so that two variants compared with the same seed see the same arrivals and the
same customers), so the same seed gives identical numbers.
"""

from __future__ import annotations

import gc
import heapq
import html
import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.run.log import LogEntry
from engine.definition.model import PRIORITIES, FieldSpec, HumanTask, MessageWait, ProcessDefinition
from engine.time.durations import parse_duration
from engine.errors import DefinitionError, InputError, SvcflowError, TaskRefused
from engine.run.events import (
    AutoStepDone, AutoStepFailed, CaseEnded, ChildFinished, Command, CompleteTask, Event, MessageArrived, Notify,
    RunAutoStep, StartCase, StartChild, TaskClosed, TaskOpened, Tick,
)
from engine.definition.graph import ProcessGraph
from engine.run.handlers import HandlerContext, HandlerRegistry, default_registry
from engine.run.interpreter import Transition, apply
from engine.definition.library import ProcessLibrary
from engine.definition.loader import load_file
from engine.run.state import InstanceState
from visualize.review import Review, heatmap_dot, html_table, inline_svg, page, review_body, write_review
from analytics.stats import BusinessTime, ProcessStats, compute_stats, quantile

DEFAULT_START = "2025-01-06T09:00:00+08:00"  # a working Monday
DEFAULT_TASK_DURATION = "30m"
DEFAULT_MESSAGE_DELAY = "4h"
_PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES)}


class SimulationError(SvcflowError):
    """A scenario that cannot run: unknown nodes or fields, bad distributions, refused form values."""


# -- distributions ------------------------------------------------------------------------------------
def _seconds(value: Any, day_seconds: int) -> float:
    """A business duration: "2h", "30m", "1d" (a working day) or a bare number of minutes."""
    if isinstance(value, bool):
        raise SimulationError(f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value) * 60.0
    try:
        return float(parse_duration(str(value)).total_seconds(day_seconds))
    except ValueError as exc:
        raise SimulationError(str(exc), hint='write durations like "30m", "2h", "1d" or a number of minutes') \
            from None


def _number(value: Any, _day_seconds: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SimulationError(f"expected a number, got {value!r}")
    return float(value)


_Z90 = 1.2815515655446004  # standard normal quantile at 0.9


class Distribution:
    """A sampler built from a scenario mapping such as {dist: lognormal, median: 1h, p90: 4h}.

    Supported: fixed (value), exponential (mean), lognormal (median or mean, with sigma or
    p90), triangular (min, mode, max), uniform (min, max), normal (mean, sd; cut at 0).
    """

    KINDS = ("fixed", "exponential", "lognormal", "triangular", "uniform", "normal")

    def __init__(self, spec: Mapping[str, Any], *, unit: Any = _seconds, day_seconds: int = 27000,
                 where: str = "") -> None:
        self.where = where
        kind = spec.get("dist", "fixed")
        if kind not in self.KINDS:
            raise SimulationError(f"{where}: unknown distribution {kind!r}", hint=f"use one of {', '.join(self.KINDS)}")
        self.kind = str(kind)
        allowed = {"fixed": {"value"}, "exponential": {"mean"}, "lognormal": {"median", "mean", "sigma", "p90"},
                   "triangular": {"min", "mode", "max"}, "uniform": {"min", "max"}, "normal": {"mean", "sd"}}
        unknown = sorted(set(spec) - {"dist"} - allowed[self.kind])
        if unknown:
            raise SimulationError(f"{where}: {self.kind} does not take {', '.join(unknown)}",
                                  hint=f"it takes {', '.join(sorted(allowed[self.kind]))}")

        def get(name: str) -> float:
            if name not in spec:
                raise SimulationError(f"{where}: a {self.kind} distribution needs '{name}'")
            try:
                return float(unit(spec[name], day_seconds))
            except SimulationError as exc:
                raise SimulationError(f"{where}: {name}: {exc.message}", hint=exc.hint) from None

        self.a = self.b = self.c = 0.0
        if self.kind == "fixed":
            self.a = get("value")
        elif self.kind == "exponential":
            self.a = get("mean")
            if self.a <= 0:
                raise SimulationError(f"{where}: the mean must be positive")
        elif self.kind == "lognormal":
            if "sigma" in spec:
                sigma = float(spec["sigma"])
            elif "p90" in spec and "median" in spec:
                median, p90 = get("median"), get("p90")
                if not p90 > median > 0:
                    raise SimulationError(f"{where}: a lognormal needs 0 < median < p90")
                sigma = math.log(p90 / median) / _Z90
            else:
                raise SimulationError(f"{where}: a lognormal needs sigma, or median and p90")
            if "median" in spec:
                mu = math.log(get("median"))
            elif "mean" in spec:
                mu = math.log(get("mean")) - sigma * sigma / 2
            else:
                raise SimulationError(f"{where}: a lognormal needs median or mean")
            self.a, self.b = mu, sigma
        elif self.kind == "triangular":
            self.a, self.b, self.c = get("min"), get("mode"), get("max")
            if not self.a <= self.b <= self.c:
                raise SimulationError(f"{where}: a triangular needs min <= mode <= max")
        elif self.kind == "uniform":
            self.a, self.b = get("min"), get("max")
        elif self.kind == "normal":
            self.a, self.b = get("mean"), get("sd")

    def sample(self, rng: random.Random) -> float:
        kind = self.kind
        if kind == "fixed":
            return self.a
        if kind == "exponential":
            return rng.expovariate(1.0 / self.a)
        if kind == "lognormal":
            return rng.lognormvariate(self.a, self.b)
        if kind == "triangular":
            return rng.triangular(self.a, self.c, self.b)
        if kind == "uniform":
            return rng.uniform(self.a, self.b)
        return max(0.0, rng.gauss(self.a, self.b))


class ValueGenerator:
    """A case-data or form value: a constant, weighted choices {value: weight}, a list (uniform) or a distribution.

    Distributions of numbers ({dist: ...}) give floats; `integer: true` or an integer field rounds them.
    """

    def __init__(self, spec: Any, where: str, spec_type: str | None = None) -> None:
        self.where = where
        self.constant: Any = None
        self.values: list[Any] = []
        self.cumulative: list[float] = []
        self.dist: Distribution | None = None
        self.integer = spec_type == "integer"
        if isinstance(spec, Mapping) and "dist" in spec:
            self.integer = bool(spec.get("integer", self.integer))
            self.dist = Distribution({k: v for k, v in spec.items() if k != "integer"}, unit=_number, where=where)
        elif isinstance(spec, Mapping):
            total = 0.0
            for value, weight in spec.items():
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                    raise SimulationError(f"{where}: the weight of {value!r} must be a number >= 0, got {weight!r}")
                total += float(weight)
                self.values.append(value)
                self.cumulative.append(total)
            if total <= 0:
                raise SimulationError(f"{where}: the weights add up to 0")
        elif isinstance(spec, list):
            if not spec:
                raise SimulationError(f"{where}: an empty list of choices")
            self.values = list(spec)
            self.cumulative = [float(i + 1) for i in range(len(spec))]
        else:
            self.constant = spec

    def sample(self, rng: random.Random) -> Any:
        if self.dist is not None:
            value = self.dist.sample(rng)
            return int(round(value)) if self.integer else round(value, 2)
        if self.cumulative:
            if len(self.values) == 1:
                return self.values[0]
            x = rng.random() * self.cumulative[-1]
            for value, edge in zip(self.values, self.cumulative):
                if x < edge:
                    return value
            return self.values[-1]
        return self.constant


# -- the scenario file ------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArrivalSpec(_Strict):
    """Poisson arrivals at `rate` per `per`, or any inter-arrival distribution.

    business_hour / working_day count working time only (nobody complains to a closed desk in
    this model); hour / day are around the clock.
    """

    rate: float | None = Field(default=None, gt=0)
    per: Literal["business_hour", "working_day", "hour", "day"] = "business_hour"
    interarrival: dict[str, Any] | None = None
    business: bool = True

    @field_validator("interarrival")
    @classmethod
    def _dist(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and "dist" not in value:
            raise ValueError("interarrival needs a 'dist' (e.g. {dist: exponential, mean: 15m})")
        return value


class MessageSpec(_Strict):
    """How long until a message (e.g. the customer's reply) arrives."""

    delay: dict[str, Any] = Field(default_factory=lambda: {"dist": "exponential", "mean": DEFAULT_MESSAGE_DELAY})
    business: bool = True


class ChildSpec(_Strict):
    """A sub-process replaced by a duration and an outcome instead of a simulated child case."""

    duration: dict[str, Any]
    outcome: str | None = "closed"
    data: dict[str, Any] = Field(default_factory=dict, description="child data the parent's outputs read")


class Scenario(_Strict):
    """A what-if scenario: see scenarios/complaint_as_is.yaml for a commented example."""

    name: str = "scenario"
    description: str = ""
    definition: str = Field(description="a process id of the library, or a path to a (variant) definition YAML")
    start: datetime = Field(default_factory=lambda: datetime.fromisoformat(DEFAULT_START))
    cases: int = Field(default=500, ge=1)
    seed: int = 1
    max_days: int = Field(default=730, ge=1, description="calendar days after the last arrival before giving up")
    arrivals: ArrivalSpec = Field(default_factory=lambda: ArrivalSpec(rate=4))
    case_data: dict[str, Any] = Field(default_factory=dict)
    durations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default_duration: dict[str, Any] = Field(default_factory=lambda: {"dist": "fixed", "value": DEFAULT_TASK_DURATION})
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    messages: dict[str, MessageSpec] = Field(default_factory=dict)
    staff: dict[str, int | None] = Field(default_factory=dict)
    subprocesses: dict[str, ChildSpec] = Field(default_factory=dict)
    source: str | None = Field(default=None, exclude=True)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a time zone, e.g. 2025-01-06T09:00:00+08:00")
        return value

    @field_validator("staff")
    @classmethod
    def _staff(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        for role, count in value.items():
            if count is not None and count < 1:
                raise ValueError(f"staff of '{role}' must be at least 1 (leave it out for unlimited)")
        return value


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SimulationError(f"no such file: {path}") from None
    except yaml.YAMLError as exc:
        raise SimulationError(f"{path}: not valid YAML: {exc}") from None


_MERGED_SECTIONS = ("case_data", "durations", "outputs", "messages", "staff", "subprocesses")


def _read_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A scenario mapping with its `extends:` base merged in (sections merge by key, the rest is replaced).

    A to-be scenario then says only what differs from the as-is one, so the comparison cannot
    drift apart by accident. A relative `definition` stays relative to the file that names it.
    """
    if path.resolve() in seen:
        raise SimulationError(f"{path}: `extends` goes round in a circle")
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise SimulationError(f"{path}: a scenario is a mapping (name, definition, arrivals, ...)")
    if isinstance(raw.get("definition"), str) and _looks_like_path(raw["definition"]):
        definition = Path(raw["definition"])
        raw["definition"] = str(definition if definition.is_absolute() else path.parent / definition)
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw
    base = _read_raw(path.parent / str(base_name), (*seen, path.resolve()))
    for key, value in raw.items():
        if key in _MERGED_SECTIONS and isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or "/" in text


def load_scenario(path: Path, *, durations: Path | None = None, staff: Path | None = None) -> Scenario:
    """Read a scenario; `durations`/`staff` files (a mapping, or one with that key) replace entries by name."""
    return _validated(_read_raw(path), str(path), durations, staff)


def scenario_for(target: str, *, durations: Path | None = None, staff: Path | None = None) -> Scenario:
    """A scenario file, or for a bare process id a default scenario (as many people as needed, 20-minute steps)."""
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        return load_scenario(Path(target), durations=durations, staff=staff)
    return _validated({"definition": target, "name": target}, target, durations, staff)


def _validated(raw: dict[str, Any], where: str, durations: Path | None, staff: Path | None) -> Scenario:
    for section, override in (("durations", durations), ("staff", staff)):
        if override is None:
            continue
        extra = _read_yaml(override)
        if isinstance(extra, dict) and section in extra and isinstance(extra[section], dict):
            extra = extra[section]
        if not isinstance(extra, dict):
            raise SimulationError(f"{override}: expected a mapping of {section}")
        raw[section] = {**(raw.get(section) or {}), **extra}
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()]
        raise SimulationError(f"{where}: " + "; ".join(lines)) from None
    scenario.source = where
    return scenario


def parse_arrivals(text: str) -> ArrivalSpec:
    """`--arrivals 5/bh` (per business hour), `40/wd` (per working day), `2/hour`, `50/day` (around the clock)."""
    units = {"h": "business_hour", "bh": "business_hour", "business_hour": "business_hour",
             "d": "working_day", "wd": "working_day", "working_day": "working_day", "hour": "hour", "day": "day"}
    rate, _, unit = text.strip().partition("/")
    try:
        value = float(rate)
    except ValueError:
        value = -1.0
    if value <= 0 or unit.strip() not in units:
        raise SimulationError(f"cannot read --arrivals {text!r}",
                              hint="write RATE/UNIT with UNIT one of bh (business hour), wd (working day), hour, day")
    return ArrivalSpec(rate=value, per=units[unit.strip()])  # type: ignore[arg-type]


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


class Simulation:
    """One run of a scenario. Use `run()`; construct with the library the definitions come from."""

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
        lanes = {lane.id for g in graphs for lane in g.definition.lanes}

        def known(key: str, section: str) -> list[tuple[ProcessDefinition, Any]]:
            if key not in nodes:
                raise SimulationError(f"{where}: {section}: no node '{key}' in {', '.join(g.process_id for g in graphs)}",
                                      hint="use a node id, or process_id.node_id")
            return nodes[key]

        self.durations: dict[str, Distribution] = {}
        for key, spec in s.durations.items():
            known(key, "durations")
            self.durations[key] = Distribution(spec, day_seconds=self.day_seconds, where=f"{where}: durations.{key}")
        self.default_duration = Distribution(s.default_duration, day_seconds=self.day_seconds,
                                             where=f"{where}: default_duration")
        self.outputs: dict[str, dict[str, ValueGenerator]] = {}
        for key, fields_ in s.outputs.items():
            candidates = known(key, "outputs")
            specs: dict[str, FieldSpec] = {}
            for _definition, node in candidates:
                if isinstance(node, HumanTask):
                    specs.update({f.id: f for f in node.form})
                elif isinstance(node, MessageWait):
                    specs.update(node.fields)
            for name in fields_:
                if name not in specs:
                    raise SimulationError(f"{where}: outputs.{key}: the node has no form field '{name}'",
                                          hint=f"its fields: {', '.join(sorted(specs)) or 'none'}")
            self.outputs[key] = {name: ValueGenerator(spec, f"{where}: outputs.{key}.{name}", specs[name].type)
                                 for name, spec in fields_.items()}
        root = self.graph.definition
        self.case_data = {name: ValueGenerator(spec, f"{where}: case_data.{name}",
                                               root.data[name].type if name in root.data else None)
                          for name, spec in s.case_data.items()}
        self.start_fields = [name for name in s.case_data if name in root.data]
        for role in s.staff:
            if role not in lanes:
                raise SimulationError(f"{where}: staff: no lane '{role}'", hint=f"lanes: {', '.join(sorted(lanes))}")
        self.messages: dict[str, tuple[Distribution, bool]] = {}
        for key, message in s.messages.items():
            self.messages[key] = (Distribution(message.delay, day_seconds=self.day_seconds,
                                               where=f"{where}: messages.{key}"), message.business)
        self.default_message = (Distribution({"dist": "exponential", "mean": DEFAULT_MESSAGE_DELAY},
                                             day_seconds=self.day_seconds), True)
        self.child_specs: dict[str, tuple[Distribution, ChildSpec]] = {}
        for key, child in s.subprocesses.items():
            known(key, "subprocesses")
            self.child_specs[key] = (Distribution(child.duration, day_seconds=self.day_seconds,
                                                  where=f"{where}: subprocesses.{key}"), child)

    def _reachable_graphs(self) -> list[ProcessGraph]:
        graphs = [self.graph]
        seen = {self.graph.process_id}
        i = 0
        while i < len(graphs):
            for node in graphs[i].definition.nodes:
                process = getattr(node, "process", None)
                if node.kind == "subprocess" and process not in seen:  # type: ignore[attr-defined]
                    seen.add(process)
                    graphs.append(self.library.get(process))
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
            now = datetime.fromtimestamp(ts, self.tz)
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
                queue: deque[tuple[str, Command | Transition]] = deque()
                self._run_auto(case_id, command, now, queue)
                self._drain(queue, now)
            elif kind == _CHILD_DONE:
                parent, token_id, child_id, data, outcome = payload
                self._feed(parent, ChildFinished(token_id, child_id, data, outcome), now)
        end = datetime.fromtimestamp(now_ts, self.tz)
        available_s = self.btime.between(first, end) if end > first else 0.0
        for role, use in self.uses.items():
            pool = self.pools[role]
            use.staff = pool.size
            use.available_h = (pool.size * available_s / 3600.0) if pool.size else None
        return SimulationResult(self.scenario, self.graph, self.seed, self.n_cases, self.events,
                                dict(sorted(self.uses.items())), first, end, self.children, self.applies,
                                dict(sorted(self.notifications.items())))

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
        queue: deque[tuple[str, Command | Transition]] = deque()
        transition = self._apply(case_id, event, now)
        queue.append((case_id, transition))
        self._drain(queue, now)

    def _drain(self, queue: deque[tuple[str, Command | Transition]], now: datetime) -> None:
        touched: list[str] = []
        while queue:
            case_id, item = queue.popleft()
            if type(item) is Transition:
                touched.append(case_id)
                self._after(case_id, item, now)
                queue.extend((case_id, command) for command in item.commands)
                continue
            command = item
            kind = type(command)
            if kind is TaskOpened:
                self._task_opened(case_id, command, now)  # type: ignore[arg-type]
            elif kind is TaskClosed:
                self._task_closed(case_id, command, now)  # type: ignore[arg-type]
            elif isinstance(command, RunAutoStep):
                duration = self._duration_of(case_id, command.node, default=False)
                if duration is None:
                    self._run_auto(case_id, command, now, queue)
                else:
                    self._push(self.calendar.add(now, int(round(duration))), _AUTO_DONE, (case_id, command))
            elif isinstance(command, StartChild):
                self._start_child(case_id, command, now, queue)
            elif isinstance(command, CaseEnded):
                if command.parent_case and command.parent_token and command.parent_case in self.states:
                    child = self.states[case_id]
                    event = ChildFinished(command.parent_token, case_id, child.data, command.outcome)
                    queue.append((command.parent_case, self._apply(command.parent_case, event, now)))
            elif isinstance(command, Notify):
                for role in command.roles:
                    self.notifications[role] = self.notifications.get(role, 0) + 1
        for case_id in touched:
            self._schedule_tick(case_id)

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

        Every change of a case's state goes through `_drain`, which calls this, so a queued tick
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
            transition = self._apply(case_id, StartCase(case_id, data, actor="simulator"), now)
        except InputError as exc:
            raise SimulationError(f"case_data does not fit process '{self.graph.process_id}': {exc}") from None
        self._drain(deque([(case_id, transition)]), now)

    def _start_child(self, parent_id: str, command: StartChild, now: datetime,
                     queue: deque[tuple[str, Command | Transition]]) -> None:
        parent = self.states[parent_id]
        token = parent.tokens.get(command.token_id)
        if token is None or token.child_case is None:
            return
        child_id = token.child_case
        parent_graph = self.graphs[parent_id]
        key = self._key(parent_graph.process_id, token.node, self.child_specs)
        if key is not None:
            duration, spec = self.child_specs[key]
            self._push(self.calendar.add(now, int(round(duration.sample(self._streams(parent_id)[0])))), _CHILD_DONE,
                       (parent_id, command.token_id, child_id, dict(spec.data), spec.outcome))
            return
        graph = self.library.get(command.process)
        self.graphs[child_id] = graph
        self.profiles[child_id] = self.profiles.get(parent_id, {})
        self.children += 1
        event = StartCase(child_id, dict(command.data), parent_id, command.token_id)
        queue.append((child_id, self._apply(child_id, event, now)))

    def _run_auto(self, case_id: str, command: RunAutoStep, now: datetime,
                  queue: deque[tuple[str, Command | Transition]]) -> None:
        state = self.states[case_id]
        token = state.tokens.get(command.token_id)
        if token is None or token.attempt != command.attempt or token.node != command.node:
            return
        graph = self.graphs[case_id]
        context = HandlerContext(case_id, state.process_id, command.node, 1, command.idempotency_key,
                                 dict(state.data), graph.definition.parameters)
        event: Event
        try:
            output = self.handlers.get(command.handler)(context)
            event = AutoStepDone(command.token_id, command.attempt, dict(output or {}))
        except Exception as exc:  # the case's incident, as in the engine
            event = AutoStepFailed(command.token_id, command.attempt, f"{type(exc).__name__}: {exc}")
        queue.append((case_id, self._apply(case_id, event, now)))

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
        distribution = self.duration_plans.get((process_id, node), False)
        if distribution is False:
            key = self._key(process_id, node, self.durations)
            distribution = self.duration_plans[(process_id, node)] = (
                self.durations[key] if key is not None else None)
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
                output[name] = _filler(name, spec, now)
        return output


def _filler(name: str, spec: FieldSpec, now: datetime) -> Any:
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


def _variant_id(scenario: Scenario) -> str | None:
    """The process id of a variant definition file named by the scenario (None for a library id)."""
    path = _definition_path(scenario)
    if path is None:
        return None
    return load_file(path).definition.id


def _definition_path(scenario: Scenario) -> Path | None:
    text = scenario.definition
    if not _looks_like_path(text):
        return None
    path = Path(text)
    if not path.exists():
        raise SimulationError(f"the scenario's definition file {path} does not exist")
    return path


def _library_for(scenario: Scenario, library: ProcessLibrary | None) -> ProcessLibrary:
    """The library with the scenario's variant definition (validated) in place of the process it varies."""
    base = library or ProcessLibrary.from_dir()
    path = _definition_path(scenario)
    if path is None:
        return base
    own = ProcessLibrary(latest=dict(base.latest))
    loaded = load_file(path)
    own.add(loaded)
    from engine.definition.validation import validate_graph

    problems = validate_graph(own.graph_of(loaded), own, default_registry())
    if problems:
        raise DefinitionError(problems=problems)
    return own


def simulate(scenario: Scenario, *, cases: int | None = None, seed: int | None = None,
             arrivals: ArrivalSpec | None = None, library: ProcessLibrary | None = None) -> SimulationResult:
    """Run a scenario once; same scenario and seed, same result."""
    return Simulation(scenario, seed=seed, cases=cases, arrivals=arrivals, library=library).run()


# -- comparison ------------------------------------------------------------------------------------------
@dataclass
class VariantSummary:
    """The numbers the side-by-side shows for one variant."""

    name: str
    definition: str
    cases: int
    completed: int
    cycle_median_business_h: float | None
    cycle_p90_business_h: float | None
    cycle_median_wall_d: float | None
    case_clock_breach_rate: float | None
    task_breach_rate: float | None
    escalations: int
    warnings: int
    clock_rates: dict[str, float | None]
    roles: dict[str, RoleUse]
    workload: dict[str, tuple[int, float]]  # role -> (tasks completed, open business hours)


def summarise(result: SimulationResult, stats: ProcessStats | None = None) -> VariantSummary:
    stats = stats or result.stats()
    return VariantSummary(
        name=result.scenario.name,
        definition=result.scenario.definition,
        cases=stats.cases,
        completed=stats.completed,
        cycle_median_business_h=stats.cycle_median_business_h,
        cycle_p90_business_h=stats.cycle_p90_business_h,
        cycle_median_wall_d=(stats.cycle_median_wall_h / 24.0) if stats.cycle_median_wall_h is not None else None,
        case_clock_breach_rate=stats.case_clock_breach_rate,
        task_breach_rate=stats.task_breach_rate,
        escalations=stats.escalation_total,
        warnings=stats.escalations_by_kind.get("warned", 0),
        clock_rates={c.clock: c.breach_rate for c in stats.clocks.values()},
        roles=result.roles,
        workload={r.role: (r.completed, r.open_business_h) for r in stats.roles.values()},
    )


# -- reports ---------------------------------------------------------------------------------------------
def _scenario_section(result: SimulationResult) -> str:
    s = result.scenario
    arrivals = s.arrivals
    rate = (f"{arrivals.rate:g} per {arrivals.per.replace('_', ' ')}" if arrivals.interarrival is None
            else f"inter-arrival {arrivals.interarrival}")
    rows = [
        ["scenario", s.name], ["description", s.description.strip()], ["definition", s.definition],
        ["seed", result.seed], ["cases", result.cases], ["arrivals", rate],
        ["simulated period", f"{result.started_at:%Y-%m-%d %H:%M} – {result.ended_at:%Y-%m-%d %H:%M}"],
        ["child cases (sub-processes)", result.child_cases], ["interpreter transitions", result.applies],
    ]
    note = ('<p class="note">Simulated with the real interpreter on a virtual clock. Work times are business time '
            "(the process calendar); a role's people serve its queue by priority, then first come first served, "
            "only in working hours. Roles without a staff number have as many people as needed.</p>")
    return note + html_table(["", ""], rows)


def utilisation_table(result: SimulationResult) -> str:
    rows = []
    for use in result.roles.values():
        rows.append([use.role, use.staff if use.staff is not None else "unlimited", use.tasks, f"{use.busy_h:.1f}",
                     f"{use.available_h:.1f}" if use.available_h is not None else "–",
                     f"{100 * use.utilisation:.1f} %" if use.utilisation is not None else "–",
                     f"{use.median_wait_h:.2f} h" if use.median_wait_h is not None else "–",
                     f"{use.p90_wait_h:.2f} h" if use.p90_wait_h is not None else "–", use.max_queue])
    return html_table(["role", "staff", "tasks worked", "busy hours (business)", "available hours (business)",
                       "utilisation", "median wait for a person", "p90 wait", "longest queue"], rows,
                      numeric=(2, 3, 4, 5, 6, 7, 8), table_id="utilisation-table")


def simulation_review(result: SimulationResult, stats: ProcessStats | None = None) -> Review:
    """The review report of a simulated run, with the scenario and the people's utilisation added."""
    stats = stats or result.stats()
    name = result.graph.definition.name
    review = Review(result.graph, stats, None, None,
                    f"模拟评审 Simulated review — {name.zh} / {name.en} ({result.scenario.name})",
                    f"模拟 simulation: {result.scenario.name}, seed {result.seed}")
    review.sections.append(("utilisation", "人员利用率 Staff utilisation (simulated)", utilisation_table(result)))
    review.sections.append(("scenario", "情景 Scenario", _scenario_section(result)))
    return review


def write_simulation(result: SimulationResult, out: Path) -> tuple[Path, Path]:
    return write_review(simulation_review(result), out)


def comparison_rows(a: VariantSummary, b: VariantSummary) -> list[tuple[str, str, str, str, str | None]]:
    """(metric, A, B, change, better|worse|None) rows of the side-by-side."""
    from visualize.review import fmt_h, fmt_pct

    rows: list[tuple[str, str, str, str, str | None]] = []

    def add(label: str, va: float | None, vb: float | None, shown: Any, kind: str = "number") -> None:
        change, verdict = _delta(va, vb, kind)
        rows.append((label, shown(va), shown(vb), change, verdict))

    def days(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f} d"

    add("cases simulated", a.cases, b.cases, str, "count-neutral")
    add("completed", a.completed, b.completed, str, "count-neutral")
    add("cycle time median (business hours)", a.cycle_median_business_h, b.cycle_median_business_h, fmt_h)
    add("cycle time p90 (business hours)", a.cycle_p90_business_h, b.cycle_p90_business_h, fmt_h)
    add("cycle time median (wall days)", a.cycle_median_wall_d, b.cycle_median_wall_d, days)
    add("SLA breach rate, all case clocks", a.case_clock_breach_rate, b.case_clock_breach_rate, fmt_pct, "rate")
    for clock in sorted(set(a.clock_rates) | set(b.clock_rates)):
        add(f"SLA breach rate, {clock}", a.clock_rates.get(clock), b.clock_rates.get(clock), fmt_pct, "rate")
    add("SLA breach rate, step clocks", a.task_breach_rate, b.task_breach_rate, fmt_pct, "rate")
    add("escalations (breach and above)", a.escalations, b.escalations, str, "count")
    add("warnings (below 100 %)", a.warnings, b.warnings, str, "count")
    return rows


def _delta(a: float | None, b: float | None, kind: str = "number") -> tuple[str, str | None]:
    """The change from A to B, and whether it is better (lower is better, except neutral counts)."""
    if a is None or b is None:
        return "–", None
    diff = b - a
    if abs(diff) < 1e-12:
        return "±0", None
    if kind == "rate":
        text = f"{100 * diff:+.1f} pp"
    elif kind.startswith("count"):
        text = f"{diff:+.0f}" + (f" ({100 * diff / a:+.0f} %)" if a else "")
    else:
        text = f"{diff:+.2f}" + (f" ({100 * diff / a:+.0f} %)" if a else "")
    if kind.endswith("neutral"):
        return text, None
    return text, "better" if diff < 0 else "worse"


def role_rows(a: SimulationResult, b: SimulationResult) -> list[list[Any]]:
    """Workload and utilisation per role, both variants in one row."""
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    def wait(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f} h"

    rows: list[list[Any]] = []
    for role in sorted(set(a.roles) | set(b.roles)):
        ua, ub = a.roles.get(role), b.roles.get(role)
        staff = ua.staff if ua is not None else (ub.staff if ub is not None else None)
        staff_b = ub.staff if ub is not None else staff
        rows.append([
            role, "unlimited" if staff is None else staff, "unlimited" if staff_b is None else staff_b,
            ua.tasks if ua else 0, ub.tasks if ub else 0,
            f"{ua.busy_h:.1f}" if ua else "0.0", f"{ub.busy_h:.1f}" if ub else "0.0",
            pct(ua.utilisation if ua else None), pct(ub.utilisation if ub else None),
            wait(ua.p90_wait_h if ua else None), wait(ub.p90_wait_h if ub else None),
        ])
    return rows


def comparison_html(a: SimulationResult, b: SimulationResult, *, svg_a: str | None = None,
                    svg_b: str | None = None) -> str:
    """Side-by-side of two variants, then each variant's full review."""
    _e = html.escape
    stats_a, stats_b = a.stats(), b.stats()
    sa, sb = summarise(a, stats_a), summarise(b, stats_b)
    ra, rb = simulation_review(a, stats_a), simulation_review(b, stats_b)
    rows = comparison_rows(sa, sb)
    head = f"<tr><th>metric</th><th>{_e(sa.name)}</th><th>{_e(sb.name)}</th><th>change</th></tr>"
    body = "".join(
        f"<tr><td>{_e(m)}</td><td class=\"num\">{_e(x)}</td><td class=\"num\">{_e(y)}</td>"
        f"<td class=\"num{' ' + v if v else ''}\">{_e(d)}</td></tr>" for m, x, y, d, v in rows)
    na, nb = sa.name, sb.name
    parts = [
        f'<p class="note">Same seed ({a.seed}), arrivals and customers for both variants, and per-case random '
        f"streams, so differences come from the variants. Durations are business hours of the process calendar. "
        f"Definitions: {_e(sa.definition)} vs {_e(sb.definition)}.</p>",
        '<h2 id="comparison">对比 Side by side</h2>',
        f'<table id="comparison-table"><thead>{head}</thead><tbody>{body}</tbody></table>',
        '<h2 id="comparison-roles">工作量与利用率 Workload and utilisation per role</h2>',
        '<p class="note">Busy hours: business hours people worked on tasks; utilisation: busy ÷ available '
        "working hours of the role's staff over the simulated period; p90 wait: how long tasks waited for a "
        "person (business hours).</p>",
        html_table(["role", f"staff {na}", f"staff {nb}", f"tasks {na}", f"tasks {nb}", f"busy h {na}",
                    f"busy h {nb}", f"utilisation {na}", f"utilisation {nb}", f"p90 wait {na}", f"p90 wait {nb}"],
                   role_rows(a, b), numeric=tuple(range(1, 11)), table_id="comparison-roles-table"),
        f'<h2 id="variant-a">方案 A · {_e(na)}</h2>',
        review_body(ra, svg_a),
        f'<h2 id="variant-b">方案 B · {_e(nb)}</h2>',
        review_body(rb, svg_b),
    ]
    title = f"方案对比 What-if comparison — {na} vs {nb}"
    return page(title, [f"{a.graph.process_id} vs {b.graph.process_id}"], "\n".join(parts))


def write_comparison(a: SimulationResult, b: SimulationResult, out: Path) -> tuple[Path, Path, Path]:
    """report.html with both variants, and a heatmap PNG of each next to it."""
    from visualize.flowchart import render

    out.parent.mkdir(parents=True, exist_ok=True)
    dots = [heatmap_dot(simulation_review(r)) for r in (a, b)]
    svgs = [inline_svg(render(dot, "svg")) for dot in dots]
    out.write_text(comparison_html(a, b, svg_a=svgs[0], svg_b=svgs[1]), encoding="utf-8")
    pngs = [out.with_name(f"{out.stem}-{_slug(r.scenario.name)}.png") for r in (a, b)]
    for path, dot in zip(pngs, dots):
        path.write_bytes(render(dot, "png"))
    return out, pngs[0], pngs[1]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "variant"

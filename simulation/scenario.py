"""What-if scenarios: the file format, its distributions and value generators, and loading them.

What the engine does not know comes from a scenario file: when cases arrive, what their data
looks like, how long each step takes a person (business time), what people answer in forms,
how long customers take to reply, and how many people each role has. This module reads and
checks that file (with `extends:` and override files) and builds the samplers; the run itself
is simulation/simulator.py, its reports simulation/report.py.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.definition.library import ProcessLibrary
from engine.definition.loader import load_file
from engine.errors import SvcflowError
from engine.run.handlers import default_registry
from engine.time.durations import parse_duration

DEFAULT_START = "2025-01-06T09:00:00+08:00"  # a working Monday
DEFAULT_TASK_DURATION = "30m"
DEFAULT_MESSAGE_DELAY = "4h"


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

    rate: float | None = Field(default=None, gt=0, description="mean arrivals per `per` (a Poisson process)")
    per: Literal["business_hour", "working_day", "hour", "day"] = Field(
        default="business_hour", description="the unit of `rate`: business_hour / working_day count working time "
                                             "only, hour / day are around the clock")
    interarrival: dict[str, Any] | None = Field(
        default=None, description="instead of a rate: a distribution of the time between arrivals, "
                                  "e.g. {dist: exponential, mean: 15m}")
    business: bool = Field(default=True, description="interarrival times count working time only")

    @field_validator("interarrival")
    @classmethod
    def _dist(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and "dist" not in value:
            raise ValueError("interarrival needs a 'dist' (e.g. {dist: exponential, mean: 15m})")
        return value


class MessageSpec(_Strict):
    """How long until a message (e.g. the customer's reply) arrives."""

    delay: dict[str, Any] = Field(default_factory=lambda: {"dist": "exponential", "mean": DEFAULT_MESSAGE_DELAY},
                                  description="a distribution of the time until the message arrives")
    business: bool = Field(default=True, description="the delay counts working time only")


class ChildSpec(_Strict):
    """A sub-process replaced by a duration and an outcome instead of a simulated child case."""

    duration: dict[str, Any] = Field(description="a distribution of how long the sub-process takes")
    outcome: str | None = Field(default="closed", description="the outcome the sub-process ends with")
    data: dict[str, Any] = Field(default_factory=dict, description="child data the parent's outputs read")


class Scenario(_Strict):
    """A what-if scenario: see scenarios/complaint_as_is.yaml for a commented example."""

    extends: str | None = Field(default=None, exclude=True,
                                description="a base scenario file (relative to this one) whose sections this one "
                                            "overrides by key; the rest of its settings are replaced")
    name: str = Field(default="scenario", description="the variant's name in reports (e.g. as-is, to-be)")
    description: str = Field(default="", description="what the variant changes, in words")
    definition: str = Field(description="a process id of the library, or a path to a (variant) definition YAML")
    start: datetime = Field(default_factory=lambda: datetime.fromisoformat(DEFAULT_START),
                            description="when the first case may arrive, with a time zone")
    cases: int = Field(default=500, ge=1, description="how many cases arrive")
    seed: int = Field(default=1, description="the random seed: same scenario and seed, same result")
    max_days: int = Field(default=730, ge=1, description="calendar days after the last arrival before giving up")
    arrivals: ArrivalSpec = Field(default_factory=lambda: ArrivalSpec(rate=4), description="when cases arrive")
    case_data: dict[str, Any] = Field(
        default_factory=dict, description="per case-data field: a constant, weighted choices {value: weight}, a list "
                                          "(uniform) or a distribution")
    durations: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per human step (node id, or process_id.node_id): a distribution of a "
                                          "person's working time on it, in business time")
    default_duration: dict[str, Any] = Field(default_factory=lambda: {"dist": "fixed", "value": DEFAULT_TASK_DURATION},
                                             description="the working time of steps not named in `durations`")
    outputs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per step: what people answer in its form, field by field (as case_data)")
    messages: dict[str, MessageSpec] = Field(default_factory=dict,
                                             description="per message node: how long until the message arrives")
    staff: dict[str, int | None] = Field(
        default_factory=dict, description="people per role (lane); null = as many as needed, stated in the report")
    unlisted_staff: Literal["error", "unlimited"] = Field(
        default="error",
        description="roles (lanes) missing from `staff`: an error, or simulated with as many people as needed "
                    "(the report then states this assumption); `staff: {role: null}` declares one role unlimited")
    subprocesses: dict[str, ChildSpec] = Field(
        default_factory=dict, description="sub-process nodes replaced by a duration and an outcome instead of a "
                                          "simulated child case")
    source: str | None = Field(default=None, exclude=True, description="the file read (set by the loader)")

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


def scenario_json_schema() -> dict[str, Any]:
    """The JSON schema of a scenario file (schema/scenario.json): every property described.

    `definition` is not required of a file, since an `extends:` base may give it; `source` is set by the
    loader, never written.
    """
    schema = Scenario.model_json_schema()
    schema["properties"].pop("source", None)
    schema.pop("required", None)
    schema["title"] = "svcflow what-if scenario"
    schema["description"] = ("A what-if scenario for `svcflow simulate`: arrivals, case data, durations, form "
                             "answers, message delays and people per role (scenarios/complaint_as_is.yaml).")
    return schema


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
    return _validated({"definition": target, "name": target, "unlisted_staff": "unlimited"}, target, durations,
                      staff)


def staff_assumptions(scenario: Scenario, lanes: list[str]) -> tuple[list[str], list[str]]:
    """(errors, assumptions) about the people of `lanes` (the roles of the definitions the scenario runs).

    A role missing from the staff list is never silently given unlimited capacity: it is an error,
    unless the scenario says `unlisted_staff: unlimited`, and then the report states it.
    """
    errors = [f"staff: no lane '{role}'" for role in scenario.staff if role not in lanes]
    missing = [role for role in lanes if role not in scenario.staff]
    assumptions: list[str] = []
    if missing and scenario.unlisted_staff == "error":
        errors.append(f"staff: no number of people for {', '.join(missing)}")
    elif missing:
        assumptions.append("roles without a staff number in the scenario, simulated with as many people as needed "
                           f"(unlisted_staff: unlimited): {', '.join(missing)}")
    declared = [role for role, count in scenario.staff.items() if count is None and role in lanes]
    if declared:
        assumptions.append(f"roles declared unlimited (staff: null), never queueing: {', '.join(declared)}")
    return errors, assumptions


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
    own = ProcessLibrary(latest=dict(base.latest))
    if path is not None:
        own.add(load_file(path))
    own.require_valid(default_registry())  # the validator's errors refuse it, as in the engine
    return own

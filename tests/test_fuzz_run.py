"""Fuzz: mutated-but-valid library definitions driven to the end never stall and never raise (issue 13).

Hypothesis mutates one of the 8 library definitions (durations and SLA targets, conditions,
edge targets, defaults, declared handler outputs, the calendar) and keeps only mutations the
validator accepts. A simple driver then works the cases: people complete open tasks with
generated form values, customers answer awaited messages, and the clock advances with a sweep.
After every action each case must be ended, waiting (for a person, a message, a timer or a
child case), or in a recorded incident; and only our own errors (refusals of bad input) may
come out of the engine. Bounded: derandomized, a fixed number of examples and rounds.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.definition.library import ProcessLibrary
from engine.definition.model import FieldSpec, HumanTask, MessageWait
from engine.definition.validation import validate_graph
from engine.errors import SvcflowError
from engine.run.handlers import default_registry
from engine.run.runtime import Engine, LogNotifier
from engine.run.state import InstanceState
from engine.store.sql import Store
from engine.time.clock import FakeClock
from simulation.simulator import happy_path_value
from tests.conftest import MONDAY_9AM

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "process_defs"
PROCESSES = sorted(path.stem for path in LIBRARY.glob("*.yaml"))
DURATIONS = ["0m", "1m", "45m", "2h", "1d", "5d", "400d", "99999d"]
CONDITIONS = ["true", "false"]
TYPES = ["string", "integer", "boolean", "number"]
ROUNDS = 8
CASES = 2
BASE = ProcessLibrary.from_dir(LIBRARY)


def _walk(tree: Any, key: str) -> list[dict[str, Any]]:
    """Every mapping in the tree that has `key`, in document order."""
    found: list[dict[str, Any]] = []
    if isinstance(tree, dict):
        if key in tree:
            found.append(tree)
        for value in tree.values():
            found.extend(_walk(value, key))
    elif isinstance(tree, list):
        for value in tree:
            found.extend(_walk(value, key))
    return found


def mutate(raw: dict[str, Any], draw: Any) -> None:
    """One mutation of the raw definition, chosen by hypothesis."""
    kind = draw(st.sampled_from(["duration", "condition", "target", "default", "output", "calendar"]))
    nodes = [node["id"] for node in raw.get("nodes", [])]
    if kind == "duration":
        places = [m for k in ("target", "duration") for m in _walk(raw, k) if isinstance(m[k], str)]
        if places:
            place = draw(st.sampled_from(places))
            key = "target" if "target" in place and isinstance(place["target"], str) else "duration"
            place[key] = draw(st.sampled_from(DURATIONS))
    elif kind == "condition":
        places = _walk(raw, "when")
        if places:
            draw(st.sampled_from(places))["when"] = draw(st.sampled_from(CONDITIONS))
    elif kind == "target":
        edges = raw.get("edges", [])
        if edges:
            draw(st.sampled_from(edges))["to"] = draw(st.sampled_from(nodes))
    elif kind == "default":
        edges = raw.get("edges", [])
        if edges:
            edge = draw(st.sampled_from(edges))
            if edge.get("default"):
                edge.pop("default")
            else:
                edge["default"] = True
                edge.pop("when", None)
    elif kind == "output":
        autos = [node for node in raw.get("nodes", []) if node.get("kind") == "auto" and node.get("outputs")]
        if autos:
            node = draw(st.sampled_from(autos))
            name = draw(st.sampled_from(sorted(node["outputs"])))
            node["outputs"][name] = {"type": draw(st.sampled_from(TYPES))}
    else:
        weekdays = draw(st.lists(st.integers(0, 6), max_size=5, unique=True))
        raw["calendar"] = {"working_weekdays": sorted(weekdays), "use_chinese_holidays": draw(st.booleans())}


def mutated_library(process_id: str, draw: Any) -> ProcessLibrary | None:
    raw = yaml.safe_load((LIBRARY / f"{process_id}.yaml").read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 3))):
        mutate(raw, draw)
    raw["version"] = int(raw.get("version", 1)) + 1
    library = ProcessLibrary(latest=dict(BASE.latest))  # the other processes, compiled once
    try:
        library.add_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), f"{process_id}.yaml")
        problems = validate_graph(library.get(process_id), library, default_registry())
    except SvcflowError:
        return None
    return None if problems else library


def value_for(name: str, spec: FieldSpec, rng: random.Random, now: Any) -> Any:
    """A random answer where the field has a range of them; otherwise the simulator's happy-path value."""
    if spec.default is not None and rng.random() < 0.3:
        return spec.default
    kind = spec.type
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "enum":
        return rng.choice(spec.choices or [""])
    if kind in ("integer", "number"):
        low = spec.minimum if spec.minimum is not None else 0
        high = spec.maximum if spec.maximum is not None else 1_000_000
        value = rng.uniform(float(low), float(high))
        return int(value) if kind == "integer" else round(value, 2)
    return happy_path_value(name, spec, now)


def form(specs: dict[str, FieldSpec], rng: random.Random, now: Any) -> dict[str, Any]:
    return {name: value_for(name, spec, rng, now) for name, spec in specs.items()
            if spec.required or rng.random() < 0.5}


def stalled(engine: Engine, state: InstanceState) -> str | None:
    """Why a case is stuck, or None when it is ended, waiting for something, or a recorded incident."""
    if state.status in ("completed", "cancelled"):
        return None
    if state.status == "incident":
        events = engine.store.events(state.case_id)
        return None if any(e.type in ("incident", "step_failed") for e in events) else "incident without a record"
    graph = engine.graph_for(state)
    if not state.tokens:
        return "running without a token"
    for token in state.tokens.values():
        if token.task_id or token.message or token.timer_due or token.incident:
            continue
        if token.child_case and engine.store.case_exists(token.child_case):
            continue
        return f"token {token.id} at '{token.node}' ({graph.kind(token.node)}) waits for nothing"
    return None


def drive(engine: Engine, clock: FakeClock, process_id: str, rng: random.Random) -> None:
    graph = engine.library.get(process_id)
    actors = iter(range(10**6))
    for _ in range(CASES):
        try:
            engine.start(process_id, form(graph.definition.data, rng, clock.now()), actor="fuzz")
        except SvcflowError:
            continue  # generated start data refused: our own located error, nothing stored
    for _ in range(ROUNDS):
        for task in engine.open_tasks():
            state = engine.case(task["case_id"]).state
            node = engine.graph_for(state).nodes[task["node"]]
            assert isinstance(node, HumanTask)
            specs = engine.graph_for(state).form_specs[node.id]
            try:
                engine.complete(task["id"], actor=f"person{next(actors)}", role=task["role"],
                                data=form(specs, rng, clock.now()))
            except SvcflowError:
                pass  # a refusal (bad generated value, four-eyes...): recorded, the task stays open
        for row in engine.store.cases():
            state = engine.case(row["id"]).state
            for token in list(state.tokens.values()):
                if token.message:
                    node = engine.graph_for(state).nodes[token.node]
                    assert isinstance(node, MessageWait)
                    try:
                        engine.send_message(state.case_id, token.message, form(node.fields, rng, clock.now()))
                    except SvcflowError:
                        pass
        clock.advance(timedelta(days=rng.choice([0.1, 1, 3, 10])))
        engine.sweep()
        for row in engine.store.cases():
            state = engine.case(row["id"]).state
            problem = stalled(engine, state)
            assert problem is None, f"{state.case_id} of {state.process_id}: {problem}\n{engine.case(row['id']).history}"


@settings(max_examples=16, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_mutated_valid_definitions_driven_to_the_end_never_stall_and_never_raise(data: st.DataObject) -> None:
    process_id = data.draw(st.sampled_from(PROCESSES), label="process")
    library = mutated_library(process_id, data.draw)
    assume(library is not None)
    assert library is not None
    clock = FakeClock(MONDAY_9AM)
    engine = Engine(Store("sqlite://"), library, clock=clock, notifier=LogNotifier())
    try:
        drive(engine, clock, process_id, random.Random(data.draw(st.integers(0, 2**16), label="seed")))
    finally:
        engine.store.dispose()

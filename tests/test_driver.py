"""One command driver: the simulator and the engine write the same log for the same case and inputs.

The simulator runs a scenario on its virtual clock; its log says what people did and when
(started a case, completed a task with these values, a customer replied). The same actions
are then done through the engine (SQL store, fake clock set to the same instants, the sweep
where the simulator ticked): every case must come out with the same log, entry for entry.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from engine.run.runtime import Engine, LogNotifier
from engine.run.log import LogEntry
from engine.time.clock import FakeClock
from simulation.scenario import load_scenario, scenario_for
from simulation.simulator import SimulationResult, simulate
from tests.test_simulate import AS_IS

Row = tuple[int | None, str, str | None, dict[str, Any], Any]


def replay_in_engine(result: SimulationResult) -> Engine:
    """Do through the engine what the simulated people did, at the instants they did it."""
    clock = FakeClock(result.started_at)
    engine = Engine.in_memory(clock=clock, notifier=LogNotifier())
    produced: dict[str, int] = defaultdict(int)  # entries of each case the engine has written so far

    def refresh(case_id: str) -> None:
        produced[case_id] = len(engine.store.events(case_id))

    following: dict[tuple[str, int | None], LogEntry] = {}
    for earlier, later in zip(result.events, result.events[1:]):
        if earlier.case_id == later.case_id:
            following[(earlier.case_id, earlier.seq)] = later
    for entry in result.events:
        if entry.seq is not None and produced[entry.case_id] >= entry.seq:
            continue  # a consequence the engine has already drawn itself
        clock.set(entry.at)
        if entry.type == "sla_met":  # a completion stops the step's clock before it records itself
            entry = following.get((entry.case_id, entry.seq), entry)
        if entry.type == "case_started" and entry.data.get("parent_case") is None:
            engine.start(entry.process_id, entry.data["data"], actor=entry.data["actor"], case_id=entry.case_id)
        elif entry.type == "task_completed":
            engine.complete(entry.data["task_id"], actor=entry.data["actor"], role=entry.data["role"],
                            data=entry.data["output"])
        elif entry.type == "message_received":
            engine.send_message(entry.case_id, entry.data["message"], entry.data["payload"],
                                actor=entry.data["actor"])
        else:  # what the simulator's tick did at this instant, the engine's sweep does
            engine.sweep(entry.at)
        for case_id in {entry.case_id, *(row["id"] for row in engine.store.cases(parent=entry.case_id))}:
            refresh(case_id)
        assert produced[entry.case_id] >= (entry.seq or 0), \
            f"the engine did not produce {entry.type} at {entry.node} of {entry.case_id} ({entry.at})"
    return engine


def rows(events: list[LogEntry]) -> list[Row]:
    return [(e.seq, e.type, e.node, e.data, e.at.timestamp()) for e in events]


def by_case(events: list[LogEntry]) -> dict[str, list[Row]]:
    grouped: dict[str, list[LogEntry]] = defaultdict(list)
    for event in events:
        grouped[event.case_id].append(event)
    return {case_id: rows(sorted(found, key=lambda e: e.seq or 0)) for case_id, found in grouped.items()}


def scheduled_start(engine: Engine, case_id: str) -> bool:
    """Whether the case was started by a schedule of the library (its first entry says so)."""
    first = engine.store.events(case_id)[0]
    return first.type == "case_started" and str(first.data.get("actor", "")).startswith("schedule:")


def assert_same_logs(result: SimulationResult) -> None:
    engine = replay_in_engine(result)
    simulated = by_case(result.events)
    stored = {case_id: rows(engine.store.events(case_id)) for case_id in simulated}
    extra = {row["id"] for row in engine.store.cases()} - set(simulated)
    # the engine's sweep also starts the library's scheduled cases, which a scenario does not model
    assert all(scheduled_start(engine, case_id) for case_id in extra), sorted(extra)
    assert set(simulated) <= {row["id"] for row in engine.store.cases()}
    for case_id, expected in simulated.items():
        assert stored[case_id] == expected, case_id
    engine.store.dispose()


@pytest.mark.parametrize("process_id", ["after_sales_repair", "customer_retention", "big_client_visit",
                                        "credit_rating"])
def test_engine_and_simulator_write_the_same_log_for_the_same_cases(process_id: str) -> None:
    result = simulate(scenario_for(process_id), cases=3, seed=3)
    assert_same_logs(result)


def test_the_same_log_holds_with_escalations_messages_timers_and_major_child_cases() -> None:
    result = simulate(load_scenario(AS_IS), cases=40, seed=11)
    types = {e.type for e in result.events}
    assert {"escalated", "message_received", "timer_fired", "subprocess_completed"} <= types
    assert_same_logs(result)


def test_a_simulated_sub_process_case_is_a_real_child_case_in_the_engine_too() -> None:
    result = simulate(scenario_for("big_client_visit"), cases=2, seed=3)
    children = {e.case_id for e in result.events if e.type == "case_started" and e.data.get("parent_case")}
    assert children
    engine = replay_in_engine(result)
    for child in children:
        assert engine.case(child).state.parent_case is not None
        assert engine.case(child).status == "completed"

"""The demo's simulated operators: they start a case of every process and really work them."""

from __future__ import annotations

from datetime import timedelta

from svcflow.demo_operators import SAMPLE_CASES, Operators


def test_operators_start_a_case_of_every_process_and_drive_them_with_escalations(library_engine, clock):
    operators = Operators(library_engine, log=lambda line: None)
    case_ids = operators.start_samples()
    assert {p for p, _ in SAMPLE_CASES} <= {row["process_id"] for row in library_engine.store.cases()}
    for _ in range(200):  # 100 virtual hours in 30-minute rounds
        clock.advance(timedelta(minutes=30))
        library_engine.sweep()
        operators.work()
    rows = library_engine.store.cases()
    statuses = {row["id"]: row["status"] for row in rows}
    assert any(statuses[c] == "completed" for c in case_ids)
    assert sum(1 for row in rows if row["escalation_level"] >= 2) >= 3
    kinds = {e.type for e in library_engine.store.events()}
    assert {"sla_warned", "sla_breached", "escalated", "task_completed"} <= kinds
    assert any(row["process_id"] == "major_complaint" and row["parent_case"] for row in rows)


def test_operators_are_reproducible_with_the_same_seed(make_engine, clock):
    from engine.definition.library import ProcessLibrary
    from engine.run.runtime import Engine, LogNotifier

    def run() -> list[str]:
        from engine.time.clock import FakeClock
        from tests.conftest import MONDAY_9AM

        fake = FakeClock(MONDAY_9AM)
        engine = Engine.in_memory(clock=fake, library=ProcessLibrary.from_dir(), notifier=LogNotifier(),
                                  id_factory=_counter())
        operators = Operators(engine, seed=3, log=lambda line: None)
        operators.start_samples()
        for _ in range(40):
            fake.advance(timedelta(minutes=30))
            engine.sweep()
            operators.work()
        return [f"{e.case_id}:{e.type}:{e.node}" for e in engine.store.events()]

    assert run() == run()


def _counter():
    count = iter(range(1, 10_000))
    return lambda process_id: f"{process_id[:3].upper()}-{next(count)}"


def test_simulated_staff_complete_tasks_only_in_the_business_hours_of_their_process(library_engine, clock):
    operators = Operators(library_engine, log=lambda line: None)
    operators.start_samples()
    for _ in range(120):  # five days and nights in 1-hour rounds, as the demo's clock runs
        clock.advance(timedelta(hours=1))
        library_engine.sweep()
        operators.work()
    completions = [e for e in library_engine.store.events() if e.type == "task_completed"]
    assert len(completions) >= 20
    for event in completions:
        calendar = library_engine.library.get(event.process_id).calendar
        assert calendar.next_working_instant(event.at) == event.at, (event.process_id, event.node, event.at)
    assert sum(1 for row in library_engine.store.cases() if row["status"] == "completed") >= 3

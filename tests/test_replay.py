"""Replay of history under a proposed SLA policy, on a store whose answers are worked out by hand.

Process `replay_mini`: one step `work`; the resolution clock starts with the case and stops at `work`;
gold 2 h, others 4 h; ladder at 100 % and 200 %. Four cases start on Monday 22 September 2025 at 9:00
(office hours 9:00–12:00, 13:30–18:00) and are done at:
  g1 gold      10:00  1.0 h  met
  g2 gold      12:00  3.0 h  breached (100 %)                        -> 1 escalation
  s1 standard  12:00  3.0 h  met
  s2 standard  17:00  6.5 h  breached (100 %; 200 % = 8 h not reached) -> 1 escalation
Recorded: 2 of 4 breached (50 %), 2 escalations.

Under "gold 30 min, others 2 h": all four breach (100 %); 200 % is passed by g2 (3 h > 1 h) and
s2 (6.5 h > 4 h) but not by g1 (1 h is not more than 1 h) or s1 (3 h < 4 h): 6 escalations.
Under "7 h for all" on a 24/7 calendar, s2 used 8 h (9:00–17:00) and breaches; on office hours it
used 6.5 h and would not: the calendar is part of the yardstick.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.definition.library import ProcessLibrary
from engine.run.runtime import Engine, LogNotifier
from engine.time.clock import FakeClock
from simulation.replay import ReplayError, ReplayPolicy, ReplayReport, load_policy, replay

SHANGHAI = ZoneInfo("Asia/Shanghai")
MINI = """
id: replay_mini
version: 1
name: {zh: 重算小流程, en: Replay mini}
lanes:
  - {id: clerk, name: {zh: 办事员, en: Clerk}}
data:
  tier: {type: string, default: standard}
ladders:
  two_steps:
    - {at: 100, notify: [clerk]}
    - {at: 200, notify: [clerk]}
clocks:
  - id: resolution
    name: {zh: 解决时限, en: Resolution}
    stop_on: [work]
    policies:
      - {when: 'data.tier == "gold"', target: 2h}
      - {target: 4h}
    escalation: two_steps
nodes:
  - {id: start, kind: start}
  - {id: work, kind: human, lane: clerk}
  - {id: end, kind: end}
edges:
  - {from: start, to: work}
  - {from: work, to: end}
"""
CASES = (("g1", "gold", (10, 0)), ("g2", "gold", (12, 0)), ("s1", "standard", (12, 0)), ("s2", "standard", (17, 0)))


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 9, 22, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def store() -> tuple[Engine, list[Any], dict[str, dict[str, Any]]]:
    library = ProcessLibrary()
    library.add_text(MINI, "replay_mini.yaml")
    clock = FakeClock(at(9))
    engine = Engine.in_memory(clock=clock, library=library, notifier=LogNotifier())
    for case_id, tier, _done in CASES:
        engine.start("replay_mini", {"tier": tier}, case_id=case_id)
    for case_id, _tier, (hour, minute) in sorted(CASES, key=lambda c: c[2]):
        clock.set(at(hour, minute))
        engine.sweep()  # the thresholds due by now fire, as the sweep deployment would
        task = next(t for t in engine.store.tasks(case_id=case_id) if t["node"] == "work")
        engine.complete(task["id"], actor="ann", role="clerk", data={})
    events = list(engine.store.events(process_id="replay_mini"))
    data = {case_id: engine.store.load_case(case_id)[0].data for case_id, _t, _d in CASES}
    return engine, events, data


def run(store: tuple[Engine, list[Any], dict[str, dict[str, Any]]], policy: dict[str, Any]) -> ReplayReport:
    engine, events, data = store
    return replay(engine.library.get("replay_mini"), events, data,
                  ReplayPolicy.model_validate({"process": "replay_mini", **policy}))


def test_the_definitions_own_policy_replays_to_what_was_recorded(store: Any) -> None:
    (clock,) = run(store, {}).clocks
    assert (clock.clocks, clock.breached_before, clock.breached_after) == (4, 2, 2)
    assert (clock.escalations_before, clock.escalations_after) == (2, 2)


def test_tighter_targets_breach_every_case_and_escalate_six_times(store: Any) -> None:
    report = run(store, {"clocks": {"resolution": {"policies": [{"when": 'data.tier == "gold"', "target": "30m"},
                                                                {"target": "2h"}]}}})
    (clock,) = report.clocks
    assert (clock.rate_before, clock.rate_after) == (0.5, 1.0)
    assert (clock.escalations_before, clock.escalations_after) == (2, 6)
    assert [(c.case_id, c.target_before, c.target_after) for c in report.changed] == [
        ("g1", "2h", "30m"), ("s1", "4h", "2h")]


def test_the_calendar_is_part_of_the_yardstick(store: Any) -> None:
    seven = {"clocks": {"resolution": {"policies": [{"target": "7h"}]}}}
    office = run(store, seven).clocks[0]
    around_the_clock = run(store, {**seven, "calendar": {"working_hours": ["00:00-24:00"],
                                                         "working_weekdays": [0, 1, 2, 3, 4, 5, 6],
                                                         "use_chinese_holidays": False}}).clocks[0]
    assert office.breached_after == 0
    assert around_the_clock.breached_after == 1  # s2: 8 h on the 24/7 calendar


def test_a_policy_for_an_unknown_clock_or_ladder_is_refused_with_every_problem(store: Any) -> None:
    with pytest.raises(ReplayError) as caught:
        run(store, {"clocks": {"resolutoin": {"policies": [{"target": "1h"}]},
                               "resolution": {"policies": [{"target": "1h"}], "escalation": "nope"}}})
    message = caught.value.message
    assert "2 problem(s)" in message and "no case clock 'resolutoin'" in message and "no ladder 'nope'" in message


def test_a_policy_file_reports_all_its_structural_errors(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("proces: complaint_handling\nclocks: {resolution: {target: 1h}}\n", encoding="utf-8")
    with pytest.raises(ReplayError) as caught:
        load_policy(path)
    message = caught.value.message
    assert "proces" in message and "process" in message and "clocks.resolution" in message


def test_simulate_replay_command_reports_the_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the library's complaint process: one complaint cancelled after 3 business hours."""
    from typer.testing import CliRunner

    from engine.store.sql import Store
    from svcflow.cli import app

    url = f"sqlite:///{tmp_path / 'svcflow.db'}"
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", url)
    clock = FakeClock(at(9))
    engine = Engine(Store(url), ProcessLibrary.from_dir(), clock=clock, notifier=LogNotifier())
    engine.start("complaint_handling", {"tier": "silver"}, case_id="K")
    clock.set(at(12))
    engine.cancel("K", "withdrawn")
    engine.store.dispose()
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: one hour\nprocess: complaint_handling\n"
                      "clocks: {resolution: {policies: [{target: 1h}]}}\n", encoding="utf-8")
    out = tmp_path / "replay.html"
    result = CliRunner().invoke(app, ["simulate", "--replay", "--policy", str(policy), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Resolution: 1 clock(s); breach rate 0.0 % → 100.0 % (+100.0 pp)" in result.output
    assert 'id="replay-table"' in out.read_text(encoding="utf-8")


def test_the_shipped_example_policy_fits_the_library() -> None:
    policy = load_policy(Path(__file__).resolve().parent.parent / "scenarios" / "policies" / "complaint_tighter.yaml")
    graph = ProcessLibrary.from_dir().get(policy.process)
    report = replay(graph, [], {}, policy)  # an empty log: only the policy is checked against the definition
    assert [c.clock for c in report.clocks] == ["case:first_response", "case:resolution"] and report.cases == 0

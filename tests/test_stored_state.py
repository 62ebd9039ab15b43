"""A case's stored state: written with its schema version, read through the migration chain, and refused
with a clear error (the case row untouched) when this code cannot read it faithfully.

The v1 states come from tests/fixtures/v1/expected.json: cases stored by the code before the state
had a version (see capture.py there).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from engine.errors import StoredStateError
from engine.run.runtime import Engine, LogNotifier
from engine.store.migrations import STATE_SCHEMA_VERSION, upgrade_state
from engine.store.serializer import state_from_json, state_json
from engine.store.sql import Store
from engine.time.clock import FakeClock
from tests.test_log import v1_store  # noqa: F401  (the fixture)

V1 = Path(__file__).resolve().parent / "fixtures" / "v1"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def v1_states() -> dict[str, dict[str, Any]]:
    return json.loads((V1 / "expected.json").read_text(encoding="utf-8"))["states"]


def test_states_stored_before_versions_load_as_they_were(v1_states: dict[str, dict[str, Any]]) -> None:
    for case_id, raw in v1_states.items():
        assert "schema_version" not in raw
        state = state_from_json(json.dumps(raw), case_id)
        assert json.loads(state_json(state)) == {**raw, "schema_version": STATE_SCHEMA_VERSION}, case_id


def test_a_case_stored_before_versions_continues_in_todays_engine(v1_store: Store) -> None:
    store = v1_store
    engine = Engine(store, Engine.in_memory().library, clock=FakeClock(datetime(2025, 9, 22, 10, tzinfo=SHANGHAI)),
                    notifier=LogNotifier())
    task = next(t for t in store.tasks(case_id="B") if t["node"] == "handle")
    engine.complete(task["id"], actor="manager", role="department_manager",
                    data={"handling_notes": "查明", "handoff_technical": False, "handoff_billing": False,
                          "handoff_logistics": False, "handoff_quality": False})
    with store.engine.connect() as conn_:
        stored = json.loads(conn_.execute(text("SELECT state FROM cases WHERE id = 'B'")).scalar_one())
    assert stored["schema_version"] == STATE_SCHEMA_VERSION
    assert "reply_customer" in {t["node"] for t in store.tasks(case_id="B")}


def test_written_state_carries_its_schema_version(v1_states: dict[str, dict[str, Any]]) -> None:
    state = state_from_json(json.dumps(v1_states["A"]), "A")
    assert json.loads(state_json(state))["schema_version"] == STATE_SCHEMA_VERSION


def test_a_state_from_a_newer_version_is_refused_naming_the_case(v1_states: dict[str, dict[str, Any]]) -> None:
    raw = {**v1_states["A"], "schema_version": STATE_SCHEMA_VERSION + 1}
    with pytest.raises(StoredStateError, match=rf"case A: its stored state has schema version {STATE_SCHEMA_VERSION + 1}.*upgrade svcflow"):
        state_from_json(json.dumps(raw), "A")


def test_an_unknown_key_is_refused_naming_the_key_and_the_case(v1_states: dict[str, dict[str, Any]]) -> None:
    raw = {**v1_states["B"], "sla_policy": "strict"}
    with pytest.raises(StoredStateError, match=r"case B: unknown key\(s\) 'sla_policy' in its stored state"):
        state_from_json(json.dumps(raw), "B")


def test_an_unknown_key_inside_a_task_names_the_task(v1_states: dict[str, dict[str, Any]]) -> None:
    raw = json.loads(json.dumps(v1_states["B"]))
    task_id = next(iter(raw["tasks"]))
    raw["tasks"][task_id]["owner_team"] = "north"
    with pytest.raises(StoredStateError, match=rf"unknown key\(s\) 'owner_team' in task '{task_id}'"):
        state_from_json(json.dumps(raw), "B")


def test_a_missing_key_is_a_clear_error(v1_states: dict[str, dict[str, Any]]) -> None:
    raw = {k: v for k, v in v1_states["A"].items() if k != "started_at"}
    with pytest.raises(StoredStateError, match=r"case A: key\(s\) 'started_at' missing"):
        state_from_json(json.dumps(raw), "A")


def test_state_that_is_not_json_is_a_clear_error() -> None:
    with pytest.raises(StoredStateError, match="case Z: its stored state is not JSON"):
        state_from_json('{"case_id": ', "Z")


def test_state_migrations_run_in_order_from_the_stored_version() -> None:
    def rename_counter(raw: dict[str, Any]) -> dict[str, Any]:  # 1 -> 2
        out = {k: v for k, v in raw.items() if k != "counter"}
        out["id_counter"] = raw["counter"]
        return out

    def split_level(raw: dict[str, Any]) -> dict[str, Any]:  # 2 -> 3
        return {**raw, "case_level": raw["escalation_level"], "id_counter": raw["id_counter"] + 100}

    chain = {1: rename_counter, 2: split_level}
    assert upgrade_state({"counter": 4, "escalation_level": 2}, 1, "A", migrations=chain, current=3) == {
        "escalation_level": 2, "id_counter": 104, "case_level": 2}
    assert upgrade_state({"id_counter": 4, "escalation_level": 0}, 2, "A", migrations=chain, current=3)[
        "id_counter"] == 104


def test_a_missing_state_migration_step_is_a_clear_error() -> None:
    with pytest.raises(StoredStateError, match="case A: its stored state: no migration from version 2 to 3"):
        upgrade_state({}, 1, "A", migrations={1: dict}, current=3)


def test_the_engine_refuses_an_unreadable_case_and_leaves_its_row_untouched(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'case.db'}")
    engine = Engine(store, Engine.in_memory().library, clock=FakeClock(datetime(2025, 9, 15, 9, tzinfo=SHANGHAI)),
                    notifier=LogNotifier())
    case_id = engine.start("complaint_handling", {"tier": "gold"})
    with store.transaction() as conn:
        raw = json.loads(conn.execute(text("SELECT state FROM cases WHERE id = :id"), {"id": case_id}).scalar_one())
        raw["future_field"] = 1
        conn.execute(text("UPDATE cases SET state = :s WHERE id = :id"), {"s": json.dumps(raw), "id": case_id})
    task = store.tasks(case_id=case_id)[0]
    with pytest.raises(StoredStateError, match=rf"case {case_id}: unknown key\(s\) 'future_field'"):
        engine.complete(task["id"], actor="li", role=task["role"], data={})
    with store.engine.connect() as conn:
        row = conn.execute(text("SELECT state, version FROM cases WHERE id = :id"), {"id": case_id}).one()
    assert json.loads(row[0]) == raw and row[1] == 1
    store.dispose()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_number_deep_in_case_data_is_stored_as_such_not_as_null(bad: float) -> None:
    from engine.store import codec

    value = {"customer": "C001", "answers": [1, "x", None, True, {"scores": [2.5, bad]}]}
    stored = codec.loads(codec.dumps({"state": "running", "data": value}, data=value))
    written = stored["data"]["answers"][4]["scores"][1]
    assert written != written if bad != bad else written == bad  # NaN stays NaN, an infinity stays itself


def test_a_state_is_written_as_the_same_text_directly_as_through_to_dict(v1_states: dict[str, dict[str, Any]]) -> None:
    from engine.store import codec

    for case_id, raw in v1_states.items():
        state = state_from_json(json.dumps(raw), case_id)
        state.started_at = state.started_at.replace(microsecond=123456).astimezone(SHANGHAI)  # another offset, µs
        for task in state.tasks.values():
            task.created_at = task.created_at.replace(tzinfo=None)  # a naive time written as it is
        expected = codec.dumps({**state.to_dict(), "schema_version": STATE_SCHEMA_VERSION}, data=state.data)
        assert state_json(state) == expected


def test_a_state_whose_data_is_not_plain_json_is_written_through_to_dict(v1_states: dict[str, dict[str, Any]]) -> None:
    state = state_from_json(json.dumps(v1_states["A"]), "A")
    state.data["score"] = [1.5, float("nan")]
    assert '"score":[1.5,NaN]' in state_json(state)  # not null, as orjson alone would write it


def test_the_fast_state_text_is_the_text_of_the_general_path(library_engine: Engine) -> None:
    """state_json hands tokens, tasks and clocks to orjson as dataclasses: same text as via to_dict.

    Every process of the library, after a sweep so its SLA clocks have fired and hold times (in
    Shanghai time, with and without microseconds)."""
    from datetime import timedelta

    from engine.store import codec

    engine, clock = library_engine, library_engine.clock
    assert isinstance(clock, FakeClock)
    for number, process_id in enumerate(sorted(engine.library.latest)):
        case_id = engine.start(process_id, {}, case_id=f"FAST-{number}")
        clock.advance(timedelta(hours=5, microseconds=250_001))
        engine.sweep()
        state, _ = engine.store.load_case(case_id)
        assert state.tasks or state.tokens, process_id
        general = codec.dumps({**state.to_dict(), "schema_version": STATE_SCHEMA_VERSION}, data=state.data)
        assert state_json(state) == general, process_id


def test_a_state_whose_data_holds_nan_is_written_by_the_general_path() -> None:
    state = state_from_json(json.dumps({"case_id": "N", "process_id": "p", "definition_hash": "h",
                                        "started_at": "2025-09-22T09:00:00+08:00"}), "N")
    state.data["score"] = float("nan")
    assert '"score":NaN' in state_json(state)

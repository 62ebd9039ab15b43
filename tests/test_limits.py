"""Input limits: over-long names and over-large values are refused before anything is decided or
stored, with a clear message naming the limit, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.definition.library import ProcessLibrary
from engine.errors import DefinitionError, InputError
from engine.run.limits import ID_CEILING, NAME_CEILING, Limits
from engine.run.runtime import Engine, LogNotifier
from engine.settings import Settings
from engine.store.sql import Store
from engine.store.tables import CaseRow, TaskRow
from engine.time.clock import FakeClock
from tests import test_store
from tests.conftest import MONDAY_9AM
from tests.test_semantics import LINEAR

store = test_store.store  # SQLite and PostgreSQL, each in a fresh schema

COMPLAINT = {"customer_id": "C001", "customer_name": "张三", "tier": "gold", "category": "billing",
             "description": "多扣费"}
REGISTER = {"channel": "phone", "category": "billing", "description": "多扣费"}


def library_engine_on(store: Store, limits: Limits | None = None) -> Engine:
    return Engine(store, ProcessLibrary.from_dir(), clock=FakeClock(MONDAY_9AM), notifier=LogNotifier(),
                  limits=limits or Limits())


def open_task(engine: Engine, case_id: str) -> dict:
    (task,) = engine.open_tasks(case_id)
    return task


def refusals(engine: Engine, case_id: str) -> list[dict]:
    return [e.data for e in engine.store.events(case_id) if e.type == "refused"]


# -- values -----------------------------------------------------------------------------------------
def test_a_ten_megabyte_text_value_is_refused_at_start_and_nothing_is_stored(store: Store):
    engine = library_engine_on(store)
    with pytest.raises(InputError) as refused:
        engine.start("complaint_handling", {**COMPLAINT, "description": "投" * 10_000_000})
    message = str(refused.value)
    assert "field 'description' is 10,000,000 characters" in message and "SVCFLOW_MAX_VALUE_CHARS" in message
    assert "nothing was stored" in message and len(message) < 1_000
    assert store.cases() == [] and store.events() == []


def test_a_value_at_the_limit_is_accepted_and_one_over_it_refused(store: Store):
    engine = library_engine_on(store, Limits(value_chars=50))
    case_id = engine.start("complaint_handling", {**COMPLAINT, "description": "x" * 50})
    task = open_task(engine, case_id)
    version = engine.case(case_id).version
    with pytest.raises(InputError, match="field 'description' is 51 characters"):
        engine.complete(task["id"], actor="li", role="front_desk", data={**REGISTER, "description": "x" * 51})
    assert engine.case(case_id).version == version and open_task(engine, case_id)["status"] == "open"
    assert [r["event"] for r in refusals(engine, case_id)] == ["CompleteTask"]


def test_many_values_under_the_value_limit_cannot_add_up_past_the_case_data_limit(store: Store):
    engine = library_engine_on(store, Limits(value_chars=400, data_chars=1_000))
    case_id = engine.start("complaint_handling", COMPLAINT)
    before = engine.case(case_id)
    with pytest.raises(InputError, match="its data would be .* more than the limit of 1,000"):
        engine.update(case_id, {"description": "d" * 400, "customer_name": "n" * 400}, actor="wu")
    after = engine.case(case_id)
    assert after.version == before.version and after.data == before.data
    assert len(refusals(engine, case_id)) == 1


def test_a_field_name_longer_than_an_identifier_is_refused_without_echoing_it_whole(store: Store):
    engine = library_engine_on(store)
    with pytest.raises(InputError) as refused:
        engine.start("complaint_handling", {**COMPLAINT, "k" * 100_000: 1})
    assert "field name" in str(refused.value) and "100,000 characters" in str(refused.value)
    assert len(str(refused.value)) < 1_000


# -- names ------------------------------------------------------------------------------------------
def test_an_actor_of_the_column_width_is_stored_on_both_databases_and_one_longer_is_refused(store: Store):
    engine = library_engine_on(store)
    case_id = engine.start("complaint_handling", COMPLAINT)
    task = open_task(engine, case_id)
    too_long = "a" * (NAME_CEILING + 1)
    with pytest.raises(InputError, match=f"the actor .* is {NAME_CEILING + 1} characters.*SVCFLOW_MAX_NAME_CHARS"):
        engine.complete(task["id"], actor=too_long, role="front_desk", data=REGISTER)
    assert open_task(engine, case_id)["status"] == "open"
    (refusal,) = refusals(engine, case_id)
    assert refusal["actor"] == too_long and "SVCFLOW_MAX_NAME_CHARS" in refusal["reason"]
    longest = "李" * NAME_CEILING
    engine.complete(task["id"], actor=longest, role="front_desk", data=REGISTER)
    assert store.task(task["id"])["completed_by"] == longest


def test_an_over_long_assignee_role_or_message_name_is_refused(store: Store):
    engine = library_engine_on(store, Limits(name_chars=10, id_chars=20))
    case_id = engine.start("complaint_handling", COMPLAINT)
    task = open_task(engine, case_id)
    with pytest.raises(InputError, match="the assignee 'abcdefghijk' is 11 characters"):
        engine.assign(task["id"], "abcdefghijk", actor="wu", role="front_desk")
    with pytest.raises(InputError, match="the role .* is 11 characters"):
        engine.complete(task["id"], actor="li", role="front_desk_", data=REGISTER)
    with pytest.raises(InputError, match="the message name .* is 21 characters.*SVCFLOW_MAX_ID_CHARS"):
        engine.send_message(case_id, "m" * 21, {})
    assert len(refusals(engine, case_id)) == 3
    assert store.task(task["id"])["assignee"] is None


def test_a_case_id_longer_than_an_identifier_is_refused(store: Store):
    engine = library_engine_on(store)
    with pytest.raises(InputError, match="the case id"):
        engine.start("complaint_handling", COMPLAINT, case_id="C" * (ID_CEILING + 1))
    assert store.cases() == []


def test_a_node_id_longer_than_64_characters_is_a_located_definition_error():
    text = (LINEAR.replace("id: handle", "id: " + "h" * 65)
            .replace("to: handle", "to: " + "h" * 65).replace("from: handle", "from: " + "h" * 65))
    with pytest.raises(DefinitionError) as error:
        ProcessLibrary().add_text(text, "long.yaml")
    assert "long.yaml" in str(error.value) and "64" in str(error.value)


def test_a_node_id_of_64_characters_runs_on_both_databases(store: Store):
    node = "h" * 64
    library = ProcessLibrary()
    library.add_text(LINEAR.replace("handle", node), "longest.yaml")
    engine = Engine(store, library, clock=FakeClock(MONDAY_9AM), notifier=LogNotifier(), limits=Limits())
    case_id = engine.start("demo", {})
    (task,) = engine.open_tasks(case_id)
    assert task["node"] == node
    engine.complete(task["id"], actor="li", role="agent", data={"result": "ok"})
    assert engine.case(case_id).status == "completed"


def test_a_tier_wider_than_its_column_is_kept_whole_in_the_data_on_both_databases(store: Store):
    library = ProcessLibrary()
    library.add_text(LINEAR.replace("tier: {type: enum, choices: [gold, standard], default: standard}",
                                    "tier: {type: string}"), "free_tier.yaml")
    engine = Engine(store, library, clock=FakeClock(MONDAY_9AM), notifier=LogNotifier(), limits=Limits())
    tier = "鉑金" * 40
    case_id = engine.start("demo", {"tier": tier})
    assert engine.case(case_id).data["tier"] == tier
    (row,) = store.cases()
    assert tier.startswith(row["tier"]) and len(row["tier"]) == CaseRow.__table__.c.tier.type.length  # type: ignore[attr-defined]


def test_an_end_outcome_longer_than_100_characters_is_a_located_definition_error():
    with pytest.raises(DefinitionError) as error:
        ProcessLibrary().add_text(LINEAR.replace("outcome: closed", "outcome: " + "c" * 101), "outcome.yaml")
    assert "outcome.yaml" in str(error.value) and "100" in str(error.value)


# -- configuration ----------------------------------------------------------------------------------
def test_limits_come_from_svcflow_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SVCFLOW_MAX_VALUE_CHARS", "123")
    monkeypatch.setenv("SVCFLOW_MAX_DATA_CHARS", "4567")
    monkeypatch.setenv("SVCFLOW_MAX_NAME_CHARS", "40")
    assert Limits.from_settings() == Limits(value_chars=123, data_chars=4567, name_chars=40)
    assert Engine.in_memory().limits.value_chars == 123


def test_a_name_limit_wider_than_the_store_columns_is_refused_at_configuration(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SVCFLOW_MAX_NAME_CHARS", str(NAME_CEILING + 1))
    with pytest.raises(ValidationError, match="max_name_chars"):
        Settings()
    with pytest.raises(ValueError, match="at most 100"):
        Limits(name_chars=NAME_CEILING + 1)


def test_the_store_columns_are_wide_enough_for_every_name_and_id_the_limits_allow():
    tasks, cases = TaskRow.__table__.c, CaseRow.__table__.c
    for column in (tasks.assignee, tasks.completed_by, tasks.role):
        assert column.type.length >= NAME_CEILING, column
    for column in (tasks.node, cases.id, cases.process_id):
        assert column.type.length >= ID_CEILING, column
    # task ids are the case id plus "-k<counter>"; sub-case ids add ".t<n>.<visit>" per level
    assert tasks.id.type.length >= ID_CEILING + 12

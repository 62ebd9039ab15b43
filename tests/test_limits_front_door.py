"""Input limits at the front door: the directory's names and the audit of refused strangers behave the
same on SQLite and PostgreSQL (PostgreSQL enforces column widths that SQLite would silently exceed),
and messages never echo a huge name whole."""

from __future__ import annotations

import pytest

from engine.access import Gate, library_roles
from engine.definition.library import ProcessLibrary
from engine.errors import AccessDenied, InputError
from engine.run.runtime import Engine, LogNotifier
from engine.store.directory import DISPLAY_NAME_CHARS, TOKEN_NAME_CHARS, Directory
from engine.store.sql import Store
from engine.time.clock import FakeClock
from tests import test_store
from tests.conftest import MONDAY_9AM

store = test_store.store  # SQLite and PostgreSQL, each in a fresh schema
COMPLAINT = {"customer_id": "C001", "customer_name": "张三", "tier": "gold", "category": "billing",
             "description": "多扣费"}


@pytest.fixture(scope="module")
def library() -> ProcessLibrary:
    return ProcessLibrary.from_dir()


@pytest.fixture
def gate(store: Store, library: ProcessLibrary) -> Gate:
    engine = Engine(store, library, clock=FakeClock(MONDAY_9AM), notifier=LogNotifier())
    directory = Directory(store, library_roles(engine.library))
    directory.add_user("wang", "王前台", ["front_desk"], MONDAY_9AM)
    return Gate(engine, directory, supervisor_roles=("team_supervisor",))


def test_a_display_name_at_the_column_width_is_kept_and_one_longer_is_refused(gate: Gate) -> None:
    directory = gate.directory
    assert directory.add_user("li", "李" * DISPLAY_NAME_CHARS, [], MONDAY_9AM).display_name == "李" * DISPLAY_NAME_CHARS
    with pytest.raises(InputError, match=f"201 characters, more than {DISPLAY_NAME_CHARS}"):
        directory.add_user("zhao", "赵" * (DISPLAY_NAME_CHARS + 1), [], MONDAY_9AM)
    assert directory.find_user("zhao") is None


def test_an_over_long_display_name_in_an_import_file_imports_nobody(gate: Gate, tmp_path) -> None:
    staff = tmp_path / "staff.csv"
    staff.write_text(f"id,name,roles\nqian,钱,front_desk\nsun,{'孙' * 300},front_desk\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"staff.csv:3: the display name of 'sun' is 300 characters"):
        gate.directory.import_file(staff, MONDAY_9AM)
    assert [u.id for u in gate.directory.users()] == ["wang"]


def test_a_token_name_is_short_enough_for_its_actor_to_be_stored(gate: Gate) -> None:
    directory = gate.directory
    token, _ = directory.create_token("c" * TOKEN_NAME_CHARS, ["front_desk"], MONDAY_9AM)
    crm = gate.token_principal(token.name, token.roles)
    case_id = gate.start(crm, "complaint_handling", COMPLAINT)  # "token:ccc…" is the actor in the log
    assert gate.engine.store.events(case_id)[0].data["actor"] == crm.id
    with pytest.raises(InputError, match=f"at most {TOKEN_NAME_CHARS} characters"):
        directory.create_token("c" * (TOKEN_NAME_CHARS + 1), ["front_desk"], MONDAY_9AM)


def test_a_stranger_with_a_huge_name_is_refused_and_audited_shortened(gate: Gate) -> None:
    stranger = gate.principal("x" * 100_000)
    with pytest.raises(AccessDenied) as refused:
        gate.start(stranger, "complaint_handling", COMPLAINT)
    assert len(refused.value.message) < 300 and "(100,000 characters)" in refused.value.message
    (audit,) = gate.directory.audit_trail()
    assert audit["kind"] == "refused" and len(audit["principal"]) <= 200
    assert audit["principal"].endswith("… (100,000 characters)")


def test_a_stranger_with_a_huge_name_refused_on_a_case_is_recorded_shortened(gate: Gate) -> None:
    case_id = gate.start(gate.principal("wang"), "complaint_handling", COMPLAINT)
    task_id = gate.engine.store.load_case(case_id)[0].open_tasks()[0].id
    with pytest.raises(AccessDenied):
        gate.complete(gate.principal("y" * 5_000), task_id, {"channel": "phone", **COMPLAINT})
    (refusal,) = [e.data for e in gate.engine.store.events(case_id) if e.type == "refused"]
    assert refusal["actor_kind"] == "unknown" and len(refusal["actor"]) < 300


def test_an_invalid_user_id_is_not_echoed_whole(gate: Gate) -> None:
    with pytest.raises(InputError) as refused:
        gate.directory.add_user("Ω" * 50_000, "x", [], MONDAY_9AM)
    assert len(refused.value.message) < 200 and "is not a valid user id" in refused.value.message

"""Who may change what: the directory's rules in front of the engine (engine/access.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.access import Gate, library_roles
from engine.errors import AccessDenied, InputError, TaskRefused
from engine.run.runtime import Engine
from engine.store.directory import Directory
from tests.test_library_credit_rating import MIDDLING

SUPERVISORS = ("team_supervisor", "credit_manager")
COMPLAINT = {"customer_id": "C001", "customer_name": "张三", "tier": "gold", "category": "billing",
             "description": "多扣费"}


@pytest.fixture
def gate(library_engine: Engine) -> Gate:
    directory = Directory(library_engine.store, library_roles(library_engine.library))
    now = library_engine.clock.now()
    directory.add_user("wang", "王前台", ["front_desk"], now)
    directory.add_user("zhou", "周主管", ["team_supervisor"], now)
    directory.add_user("li", "李专责", ["complaint_handler"], now)
    directory.add_user("chen", "陈分析", ["credit_analyst", "credit_reviewer"], now)
    directory.add_user("sun", "孙复核", ["credit_reviewer"], now)
    directory.add_user("ma", "马经理", ["credit_manager"], now)
    directory.add_user("old", "离职员工", ["front_desk"], now)
    directory.set_active("old", False, now)
    return Gate(library_engine, directory, supervisor_roles=SUPERVISORS)


def refusals(gate: Gate, case_id: str) -> list[dict[str, Any]]:
    return [e.data for e in gate.engine.store.events(case_id) if e.type == "refused"]


def open_task(gate: Gate, case_id: str, node: str) -> str:
    return next(t.id for t in gate.engine.store.load_case(case_id)[0].open_tasks() if t.node == node)


def complaint_at_register(gate: Gate) -> tuple[str, str]:
    case_id = gate.start(gate.principal("wang"), "complaint_handling", COMPLAINT)
    return case_id, open_task(gate, case_id, "register")


def test_an_unknown_user_is_refused_and_the_refusal_names_who_tried(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    version = gate.engine.case(case_id).version
    with pytest.raises(AccessDenied, match="not a user of the directory"):
        gate.complete(gate.principal("mallory"), task_id, {"channel": "phone", **COMPLAINT})
    assert gate.engine.case(case_id).version == version
    assert refusals(gate, case_id)[-1]["actor"] == "mallory"
    assert refusals(gate, case_id)[-1]["actor_kind"] == "unknown"


def test_a_disabled_user_is_refused(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    with pytest.raises(AccessDenied, match="disabled"):
        gate.complete(gate.principal("old"), task_id, {"channel": "phone", **COMPLAINT}, role="front_desk")
    assert refusals(gate, case_id)[-1]["actor"] == "old"


def test_acting_in_a_role_the_user_does_not_hold_is_refused(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    with pytest.raises(AccessDenied, match="does not hold role 'front_desk'"):
        gate.complete(gate.principal("li"), task_id, {"channel": "phone", **COMPLAINT}, role="front_desk")
    assert refusals(gate, case_id)[-1]["role"] == "front_desk"
    assert gate.engine.store.load_case(case_id)[0].tasks[task_id].status == "open"


def test_the_role_defaults_to_one_the_user_holds_that_the_task_accepts(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    gate.complete(gate.principal("Wang "), task_id, {"channel": "phone", **COMPLAINT})
    task = gate.engine.store.load_case(case_id)[0].tasks[task_id]
    assert (task.status, task.completed_by) == ("completed", "wang")


def test_a_refused_start_is_kept_in_the_directory_audit_trail(gate: Gate) -> None:
    with pytest.raises(AccessDenied, match="holds no role of process 'credit_rating'"):
        gate.start(gate.principal("wang"), "credit_rating", {})
    audit = gate.directory.audit_trail()[-1]
    assert (audit["principal"], audit["details"]["action"], audit["details"]["process"]) == \
        ("wang", "start", "credit_rating")
    assert gate.engine.store.cases(process_id="credit_rating") == []


def credit_rating_waiting_for_peer_review(gate: Gate) -> str:
    chen = gate.principal("chen")
    case_id = gate.start(chen, "credit_rating", {})
    gate.complete(chen, open_task(gate, case_id, "classify"), {
        "customer_id": "K-77", "customer_name": "新兴物流", "customer_type": "enterprise",
        "credit_class": "existing_customer", "requested_limit": 500_000}, role="credit_analyst")
    gate.complete(chen, open_task(gate, case_id, "collect_info"), MIDDLING, role="credit_analyst")
    gate.complete(chen, open_task(gate, case_id, "propose_rating"),
                  {"proposed_rating": "BBB", "proposed_limit": 500_000, "rationale": "依据评分"},
                  role="credit_analyst")
    return case_id


def test_update_is_refused_to_a_user_holding_no_open_task_of_the_case(gate: Gate) -> None:
    """Issue 13: a rating waiting for the peer reviewer was rewritten (AAA, 50 M) by someone else."""
    case_id = credit_rating_waiting_for_peer_review(gate)
    gate.directory.revoke("chen", ["credit_reviewer"], gate.engine.clock.now())
    before = gate.engine.case(case_id)
    with pytest.raises(AccessDenied, match="waits for credit_reviewer"):
        gate.update(gate.principal("chen"), case_id, {"proposed_rating": "AAA", "proposed_limit": 50_000_000})
    after = gate.engine.case(case_id)
    assert (after.version, after.data["proposed_rating"]) == (before.version, "BBB")
    assert refusals(gate, case_id)[-1]["action"] == "update"


def test_update_is_allowed_to_a_supervisor_role(gate: Gate) -> None:
    case_id = credit_rating_waiting_for_peer_review(gate)
    gate.update(gate.principal("ma"), case_id, {"proposed_limit": 400_000})
    assert gate.engine.case(case_id).data["proposed_limit"] == 400_000


def test_four_eyes_compares_directory_identities_not_typed_names(gate: Gate) -> None:
    case_id = credit_rating_waiting_for_peer_review(gate)
    with pytest.raises(TaskRefused, match="four-eyes"):
        gate.complete(gate.principal(" CHEN"), open_task(gate, case_id, "peer_review"),
                      {"approval_decision": "approved", "approval_comment": "自批"}, role="credit_reviewer")
    gate.complete(gate.principal("sun"), open_task(gate, case_id, "peer_review"),
                  {"approval_decision": "approved", "approval_comment": "同意"})
    assert gate.engine.case(case_id).data["published_rating"] == "BBB"


def test_cancel_needs_a_supervisor_role(gate: Gate) -> None:
    case_id, _ = complaint_at_register(gate)
    with pytest.raises(AccessDenied, match="not a supervisor"):
        gate.cancel(gate.principal("wang"), case_id, "duplicate")
    assert gate.engine.case(case_id).status == "running"
    gate.cancel(gate.principal("zhou"), case_id, "duplicate")
    assert gate.engine.case(case_id).status == "cancelled"


def test_assigning_to_someone_else_needs_a_supervisor_and_an_assignee_holding_the_role(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    with pytest.raises(AccessDenied, match="not a supervisor"):
        gate.assign(gate.principal("wang"), task_id, "li")
    with pytest.raises(AccessDenied, match="does not hold role 'front_desk'"):
        gate.assign(gate.principal("zhou"), task_id, "li")
    gate.directory.grant("li", ["front_desk"], gate.engine.clock.now())
    gate.assign(gate.principal("zhou"), task_id, "LI")
    assert gate.engine.store.load_case(case_id)[0].tasks[task_id].assignee == "li"


def test_claiming_a_task_needs_its_role(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    with pytest.raises(AccessDenied, match="holds none of the roles"):
        gate.assign(gate.principal("li"), task_id, "li")
    gate.assign(gate.principal("wang"), task_id, "wang")
    assert gate.engine.store.load_case(case_id)[0].tasks[task_id].assignee == "wang"


def test_an_empty_directory_keeps_free_typed_names(library_engine: Engine) -> None:
    gate = Gate(library_engine, Directory(library_engine.store), supervisor_roles=SUPERVISORS)
    case_id = gate.start(gate.principal("anyone"), "complaint_handling", COMPLAINT)
    gate.update(gate.principal("anyone"), case_id, {"tier": "silver"})
    assert library_engine.case(case_id).data["tier"] == "silver"


def test_the_required_setting_enforces_an_empty_directory(library_engine: Engine) -> None:
    gate = Gate(library_engine, Directory(library_engine.store), supervisor_roles=SUPERVISORS, required=True)
    with pytest.raises(AccessDenied, match="not a user of the directory"):
        gate.start(gate.principal("anyone"), "complaint_handling", COMPLAINT)
    assert library_engine.store.cases() == []


def test_roles_must_be_lanes_of_the_library(gate: Gate) -> None:
    with pytest.raises(InputError, match="role 'front_dsk' is not a lane"):
        gate.directory.add_user("zhao", "赵", ["front_dsk"], gate.engine.clock.now())


def test_a_bad_row_in_an_import_file_names_its_line_and_imports_nothing(gate: Gate, tmp_path: Path) -> None:
    path = tmp_path / "staff.yaml"
    path.write_text("users:\n  - {id: zhao, name: 赵, roles: [front_desk]}\n"
                    "  - {id: qian, name: 钱, roles: [nobody]}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"staff.yaml:3: role 'nobody'"):
        gate.directory.import_file(path, gate.engine.clock.now())
    assert gate.directory.find_user("zhao") is None


def test_a_csv_import_adds_new_users_and_updates_known_ones(gate: Gate, tmp_path: Path) -> None:
    path = tmp_path / "staff.csv"
    path.write_text("id,name,roles,active\nzhao,赵,front_desk;complaint_handler,true\nwang,王,front_desk,false\n",
                    encoding="utf-8")
    assert gate.directory.import_file(path, gate.engine.clock.now()) == (1, 1)
    assert gate.directory.user("zhao").roles == ("front_desk", "complaint_handler")
    assert gate.directory.user("wang").active is False


def test_a_token_is_verified_by_its_secret_and_refused_once_revoked(gate: Gate) -> None:
    token, secret = gate.directory.create_token("crm", ["front_desk"], gate.engine.clock.now())
    verified = gate.directory.verify_token(secret)
    assert verified is not None and verified.roles == ("front_desk",)
    assert gate.directory.verify_token(secret[:-2] + "xx") is None
    gate.directory.revoke_token(token.id, gate.engine.clock.now())
    assert gate.directory.verify_token(secret) is None


def test_passwords_are_stored_as_argon2_hashes_and_checked(gate: Gate) -> None:
    gate.directory.set_password("wang", "correct horse", gate.engine.clock.now())
    assert gate.directory.check_password("WANG", "correct horse") is not None
    assert gate.directory.check_password("wang", "wrong horse") is None
    with gate.engine.store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM directory_users WHERE id = 'wang'").scalar_one()
    assert stored.startswith("$argon2")


def test_a_message_needs_a_lane_of_the_cases_process_and_is_refused_on_the_record(gate: Gate) -> None:
    case_id, _ = complaint_at_register(gate)
    before = gate.engine.case(case_id).version
    with pytest.raises(AccessDenied, match="chen holds no role of process 'complaint_handling'"):
        gate.message(gate.principal("chen"), case_id, "customer_reply", {"accepted": True})
    assert gate.engine.case(case_id).version == before
    refusal = refusals(gate, case_id)[-1]
    assert (refusal["actor"], refusal["action"], refusal["event"]) == ("chen", "message", "MessageArrived")


def test_a_gate_refusal_says_what_was_stored_like_every_other_refusal(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    with pytest.raises(AccessDenied) as on_a_case:
        gate.complete(gate.principal("li"), task_id, {"channel": "phone", **COMPLAINT})
    assert on_a_case.value.hint.endswith(f"case {case_id} is unchanged; the refusal is recorded in its history")
    with pytest.raises(AccessDenied) as no_case:
        gate.start(gate.principal("chen"), "complaint_handling", COMPLAINT)
    assert no_case.value.hint.endswith("no case was changed; the refusal is kept in the directory's audit trail "
                                       "(`svcflow users audit`)")
    assert [a["details"]["action"] for a in gate.directory.audit_trail()] == ["start"]


def test_a_staff_csv_saved_by_excel_as_gbk_is_refused_at_its_line_with_the_re_encoding_hint(gate: Gate,
                                                                                           tmp_path: Path) -> None:
    staff = tmp_path / "staff.csv"
    staff.write_bytes("id,name,roles\nqian,王五,front_desk\n".encode("gbk"))
    with pytest.raises(InputError) as refused:
        gate.directory.import_file(staff, gate.engine.clock.now())
    assert refused.value.message.startswith(f"{staff}:2: the file is not UTF-8 text")
    assert "GBK/GB18030" in (refused.value.hint or "")
    assert gate.directory.find_user("qian") is None


def test_a_staff_csv_with_excels_utf8_byte_order_mark_is_read(gate: Gate, tmp_path: Path) -> None:
    staff = tmp_path / "staff.csv"
    staff.write_bytes("id,name,roles\nqian,钱前台,front_desk\n".encode("utf-8-sig"))
    assert gate.directory.import_file(staff, gate.engine.clock.now()) == (1, 0)
    assert gate.directory.user("qian").display_name == "钱前台"


def test_a_staff_yaml_indented_with_a_tab_says_tab_and_the_line(gate: Gate, tmp_path: Path) -> None:
    staff = tmp_path / "staff.yaml"
    staff.write_text("- id: qian\n\tname: 钱\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"staff.yaml:2: not valid YAML: the line is indented with a tab") as refused:
        gate.directory.import_file(staff, gate.engine.clock.now())
    assert "spaces" in (refused.value.hint or "")


class Ticks:
    """A monotonic clock the test moves (the token cache's TTL)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_token_revoked_in_the_same_process_is_refused_at_once(gate: Gate) -> None:
    directory = Directory(gate.engine.store, token_cache_seconds=60, monotonic=Ticks())
    token, secret = directory.create_token("crm", ["front_desk"], gate.engine.clock.now())
    assert directory.verify_token(secret) is not None  # now cached for 60 s
    directory.revoke_token(token.id, gate.engine.clock.now())
    assert directory.verify_token(secret) is None


def test_a_cached_token_still_checks_its_secret(gate: Gate) -> None:
    directory = Directory(gate.engine.store, token_cache_seconds=60, monotonic=Ticks())
    _, secret = directory.create_token("crm", ["front_desk"], gate.engine.clock.now())
    assert directory.verify_token(secret) is not None
    assert directory.verify_token(secret[:-2] + "xx") is None


def test_a_revocation_by_another_process_is_seen_when_the_cached_token_expires(gate: Gate) -> None:
    ticks = Ticks()
    server = Directory(gate.engine.store, token_cache_seconds=5, monotonic=ticks)
    cli = Directory(gate.engine.store)  # `svcflow tokens revoke` in its own process: another Directory
    token, secret = cli.create_token("crm", ["front_desk"], gate.engine.clock.now())
    assert server.verify_token(secret) is not None
    cli.revoke_token(token.id, gate.engine.clock.now())
    ticks.now += 4.9
    assert server.verify_token(secret) is not None  # the documented window: within the TTL
    ticks.now += 0.2
    assert server.verify_token(secret) is None

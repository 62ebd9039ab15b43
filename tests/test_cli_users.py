"""`svcflow users` / `svcflow tokens`, and the CLI's actions checked against the directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine.store.directory import Directory
from engine.store.sql import Store
from tests.test_cli import isolated_store, run  # noqa: F401  (isolated_store: an autouse fixture)

COMPLAINT = ["--set", "customer_id=C001", "--set", "customer_name=张三", "--set", "tier=gold",
             "--set", "category=billing", "--set", "description=多扣费"]


def register_task() -> tuple[str, str]:
    case_id = run("start", "complaint_handling", "--as", "wang", *COMPLAINT).stdout.strip()
    tasks = json.loads(run("tasks", "--case", case_id, "--json").stdout)
    return case_id, tasks[0]["id"]


def test_users_are_added_granted_revoked_disabled_and_listed() -> None:
    assert run("users", "add", "wang", "--name", "王前台", "--role", "front_desk").exit_code == 0
    assert run("users", "grant", "wang", "complaint_handler").exit_code == 0
    assert run("users", "revoke", "wang", "front_desk").exit_code == 0
    assert run("users", "disable", "wang").exit_code == 0
    listed = json.loads(run("users", "list", "--json").stdout)
    assert listed == [{"id": "wang", "name": "王前台", "roles": ["complaint_handler"], "active": False,
                       "password": False}]


def test_an_unknown_role_is_refused_with_a_hint() -> None:
    result = run("users", "add", "wang", "--role", "frontdesk")
    assert result.exit_code == 1
    assert "role 'frontdesk' is not a lane of any process definition" in result.stderr


def test_users_are_imported_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "staff.yaml"
    path.write_text("- {id: wang, name: 王前台, roles: [front_desk]}\n"
                    "- {id: zhou, name: 周主管, roles: [team_supervisor, front_desk], password: zhou-secret}\n",
                    encoding="utf-8")
    result = run("users", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "2 user(s) added, 0 updated" in result.stdout
    assert [u["id"] for u in json.loads(run("users", "list", "--json").stdout)] == ["wang", "zhou"]


def test_a_token_is_printed_once_and_stored_hashed(isolated_store: Path) -> None:
    result = run("tokens", "create", "--name", "crm", "--role", "front_desk")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("svcf_")
    assert secret not in isolated_store.read_bytes().decode("utf-8", "replace")
    directory = Directory(Store(f"sqlite:///{isolated_store}"))
    token = directory.verify_token(secret)
    assert token is not None and token.name == "crm"
    assert run("tokens", "revoke", token.id).exit_code == 0
    assert directory.verify_token(secret) is None


def test_without_users_the_cli_keeps_free_typed_names() -> None:
    _, task_id = register_task()
    result = run("complete", task_id, "--as", "anyone", "--role", "front_desk", "--set", "channel=phone")
    assert result.exit_code == 0, result.output


def test_with_users_the_cli_refuses_an_unknown_actor_and_records_who_tried() -> None:
    run("users", "add", "wang", "--role", "front_desk")
    case_id, task_id = register_task()
    result = run("complete", task_id, "--as", "li", "--role", "front_desk", "--set", "channel=phone")
    assert result.exit_code == 1
    assert "'li' is not a user of the directory" in result.stderr
    shown = json.loads(run("show", case_id, "--json").stdout)
    refused = [e for e in shown["events"] if e["type"] == "refused"]
    assert refused[-1]["data"]["actor"] == "li"
    assert run("complete", task_id, "--as", "wang", "--set", "channel=phone").exit_code == 0


def test_with_users_update_without_an_open_task_role_is_refused_and_changes_nothing() -> None:
    run("users", "add", "wang", "--role", "front_desk")
    run("users", "add", "li", "--role", "complaint_handler")
    case_id, _ = register_task()
    result = run("update", case_id, "--as", "li", "--set", "tier=platinum")
    assert result.exit_code == 1
    assert "it waits for front_desk" in result.stderr
    assert json.loads(run("show", case_id, "--json").stdout)["case"]["data"]["tier"] == "gold"


def test_with_users_cancel_needs_a_supervisor() -> None:
    run("users", "add", "wang", "--role", "front_desk")
    run("users", "add", "zhou", "--role", "team_supervisor")
    case_id, _ = register_task()
    assert "not a supervisor" in run("cancel", case_id, "--as", "wang", "--reason", "dup").stderr
    result = run("cancel", case_id, "--as", "zhou", "--reason", "dup")
    assert result.exit_code == 0 and "cancelled" in result.stdout


def test_the_required_setting_refuses_names_even_with_an_empty_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVCFLOW_DIRECTORY", "required")
    result = run("start", "complaint_handling", "--as", "anyone", *COMPLAINT)
    assert result.exit_code == 1
    assert "'anyone' is not a user of the directory" in result.stderr
    assert json.loads(run("cases", "--json").stdout) == []


def test_a_refused_start_says_where_it_is_kept_and_users_audit_shows_it() -> None:
    assert run("users", "add", "wang", "--role", "front_desk").exit_code == 0
    assert run("users", "add", "chen", "--name", "[/x]陈", "--role", "credit_analyst").exit_code == 0
    refused = run("start", "complaint_handling", "--as", "chen", *COMPLAINT)
    assert refused.exit_code == 1 and "the refusal is kept in the directory's audit trail" in refused.stderr
    assert json.loads(run("cases", "--json").stdout) == []
    audit = run("users", "audit")
    assert audit.exit_code == 0 and "refused" in audit.output and "chen" in audit.output
    (record,) = json.loads(run("users", "audit", "--json").stdout)
    assert (record["kind"], record["principal"], record["details"]["reason"]) == \
        ("refused", "chen", "chen holds no role of process 'complaint_handling'")
    assert "[/x]陈" in run("users", "list").output  # a stored name is printed as it is, never as markup

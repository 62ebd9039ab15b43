"""The svcflow command line: what a designer and an operator type, and what they see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.definition.model import json_schema
from svcflow.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "svcflow.db"
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    return db


def run(*args: str):
    return runner.invoke(app, list(args))


def start_complaint(*extra: str) -> str:
    result = run("start", "complaint_handling", "--set", "customer_id=C001", "--set", "customer_name=张三", "--set", "tier=gold",
                 "--set", "category=billing", "--set", "description=多扣费", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_validate_accepts_the_process_library():
    result = run("validate", str(ROOT / "process_defs"))
    assert result.exit_code == 0, result.output
    assert "8 definition(s) valid" in result.output


def test_validate_reports_every_problem_with_file_line_and_node_and_exits_non_zero(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: bad\nversion: 1\nname: {zh: 坏, en: Bad}\nlanes: [{id: agent, name: {zh: 坐席, en: Agent}}]\n"
        "nodes:\n  - {id: start, kind: start}\n  - {id: work, kind: human, lane: nobody}\n"
        "  - {id: done, kind: end}\nedges:\n  - {from: start, to: work}\n  - {from: work, to: dnoe}\n",
        encoding="utf-8")
    result = run("validate", str(bad))
    assert result.exit_code == 1
    assert "bad.yaml:7" in result.output and "nobody" in result.output
    assert "bad.yaml:11" in result.output and "dnoe" in result.output
    assert "Traceback" not in result.output


def test_validate_of_a_yaml_syntax_error_is_a_message_not_a_traceback(tmp_path: Path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("id: x\nnodes: [\n", encoding="utf-8")
    result = run("validate", str(bad))
    assert result.exit_code != 0 and "broken.yaml" in result.output and "Traceback" not in result.output


def test_schema_prints_the_json_schema_that_the_committed_file_matches():
    result = run("schema")
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed == json_schema()
    committed = json.loads((ROOT / "schema" / "process-definition.json").read_text(encoding="utf-8"))
    assert committed == printed, "run `svcflow schema --out schema/process-definition.json`"


def test_list_shows_every_process_as_json():
    result = run("list", "--json")
    ids = {row["id"] for row in json.loads(result.stdout)}
    assert {"complaint_handling", "major_complaint", "after_sales_repair"} <= ids


def test_start_prints_the_case_id_and_show_displays_it():
    case_id = start_complaint()
    result = run("show", case_id)
    assert result.exit_code == 0
    assert "客户投诉处理" in result.output and "register" in result.output


def test_start_with_bad_data_exits_non_zero_and_stores_nothing():
    result = run("start", "complaint_handling", "--set", "tier=diamond")
    assert result.exit_code == 1 and "tier" in result.output
    assert json.loads(run("cases", "--json").stdout) == []


def test_start_with_a_data_file(tmp_path: Path):
    data = tmp_path / "case.json"
    data.write_text(json.dumps({"customer_name": "李四", "tier": "silver", "category": "product_quality",
                                "description": "产品故障"}, ensure_ascii=False), encoding="utf-8")
    result = run("start", "complaint_handling", "--data", str(data))
    assert result.exit_code == 0, result.output
    assert json.loads(run("cases", "--json").stdout)[0]["tier"] == "silver"


def test_tasks_lists_open_tasks_by_role_and_complete_moves_the_case_on():
    case_id = start_complaint()
    tasks = json.loads(run("tasks", "--role", "front_desk", "--json").stdout)
    assert [t["case_id"] for t in tasks] == [case_id]
    assert json.loads(run("tasks", "--role", "service_director", "--json").stdout) == []
    result = run("complete", tasks[0]["id"], "--as", "li", "--role", "front_desk",
                 "--set", "channel=phone", "--set", "category=billing", "--set", "description=多扣费")
    assert result.exit_code == 0, result.output
    assert json.loads(run("tasks", "--role", "front_desk", "--json").stdout) == []


def test_complete_with_the_wrong_role_is_refused_with_a_clear_message():
    start_complaint()
    task = json.loads(run("tasks", "--json").stdout)[0]
    result = run("complete", task["id"], "--as", "zhao", "--role", "billing_dept")
    assert result.exit_code == 1
    assert "may not act on" in result.output and "Traceback" not in result.output
    assert json.loads(run("tasks", "--json").stdout)[0]["id"] == task["id"]


def test_overdue_lists_tasks_past_due_and_sweep_escalates_them():
    start_complaint()
    assert json.loads(run("tasks", "--overdue", "--json").stdout) == []
    later = "2030-01-07T17:00:00+08:00"
    overdue = json.loads(run("tasks", "--overdue", "--now", later, "--json").stdout)
    assert len(overdue) == 1
    result = run("sweep", "--now", later)
    assert result.exit_code == 0 and "sla_breached" in result.output


def test_unknown_process_and_task_are_messages_not_tracebacks():
    result = run("start", "no_such_process")
    assert result.exit_code == 1 and "unknown process" in result.output
    result = run("complete", "T-1", "--as", "li", "--role", "front_desk")
    assert result.exit_code == 1 and "no task" in result.output


def test_bad_set_syntax_is_explained():
    result = run("start", "complaint_handling", "--set", "tier")
    assert result.exit_code == 1 and "key=value" in result.output

"""The CLI against hostile and careless input: stored text is never markup, refusals say what was
stored, `sweep` keeps the configured clock, and `demo --out` never deletes what it did not make."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.time.clock import AcceleratedClock, SystemClock
from svcflow.cli import app
from svcflow.demo import DEMO_MARKER

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
HOSTILE = "[/x] [bold]李[/bold] [a-z_]+ \\"


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "svcflow.db"
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.delenv("SVCFLOW_CLOCK", raising=False)
    monkeypatch.chdir(tmp_path)
    return db


@pytest.fixture
def hostile_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real complaint process, with markup in its name, a label and an enum choice."""
    defs = tmp_path / "defs"
    defs.mkdir()
    for other in (ROOT / "process_defs").glob("*.yaml"):  # the processes it calls (major_complaint) must be there
        (defs / other.name).write_text(other.read_text(encoding="utf-8"), encoding="utf-8")
    text = (ROOT / "process_defs" / "complaint_handling.yaml").read_text(encoding="utf-8")
    text = text.replace('en: "Complaint handling"', 'en: "Complaint [/x] handling"')
    text = text.replace("choices: [platinum, gold, silver, standard]", 'choices: [platinum, gold, silver, standard, "[/vip]"]')
    text = text.replace('label: {zh: "投诉内容", en: "Description"}', 'label: {zh: "投诉内容", en: "Description [/d]"}')
    (defs / "complaint_handling.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("SVCFLOW_PROCESS_DIR", str(defs))
    return defs


def run(*args: str):
    return runner.invoke(app, list(args))


def start_complaint(*extra: str) -> str:
    result = run("start", "complaint_handling", "--set", "customer_id=C001", "--set", "customer_name=张三",
                 "--set", "tier=gold", "--set", "category=billing", "--set", "description=多扣费", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def events_of(case_id: str) -> list[dict]:
    return json.loads(run("show", case_id, "--json").stdout)["events"]


# -- rich markup ---------------------------------------------------------------------------------------
def test_markup_in_stored_data_labels_choices_and_assignees_is_printed_literally_by_every_listing(
        hostile_library: Path):
    case_id = run("start", "complaint_handling", "--set", f"customer_name={HOSTILE}", "--set", "tier=[/vip]",
                  "--set", f"description={HOSTILE}").stdout.strip()
    task = json.loads(run("tasks", "--json").stdout)[0]
    assert run("assign", task["id"], "--to", "[/li]", "--as", "wu", "--role", "front_desk").exit_code == 0
    assert run("update", case_id, "--set", f"customer_id={HOSTILE}", "--as", "[/ops]").exit_code == 0
    listings = {name: run(*args) for name, args in {
        "tasks": ("tasks",), "show": ("show", case_id), "cases": ("cases",), "list": ("list",)}.items()}
    for name, result in listings.items():
        assert result.exit_code == 0, f"{name}: {result.output}"
        assert "MarkupError" not in result.output and "Traceback" not in result.output
    assert "[/li]" in listings["tasks"].output
    assert "[/vip]" in listings["cases"].output
    assert "Complaint [/x]" in listings["list"].output  # the name, wrapped in its cell, kept literally
    assert "[/x] [bold]李[/bold] [a-z_]+" in listings["show"].output
    done = run("complete", task["id"], "--as", "[/li]", "--role", "front_desk", "--set", "channel=phone",
               "--set", "category=billing", "--set", f"description={HOSTILE}")
    assert done.exit_code == 0, done.output
    assert "[/x]" in run("show", case_id).output


def test_error_messages_keep_bracketed_patterns_and_values():
    start_complaint()
    result = run("start", "complaint_handling", "--set", "tier=[/diamond]")
    assert result.exit_code == 1 and "[/diamond]" in result.output
    bad = Path("bad.yaml")
    bad.write_text("id: Bad-Id\nversion: 1\nname: {zh: 坏, en: Bad}\nnodes: []\nedges: []\n", encoding="utf-8")
    result = run("validate", str(bad))
    assert result.exit_code != 0 and "^[a-z][a-z0-9_]*$" in result.output


def test_an_error_echoing_a_huge_value_is_printed_shortened():
    result = run("start", "complaint_handling", "--set", "tier=" + "x" * 8_000)  # under the value limit
    assert result.exit_code == 1
    assert len(result.output) < 5_000 and "more characters" in result.output


# -- what a refusal stores --------------------------------------------------------------------------
def test_a_refused_completion_leaves_the_case_unchanged_with_one_audit_record_and_says_so():
    case_id = start_complaint()
    task = json.loads(run("tasks", "--json").stdout)[0]
    before = json.loads(run("show", case_id, "--json").stdout)["case"]
    result = run("complete", task["id"], "--as", "zhao", "--role", "billing_dept")
    assert result.exit_code == 1
    assert f"case {case_id} is unchanged; the refusal is recorded in its history" in result.output
    assert json.loads(run("show", case_id, "--json").stdout)["case"] == before
    refusals = [e for e in events_of(case_id) if e["type"] == "refused"]
    assert len(refusals) == 1 and refusals[0]["data"]["actor"] == "zhao"


def test_unreadable_input_for_a_task_is_recorded_as_that_tasks_refusal_like_engine_refusals():
    case_id = start_complaint()
    task = json.loads(run("tasks", "--json").stdout)[0]
    result = run("complete", task["id"], "--as", "li", "--role", "front_desk", "--set", "channel")
    assert result.exit_code == 1 and "key=value" in result.output and "is unchanged" in result.output
    refusals = [e for e in events_of(case_id) if e["type"] == "refused"]
    assert [(r["data"]["event"], r["data"]["actor"], r["data"]["task_id"]) for r in refusals] == [
        ("CompleteTask", "li", task["id"])]


def test_unreadable_input_for_an_unknown_task_stores_nothing_and_says_so():
    case_id = start_complaint()
    result = run("complete", "T-404", "--as", "li", "--role", "front_desk", "--set", "channel")
    assert result.exit_code == 1 and "key=value" in result.output and "nothing was stored" in result.output
    assert [e["type"] for e in events_of(case_id) if e["type"] == "refused"] == []


def test_a_refused_start_stores_nothing_and_says_so():
    result = run("start", "complaint_handling", "--set", "tier=diamond")
    assert result.exit_code == 1 and "nothing was stored" in result.output
    assert json.loads(run("cases", "--json").stdout) == []


# -- the clock ---------------------------------------------------------------------------------------
def test_sweep_without_now_uses_the_configured_clock(monkeypatch: pytest.MonkeyPatch):
    start_complaint()  # on the real clock; the configured one runs 30 days ahead of it
    clock = AcceleratedClock(SystemClock().now() + timedelta(days=30), 1.0)
    monkeypatch.setenv("SVCFLOW_CLOCK", clock.spec())
    result = run("sweep")
    assert result.exit_code == 0, result.output
    assert f"swept at {clock.now().date().isoformat()}" in result.output
    assert "sla_breached" in result.output


def test_overdue_tasks_without_now_use_the_configured_clock(monkeypatch: pytest.MonkeyPatch):
    start_complaint()
    assert json.loads(run("tasks", "--overdue", "--json").stdout) == []
    clock = AcceleratedClock(SystemClock().now() + timedelta(days=30), 1.0)
    monkeypatch.setenv("SVCFLOW_CLOCK", clock.spec())
    assert len(json.loads(run("tasks", "--overdue", "--json").stdout)) == 1


# -- demo --out ----------------------------------------------------------------------------------------
def test_demo_refuses_a_non_empty_directory_it_did_not_make_and_deletes_nothing(tmp_path: Path):
    precious = tmp_path / "work"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work", encoding="utf-8")
    result = run("demo", "--out", str(precious), "--seconds", "1")
    assert result.exit_code == 1
    assert "not empty and was not made by the demo" in result.output
    assert (precious / "thesis.tex").read_text(encoding="utf-8") == "years of work"


def test_demo_output_dir_is_marked_and_emptied_only_when_marked(tmp_path: Path):
    from svcflow.demo import claim_output_dir

    out = tmp_path / "demo-output"
    claim_output_dir(out)
    assert (out / DEMO_MARKER).is_file()
    (out / "old-report.html").write_text("stale", encoding="utf-8")
    claim_output_dir(out)
    assert sorted(p.name for p in out.iterdir()) == [DEMO_MARKER]
    (out / DEMO_MARKER).unlink()
    (out / "mine.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(Exception, match="not made by the demo"):
        claim_output_dir(out)
    assert (out / "mine.txt").exists()
    shutil.rmtree(out)


def test_demo_output_of_a_demo_from_before_the_marker_is_still_reused(tmp_path: Path):
    from svcflow.demo import claim_output_dir

    old = tmp_path / "demo-output"
    (old / "prefect-home").mkdir(parents=True)
    (old / "svcflow-demo.db").write_bytes(b"")
    claim_output_dir(old)
    assert sorted(p.name for p in old.iterdir()) == [DEMO_MARKER]

"""The weekly complaint report, on complaints driven through the in-memory engine in week 2025-W38.

Three complaints: A is resolved and closed on Tuesday; B waits at `handle` past its 3-day limit
(breached on Thursday, taken over by the department manager on Friday); C arrives on Friday evening and is not yet
registered. The report must count them per owner, department, category and cause.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.time.clock import FakeClock
from engine.run.runtime import Engine, LogNotifier
from analytics.weekly import UNASSIGNED, UNKNOWN, WeeklyReport, build_weekly, parse_week, week_bounds
from visualize.weekly import write_weekly

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2025, 9, 15, 9, 0, tzinfo=SHANGHAI)  # an ordinary week: no holidays, no make-up days
WEEK = "2025-W38"
REGISTRATION: dict[str, Any] = {"channel": "hotline", "customer_id": "C-1", "customer_name": "王磊",
                                "tier": "silver", "category": "billing", "description": "多扣费"}
NO_HANDOFF = {"handoff_technical": False, "handoff_billing": False, "handoff_logistics": False,
              "handoff_quality": False}


def do(engine: Engine, case_id: str, node: str, data: dict[str, Any], actor: str | None = None) -> None:
    task = next(t for t in engine.store.tasks(case_id=case_id) if t["node"] == node)
    engine.complete(task["id"], actor=actor or f"{task['role']}_user", role=task["role"], data=data)


def events(engine: Engine) -> list[Any]:
    return [*engine.store.events(process_id="complaint_handling"), *engine.store.events(process_id="major_complaint")]


@pytest.fixture(scope="module")
def report() -> WeeklyReport:
    clock = FakeClock(MONDAY)
    engine = Engine.in_memory(clock=clock, notifier=LogNotifier())
    a = engine.start("complaint_handling", {"tier": "silver"}, case_id="A")
    b = engine.start("complaint_handling", {"tier": "silver"}, case_id="B")
    do(engine, a, "register", REGISTRATION)
    do(engine, a, "assign_owner", {"owner": "li.na"})
    do(engine, a, "first_contact", {"contact_made": True, "acknowledgement": "已致歉"})
    do(engine, a, "handle", {"handling_notes": "核查", **NO_HANDOFF}, actor="li.na")
    do(engine, a, "reply_customer", {"reply_summary": "退费", "resolution_type": "refund"})
    engine.send_message(a, "customer_reply", {"accepted": True}, actor="customer")
    do(engine, a, "close", {"closure_summary": "已退费"})
    do(engine, a, "record_analysis", {"cause_category": "system_fault", "root_cause": "计费规则"})
    do(engine, b, "register", {**REGISTRATION, "category": "delivery"})
    do(engine, b, "assign_owner", {"owner": "wang.fang"})
    do(engine, b, "first_contact", {"contact_made": True, "acknowledgement": "已致歉"})
    clock.set(datetime(2025, 9, 16, 10, 0, tzinfo=SHANGHAI))
    engine.sweep()  # A's return-visit timer
    do(engine, a, "return_visit", {"satisfaction": 5})
    clock.set(datetime(2025, 9, 19, 17, 30, tzinfo=SHANGHAI))
    engine.sweep()  # B's handling limit (3 working days) was missed on Thursday
    engine.start("complaint_handling", {}, case_id="C")
    return build_weekly(events(engine), WEEK, SHANGHAI)


def test_week_runs_monday_to_monday_in_the_managers_zone() -> None:
    start, end = week_bounds(*parse_week(WEEK), SHANGHAI)
    assert (start.isoformat(), end.isoformat()) == ("2025-09-15T00:00:00+08:00", "2025-09-22T00:00:00+08:00")


def test_totals_count_open_closed_overdue_escalated_and_new(report: WeeklyReport) -> None:
    t = report.total
    assert (t.open, t.closed, t.overdue, t.escalated, t.new) == (2, 1, 1, 1, 3)


def test_owner_is_who_handled_the_complaint_or_the_assigned_owner(report: WeeklyReport) -> None:
    assert {owner: (c.open, c.closed, c.overdue) for owner, c in report.by_owner.items()} == {
        "li.na": (0, 1, 0), "wang.fang": (1, 0, 1), UNASSIGNED: (1, 0, 0)}


def test_department_is_the_role_holding_the_handling_task_or_where_the_case_waits(report: WeeklyReport) -> None:
    # B's handling task went to the department manager at 150 % of its limit (the ladder's reassign)
    assert {d: (c.open, c.closed) for d, c in report.by_department.items()} == {
        "complaint_handler": (0, 1), "department_manager": (1, 0), "front_desk": (1, 0)}


def test_category_comes_from_the_registration(report: WeeklyReport) -> None:
    assert {k: (c.open, c.closed) for k, c in report.by_category.items()} == {
        "billing": (0, 1), "delivery": (1, 0), "other": (1, 0)}


def test_cause_is_recorded_by_the_analysis_and_unknown_while_open(report: WeeklyReport) -> None:
    assert {k: (c.open, c.closed) for k, c in report.by_cause.items()} == {
        "system_fault": (0, 1), UNKNOWN: (2, 0)}


def test_overdue_list_names_the_case_and_where_it_waits(report: WeeklyReport) -> None:
    overdue = [r for r in report.rows if r.overdue]
    assert [(r.case_id, r.waiting_at) for r in overdue] == [("B", "handle (department_manager)")]
    assert overdue[0].escalated and overdue[0].escalation_level >= 3


def test_a_major_complaint_counts_once_under_the_complaint() -> None:
    clock = FakeClock(MONDAY)
    engine = Engine.in_memory(clock=clock, notifier=LogNotifier())
    case_id = engine.start("complaint_handling", {"tier": "gold"}, case_id="D")
    do(engine, case_id, "register", {**REGISTRATION, "tier": "gold", "is_journalist": True})
    assert engine.case(case_id).children  # the crisis path runs as a child case
    report = build_weekly(events(engine), WEEK, SHANGHAI)
    assert [(r.case_id, r.major) for r in report.rows] == [("D", True)]
    assert list(report.by_process) == ["complaint_handling"]


def test_write_weekly_writes_markdown_and_html(report: WeeklyReport, tmp_path: Path) -> None:
    md, html = write_weekly(report, tmp_path)
    assert md.name == "complaints-2025-W38.md" and html.name == "complaints-2025-W38.html"
    text = md.read_text(encoding="utf-8")
    assert "| **total** | 2 | 1 | 1 | 1 | 3 |" in text
    assert "| wang.fang | 1 | 0 | 1 | 1 | 1 |" in text
    page = html.read_text(encoding="utf-8")
    assert 'id="by_owner"' in page and 'id="overdue-table"' in page and "http" not in page


def test_report_weekly_command_writes_both_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from engine.definition.library import ProcessLibrary
    from engine.store.sql import Store
    from svcflow.cli import app

    url = f"sqlite:///{tmp_path / 'svcflow.db'}"
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", url)
    engine = Engine(Store(url), ProcessLibrary.from_dir(), clock=FakeClock(MONDAY), notifier=LogNotifier())
    case_id = engine.start("complaint_handling", {"tier": "gold"}, case_id="E")
    do(engine, case_id, "register", REGISTRATION)
    engine.store.dispose()
    result = CliRunner().invoke(app, ["report", "weekly", "--week", WEEK, "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "2025-W38: 1 open, 0 closed" in result.output
    assert (tmp_path / "out" / "complaints-2025-W38.md").exists()
    assert (tmp_path / "out" / "complaints-2025-W38.html").exists()


def test_report_weekly_refuses_a_bad_week(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from svcflow.cli import app

    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'svcflow.db'}")
    result = CliRunner().invoke(app, ["report", "weekly", "--week", "2025-39"])
    assert result.exit_code == 1 and "2025-W39" in result.output and "Traceback" not in result.output

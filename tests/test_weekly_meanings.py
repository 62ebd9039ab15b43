"""The weekly report in a manager's words, checked on a log written by hand (week 2025-W38, 15–21 September).

open     = not yet closed with the customer at the end of the week (closing = the `close` step done);
overdue  = open and past due at the end of the week (a clock still running past its due time);
closed   = closed with the customer during the week; each count beside last week's (W37).

  P  W37 Wed started, closed with the customer W37 Fri, return visit still to come  -> not W38 business
  Q  W37 Mon started, its `handle` clock due W37 Thu, closed with the customer W38 Tue  -> closed in W38
  R  W38 Mon started, `handle` breached Tue and done late Wed; resolution clock due next week
                                                                      -> open, NOT overdue (the breach is over)
  S  W38 Mon started, `handle` due W38 Thu and still running           -> open, overdue
  T  W37 Mon started, closed W37 Thu, dissatisfied return visit reopens it W38 Wed -> open again
  M  W38 Mon started, handed over as major; the major complaint closes with the customer W38 Thu
                                                                      -> closed in W38, counted once
W38: open 3 (R S T), closed 2 (Q M), overdue 1 (S), new 3 (R S M).
W37: open 1 (Q, overdue), closed 2 (P T), overdue 1, new 3 (P Q T).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from analytics.weekly import WeeklyReport, analysis, build_weekly
from engine.run.log import LogEntry
from visualize.weekly import trend_rows, weekly_html, weekly_markdown

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int = 10) -> datetime:
    """September 2025 in Shanghai: the 8th is W37's Monday, the 15th W38's."""
    return datetime(2025, 9, day, hour, 0, tzinfo=SHANGHAI)


class Log:
    def __init__(self) -> None:
        self.events: list[LogEntry] = []

    def add(self, case: str, when: datetime, type_: str, node: str | None = None,
            proc: str = "complaint_handling", **data: Any) -> None:
        self.events.append(LogEntry(case, proc, len(self.events) + 1, when, type_, node, data))

    def start(self, case: str, when: datetime, category: str, process: str = "complaint_handling",
              parent: str | None = None) -> None:
        self.add(case, when, "case_started", None, process, data={"category": category, "tier": "silver"},
                 parent_case=parent, actor=None)

    def task(self, case: str, node: str, opened: datetime, due: datetime, done: datetime | None = None,
             role: str = "complaint_handler", process: str = "complaint_handling", late: bool = False) -> None:
        task_id = f"{case}-{node}"
        self.add(case, opened, "node_entered", node, process, token="t1", kind="human")
        self.add(case, opened, "sla_started", node, process, clock=f"task:{task_id}", target="1d",
                 due_at=due.isoformat())
        self.add(case, opened, "task_opened", node, process, task_id=task_id, role=role, due_at=due.isoformat(),
                 priority="normal")
        if late:
            self.add(case, due, "sla_breached", node, process, clock=f"task:{task_id}", percent=100, level=1,
                     due=due.isoformat())
        if done is not None:
            self.add(case, done, "task_completed", node, process, task_id=task_id, actor=f"{role}_user", role=role,
                     output={})
            self.add(case, done, "sla_met", node, process, clock=f"task:{task_id}", in_time=not late)


def week_log() -> list[LogEntry]:
    log = Log()
    log.start("P", at(10), "billing")
    log.task("P", "close", at(12), at(13), done=at(12, 15))
    log.start("Q", at(8), "delivery")
    log.task("Q", "handle", at(8), at(11))  # due W37 Thu, still running at the end of W37
    log.add("Q", at(15), "task_completed", "handle", task_id="Q-handle", actor="x", role="complaint_handler",
            output={})
    log.add("Q", at(15), "sla_met", "handle", clock="task:Q-handle", in_time=False)
    log.task("Q", "close", at(16), at(17), done=at(16, 11))
    log.start("R", at(15), "billing")
    log.add("R", at(15), "sla_started", None, clock="case:resolution", target="5d", due_at=at(22).isoformat())
    log.task("R", "handle", at(15), at(16), done=at(17), late=True)
    log.start("S", at(15), "billing")
    log.task("S", "handle", at(15), at(18))
    log.start("T", at(8), "delivery")
    log.task("T", "close", at(11), at(12), done=at(11, 11))
    log.add("T", at(17), "node_entered", "handle", token="t1", kind="human")  # reopened
    log.start("M", at(15), "policy")
    log.add("M", at(15), "subprocess_started", "handle_major", "complaint_handling", process="major_complaint",
            child_case="M-1")
    log.start("M-1", at(15), "policy", process="major_complaint", parent="M")
    log.task("M-1", "close_case", at(18), at(19), done=at(18, 16), role="crisis_team", process="major_complaint")
    return sorted(log.events, key=lambda e: (e.at, e.seq))


@pytest.fixture(scope="module")
def report() -> WeeklyReport:
    return build_weekly(week_log(), "2025-W38", SHANGHAI)


def test_open_means_not_yet_closed_with_the_customer(report: WeeklyReport) -> None:
    assert sorted(r.case_id for r in report.rows if r.open) == ["R", "S", "T"]


def test_a_complaint_closed_with_the_customer_last_week_is_not_this_weeks_business(report: WeeklyReport) -> None:
    assert "P" not in {r.case_id for r in report.rows}


def test_closed_counts_closing_with_the_customer_in_the_week_including_the_major_path(report: WeeklyReport) -> None:
    assert sorted(r.case_id for r in report.rows if r.closed_in_week) == ["M", "Q"]


def test_overdue_means_past_due_at_the_end_of_the_week_not_ever_breached(report: WeeklyReport) -> None:
    assert [r.case_id for r in report.rows if r.overdue] == ["S"]


def test_totals_against_hand_counts(report: WeeklyReport) -> None:
    t = report.total
    assert (t.open, t.closed, t.overdue, t.escalated, t.new) == (3, 2, 1, 0, 3)


def test_last_week_is_counted_from_the_same_log(report: WeeklyReport) -> None:
    before = report.trend("total")
    assert before is not None
    assert (before.open, before.closed, before.overdue, before.new) == (1, 2, 1, 3)


def test_trend_rows_show_this_week_last_week_and_the_change(report: WeeklyReport) -> None:
    rows = {row[0].split()[0]: row[1:] for row in trend_rows(report)}
    assert rows["未结"] == [3, 1, "+2"] and rows["逾期"] == [1, 1, "±0"] and rows["新增"] == [3, 3, "±0"]


def test_categories_and_roles_are_named_from_the_definitions(report: WeeklyReport) -> None:
    page = weekly_markdown(report)
    assert "| 计费收费 Billing (billing) | 2 | 0 | 1 | 0 | 2 |" in page
    assert report.labels.of("cause", "system_fault") == "系统故障 System fault"
    assert report.labels.of("role", "complaint_handler") == "投诉专责人 Complaint owner"


def test_the_analysis_paragraph_sums_up_the_week_in_both_languages(report: WeeklyReport) -> None:
    zh, en = analysis(report)
    assert zh.startswith("本周新增投诉3件（较上周±0），结案2件（较上周±0）；周末未结3件（较上周+2），其中逾期1件（较上周±0）")
    assert "投诉专责人 Complaint owner（1件）" in zh and "计费收费 Billing类为主（2件）" in zh
    assert en.startswith("3 new complaint(s) (±0 on last week) and 2 closed with the customer")
    assert zh in weekly_html(report)

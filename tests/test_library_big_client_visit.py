"""big_client_visit (大客户拜访): every branch driven to an end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine.run.handlers import HandlerContext, default_registry
from tests.test_library_common import Driver, driver, library, parameters  # noqa: F401  (driver: the fixture)
from tests.test_library_complaint_handling import run_ordinary_complaint

PROCESS = "big_client_visit"

CLIENT: dict[str, Any] = {
    "customer_id": "BC-001",
    "customer_name": "晋煤集团",
    "tier": "platinum",
    "annual_volume_tonnes": 2_500_000,
    "annual_freight_yuan": 180_000_000,
    "fulfilment_rate": 0.97,
    "open_complaints": 1,
}
NOTHING_FOUND = {"customer_needs": "增加月计划运力", "has_complaints": False, "has_opportunities": False}


def plan_book_and_visit(d: Driver, case_id: str) -> None:
    d.do(case_id, "plan_visit", {"customer_id": "BC-001", "customer_name": "晋煤集团", "territory": "太原",
                                 "visit_goals": "了解下季度运输需求"})
    appointment = d.clock.now() + timedelta(days=2, hours=1)
    d.do(case_id, "book_appointment", {"appointment_at": appointment.isoformat(), "contact_person": "刘经理"})
    assert d.open_nodes(case_id) == []  # prepared automatically, now waiting for the appointment
    d.fire_timer(case_id)
    assert d.clock.now() >= appointment
    d.do(case_id, "visit", {"met_with": "刘经理、运输科长", "visit_summary": "座谈运输需求"})


def test_visit_without_follow_ups_updates_the_archive(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    plan_book_and_visit(driver, case_id)
    driver.do(case_id, "record_visit", NOTHING_FOUND)
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "visited")
    assert view.data["client_grade"] == "core"
    assert view.data["is_big_client"] is True
    assert view.data["archive_record_id"].startswith("VA-")
    assert view.data["next_visit_in_days"] == 30
    assert "open_complaint" not in view.path() and "sales_follow_up" not in view.path()


def test_preparation_briefs_from_the_archive_before_the_visit(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    driver.do(case_id, "plan_visit", {"customer_id": "BC-001", "customer_name": "晋煤集团", "territory": "太原",
                                      "visit_goals": "回访"})
    driver.do(case_id, "book_appointment", {"appointment_at": (driver.clock.now() + timedelta(days=3)).isoformat(),
                                            "contact_person": "刘经理"})
    data = driver.state(case_id).data
    assert "open_complaints:1" in data["visit_focus"]
    assert "晋煤集团" in data["briefing"]
    driver.advance(timedelta(days=1))
    assert driver.open_nodes(case_id) == []  # the visit task opens only at the appointment


def test_complaint_raised_on_a_visit_becomes_a_complaint_case(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    plan_book_and_visit(driver, case_id)
    driver.do(case_id, "record_visit", {**NOTHING_FOUND, "has_complaints": True, "complaint_category": "delivery",
                                        "complaint_description": "车皮到站延误"})
    child = driver.child(case_id)
    child_state = driver.state(child)
    assert child_state.process_id == "complaint_handling"
    assert child_state.data["channel"] == "visit"
    assert child_state.data["category"] == "delivery"
    assert child_state.data["tier"] == "platinum"
    assert driver.open_nodes(case_id) == []
    run_ordinary_complaint(driver, child, channel="visit", category="delivery", tier="platinum",
                           customer_id="BC-001", customer_name="晋煤集团", description="车皮到站延误")
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "visited")
    assert view.data["complaint_result"] == "closed"


def test_opportunity_goes_to_sales(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    plan_book_and_visit(driver, case_id)
    driver.do(case_id, "record_visit", {**NOTHING_FOUND, "has_opportunities": True,
                                        "opportunity_description": "新增集装箱业务", "opportunity_value": 3_000_000})
    assert driver.task(case_id, "sales_follow_up")["role"] == "sales_dept"
    driver.do(case_id, "sales_follow_up", {"sales_owner": "陈", "opportunity_stage": "qualified"})
    assert driver.case(case_id).outcome == "visited"
    assert driver.children(case_id) == []


def test_complaint_and_opportunity_are_followed_up_in_parallel(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    plan_book_and_visit(driver, case_id)
    driver.do(case_id, "record_visit", {**NOTHING_FOUND, "has_complaints": True, "has_opportunities": True,
                                        "complaint_description": "结算慢"})
    child = driver.child(case_id)
    assert driver.open_nodes(case_id) == ["sales_follow_up"]
    driver.do(case_id, "sales_follow_up", {"sales_owner": "陈", "opportunity_stage": "proposal_sent"})
    assert driver.case(case_id).status == "running"  # the join waits for the complaint case
    run_ordinary_complaint(driver, child, channel="visit", tier="platinum")
    assert driver.case(case_id).outcome == "visited"


def test_overdue_planning_escalates_to_the_key_account_supervisor(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    driver.reach(case_id, "plan_visit", 200)
    notes = driver.notified(case_id)
    assert ("warned", ("account_manager",), 75) in notes
    assert ("breached", ("key_account_supervisor",), 100) in notes
    assert driver.task(case_id, "plan_visit")["role"] == "key_account_supervisor"


def test_visits_are_scheduled_monthly_for_platinum_and_quarterly_for_gold() -> None:
    schedules = {s.id: s for s in library().latest[PROCESS].definition.schedules}
    assert schedules["platinum_monthly"].every == "30d"
    assert schedules["platinum_monthly"].data == {"tier": "platinum", "visit_type": "scheduled"}
    assert schedules["gold_quarterly"].every == "90d"
    assert schedules["gold_quarterly"].data["tier"] == "gold"


def test_scheduled_visit_starts_from_the_schedule_data(driver: Driver) -> None:
    schedule = library().latest[PROCESS].definition.schedules[0]
    case_id = driver.start(PROCESS, schedule.data)
    assert driver.open_nodes(case_id) == ["plan_visit"]
    assert driver.state(case_id).priority == "high"


# -- handlers ---------------------------------------------------------------------------------------

PARAMS = parameters(PROCESS)


def run(name: str, data: dict[str, Any], key: str = "c:t1:n:1") -> dict[str, Any]:
    context = HandlerContext("c", PROCESS, "n", 1, key, data, PARAMS)
    return dict(default_registry().get(name)(context) or {})


@pytest.mark.parametrize(("data", "grade", "big"), [
    ({"annual_volume_tonnes": 1_200_000, "fulfilment_rate": 0.99}, "core", True),
    ({"annual_freight_yuan": 150_000_000, "fulfilment_rate": 0.80}, "key", True),
    ({"annual_volume_tonnes": 400_000}, "key", False),
    ({"annual_volume_tonnes": 50_000}, "general", False),
])
def test_archive_grades_core_key_general(data: dict[str, Any], grade: str, big: bool) -> None:
    result = run("visits.load_archive", data)
    assert (result["client_grade"], result["is_big_client"]) == (grade, big)


def test_archive_record_id_is_stable_for_the_same_step_and_differs_between_steps() -> None:
    first = run("visits.update_archive", {"tier": "gold"}, key="c:t9:update_archive:1")
    again = run("visits.update_archive", {"tier": "gold"}, key="c:t9:update_archive:1")
    other = run("visits.update_archive", {"tier": "gold"}, key="c:t9:update_archive:2")
    assert first == again
    assert first["archive_record_id"] != other["archive_record_id"]
    assert first["next_visit_in_days"] == 90

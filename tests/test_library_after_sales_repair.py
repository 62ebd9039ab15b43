"""after_sales_repair (故障报修): every branch driven to an end."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from engine.run.handlers import HandlerContext, default_registry
from tests.test_library_common import Driver, driver, parameters  # noqa: F401  (driver: the fixture)
from tests.test_library_complaint_handling import run_ordinary_complaint

PROCESS = "after_sales_repair"
CALL: dict[str, Any] = {
    "caller_name": "孙先生", "phone": "13800000000", "address": "东城区和平路 12 号", "district": "east",
    "area_type": "urban", "fault_type": "outage", "fault_description": "整栋楼停电", "affected_households": 40,
    "safety_risk": False,
}


def receive(d: Driver, **call: Any) -> str:
    case_id = d.start(PROCESS, {"tier": "standard"})
    d.do(case_id, "receive_call", {**CALL, **call})
    return case_id


def dispatch_and_repair(d: Driver, case_id: str, restored: bool) -> None:
    d.do(case_id, "dispatch", {"crew_id": d.state(case_id).data["crew_id"], "dispatch_note": "带发电车"})
    d.do(case_id, "arrive_on_site", {"on_site_diagnosis": "变压器熔断器熔断"})
    d.do(case_id, "repair", {"repair_actions": "更换熔断器", "service_restored": restored})


def confirm_report_and_visit(d: Driver, case_id: str, satisfaction: int) -> None:
    d.do(case_id, "restore_service", {"restoration_confirmed": True,
                                      "restored_at": d.clock.now().isoformat()})
    d.do(case_id, "report_back", {"customer_informed": True, "report_note": "已恢复供电"})
    d.fire_timer(case_id)
    d.do(case_id, "return_visit", {"satisfaction": satisfaction})


def test_outage_is_classified_routed_repaired_reported_and_visited(driver: Driver) -> None:
    case_id = receive(driver)
    data = driver.state(case_id).data
    assert (data["severity"], data["specialty"], data["crew_id"]) == ("major", "line", "east_line_1")
    assert driver.task(case_id, "dispatch")["role"] == "dispatcher"
    dispatch_and_repair(driver, case_id, restored=True)
    confirm_report_and_visit(driver, case_id, 5)
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "repaired")
    assert view.data["dispatch_count"] == 1
    assert view.state.clocks["case:restoration"].status == "met"
    assert view.children == []


def test_unrestored_fault_is_dispatched_again(driver: Driver) -> None:
    case_id = receive(driver)
    dispatch_and_repair(driver, case_id, restored=False)
    assert driver.open_nodes(case_id) == ["dispatch"]
    dispatch_and_repair(driver, case_id, restored=True)
    assert driver.state(case_id).data["dispatch_count"] == 2
    confirm_report_and_visit(driver, case_id, 4)
    assert driver.case(case_id).outcome == "repaired"


def test_fault_still_down_after_the_dispatches_gets_an_emergency_plan(driver: Driver) -> None:
    case_id = receive(driver)
    for _ in range(2):  # params.max_dispatches
        dispatch_and_repair(driver, case_id, restored=False)
    task = driver.task(case_id, "emergency_plan")
    assert (task["role"], task["priority"]) == ("repair_supervisor", "urgent")
    driver.do(case_id, "emergency_plan", {"temporary_supply": True, "plan": "发电车临时供电,明日更换变压器"})
    confirm_report_and_visit(driver, case_id, 4)
    assert driver.case(case_id).outcome == "repaired"


def test_dissatisfied_customer_after_the_repair_opens_a_complaint(driver: Driver) -> None:
    case_id = receive(driver)
    dispatch_and_repair(driver, case_id, restored=True)
    confirm_report_and_visit(driver, case_id, 2)
    child = driver.child(case_id)
    child_data = driver.state(child).data
    assert driver.state(child).process_id == "complaint_handling"
    assert (child_data["channel"], child_data["category"], child_data["customer_name"]) == (
        "hotline", "technical_fault", "孙先生")
    run_ordinary_complaint(driver, child, satisfaction=4, channel="hotline", category="technical_fault")
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "repaired")
    assert view.data["complaint_satisfaction"] == 4


@pytest.mark.parametrize(("area", "target"), [("urban", "45m"), ("suburban", "1h 30m"), ("rural", "2h")])
def test_arrival_limit_depends_on_the_area(driver: Driver, area: str, target: str) -> None:
    case_id = receive(driver, area_type=area)
    driver.do(case_id, "dispatch", {"crew_id": "east_line_1"})
    assert driver.clock_of(case_id, "arrive_on_site").target_text == target


def test_late_arrival_escalates_to_the_repair_supervisor(driver: Driver) -> None:
    case_id = receive(driver)
    driver.do(case_id, "dispatch", {"crew_id": "east_line_1"})
    driver.reach(case_id, "arrive_on_site", 150)
    notes = [(k, r, p) for k, r, p in driver.notified(case_id)]
    assert ("warned", ("dispatcher",), 50) in notes
    assert ("breached", ("repair_supervisor",), 100) in notes
    assert ("escalated", ("department_manager",), 150) in notes
    assert driver.task(case_id, "arrive_on_site")["priority"] == "urgent"


def test_safety_hazard_is_critical_urgent_and_must_be_restored_within_four_hours(driver: Driver) -> None:
    case_id = driver.start(PROCESS, {"safety_risk": True})
    assert driver.state(case_id).priority == "urgent"
    driver.do(case_id, "receive_call", {**CALL, "fault_type": "safety_hazard", "safety_risk": True,
                                        "affected_households": 1})
    state = driver.state(case_id)
    assert state.data["severity"] == "critical"
    assert state.clocks["case:restoration"].target_text == "4h"
    assert driver.clock_of(case_id, "dispatch").target_text == "10m"


def test_restoration_clock_breach_notifies_the_supervisor(driver: Driver) -> None:
    case_id = receive(driver, fault_type="meter_fault", affected_households=1)
    assert driver.state(case_id).clocks["case:restoration"].target_text == "1d"
    driver.reach(case_id, "case:restoration", 100)
    assert ("breached", ("repair_supervisor",), 100) in driver.notified(case_id)


# -- classification and routing handlers ------------------------------------------------------------------

PARAMS = parameters(PROCESS)


def run(name: str, data: dict[str, Any]) -> dict[str, Any]:
    context = HandlerContext("c", PROCESS, "n", 1, "k", data, PARAMS)
    return dict(default_registry().get(name)(context) or {})


@pytest.mark.parametrize(("data", "severity", "specialty"), [
    ({"fault_type": "safety_hazard"}, "critical", "line"),
    ({"fault_type": "meter_fault", "safety_risk": True}, "critical", "metering"),
    ({"fault_type": "partial_outage", "affected_households": 150}, "critical", "line"),
    ({"fault_type": "equipment_damage", "affected_households": 1}, "major", "substation"),
    ({"fault_type": "voltage_problem", "affected_households": 12}, "major", "substation"),
    ({"fault_type": "meter_fault", "affected_households": 1}, "minor", "metering"),
    ({"fault_type": "other"}, "minor", "general"),
])
def test_fault_classification(data: dict[str, Any], severity: str, specialty: str) -> None:
    result = run("repair.classify_fault", data)
    assert (result["severity"], result["specialty"]) == (severity, specialty)


@pytest.mark.parametrize(("district", "specialty", "crew"), [
    ("east", "metering", "east_meter_1"),
    ("West", "substation", "west_sub_1"),
    ("county", "metering", "county_general_1"),
    ("harbour", "line", "central_line_1"),
])
def test_routing_by_district_and_specialty(district: str, specialty: str, crew: str) -> None:
    assert run("repair.route_to_crew", {"district": district, "specialty": specialty})["crew_id"] == crew


def test_restored_at_is_a_date_time_with_zone(driver: Driver) -> None:
    case_id = receive(driver)
    dispatch_and_repair(driver, case_id, restored=True)
    from engine.errors import InputError

    with pytest.raises(InputError):
        driver.do(case_id, "restore_service", {"restoration_confirmed": True, "restored_at": "2025-09-15 10:00"})
    driver.do(case_id, "restore_service", {"restoration_confirmed": True,
                                           "restored_at": datetime(2025, 9, 15, 11, 0).astimezone().isoformat()})
    assert driver.open_nodes(case_id) == ["report_back"]

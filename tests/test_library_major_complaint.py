"""major_complaint (重大投诉处理): every branch driven to an end, started on its own as a case."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_library_common import Driver, driver  # noqa: F401  (the fixture)

PROCESS = "major_complaint"

BASE: dict[str, Any] = {
    "complaint_case_id": "CH-0001",
    "customer_id": "C-2001",
    "customer_name": "赵女士",
    "tier": "silver",
    "category": "product_quality",
    "description": "产品质量问题导致损失",
    "claimed_compensation": 20000,
    "major_reasons": ["high_compensation_claim"],
}


def respond(d: Driver, case_id: str, *, wish: str = "none", public: bool = False) -> None:
    d.do(case_id, "immediate_response", {"facts_clear": False, "apology_given": "general",
                                         "timetable": "明天中午前给出结论", "customer_wish": wish,
                                         "is_public": public})


def investigate(d: Driver, case_id: str, at_fault: bool) -> None:
    d.do(case_id, "investigate", {"company_at_fault": at_fault, "findings": "批次质量问题"})


REBUILD = {"publicity_plan": "正面宣传与质量开放日", "focus_regions": "华东", "image_outcome": "recovering"}


def finish(d: Driver, case_id: str) -> None:
    d.do(case_id, "follow_up", {"customer_attitude": "restored"})
    d.do(case_id, "close_case", {"closure_result": "resolved", "closure_summary": "已处理"})
    if d.open_nodes(case_id) == ["rebuild_image"]:  # a public crisis: phase three, rebuild the image
        d.do(case_id, "rebuild_image", REBUILD)
    d.do(case_id, "lessons_learned", {"cause_category": "product_defect", "root_cause": "来料检验缺失",
                                      "lessons": "加强来料检验"})


def test_at_fault_case_is_corrected_compensated_apologised_and_closed(driver: Driver) -> None:
    case_id = driver.start(PROCESS, BASE)
    respond(driver, case_id)
    investigate(driver, case_id, at_fault=True)
    assert driver.open_nodes(case_id) == ["corrective_action"]
    driver.do(case_id, "corrective_action", {"corrective_measures": "召回并更换", "compensation_amount": 5000})
    assert driver.open_nodes(case_id) == ["apology_oral"]  # not public: no media statement
    driver.do(case_id, "apology_oral", {"apology_done": True})
    finish(driver, case_id)
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "closed")
    assert view.data["compensation_amount"] == 5000
    assert "approve_compensation" not in view.path()
    assert view.state.clocks["case:first_response"].status == "met"


def test_compensation_above_the_limit_needs_the_service_director(driver: Driver) -> None:
    case_id = driver.start(PROCESS, BASE)
    respond(driver, case_id)
    investigate(driver, case_id, at_fault=True)
    driver.do(case_id, "corrective_action", {"corrective_measures": "赔偿", "compensation_amount": 80000})
    task = driver.task(case_id, "approve_compensation")
    assert task["role"] == "service_director"
    driver.do(case_id, "approve_compensation", {"compensation_amount": 60000, "approval_note": "酌减"})
    driver.do(case_id, "apology_oral", {"apology_done": True})
    finish(driver, case_id)
    assert driver.case(case_id).data["compensation_amount"] == 60000
    assert driver.case(case_id).outcome == "closed"


def test_not_at_fault_gathers_evidence_and_third_party_support(driver: Driver) -> None:
    case_id = driver.start(PROCESS, BASE)
    respond(driver, case_id)
    investigate(driver, case_id, at_fault=False)
    assert driver.task(case_id, "gather_evidence")["role"] == "legal_quality"
    driver.do(case_id, "gather_evidence", {"evidence": "检测报告", "third_party": "testing_agency",
                                           "third_party_statement": "质检合格"})
    driver.do(case_id, "apology_oral", {"apology_done": True})
    finish(driver, case_id)
    path = driver.path(case_id)
    assert "corrective_action" not in path and "gather_evidence" in path
    assert driver.case(case_id).outcome == "closed"


@pytest.mark.parametrize(("data", "wish", "apology", "role"), [
    ({"is_vip": True}, "none", "apology_in_person", "senior_management"),
    ({"tier": "platinum"}, "none", "apology_in_person", "senior_management"),
    ({"strong_emotion": True}, "none", "apology_in_person", "senior_management"),
    ({}, "in_person", "apology_in_person", "senior_management"),
    ({}, "written", "apology_written", "crisis_team"),
    ({}, "oral", "apology_oral", "crisis_team"),
    ({}, "none", "apology_oral", "crisis_team"),
])
def test_apology_form_follows_status_and_wish(driver: Driver, data: dict[str, Any], wish: str, apology: str,
                                              role: str) -> None:
    case_id = driver.start(PROCESS, {**BASE, **data})
    respond(driver, case_id, wish=wish)
    investigate(driver, case_id, at_fault=False)
    driver.do(case_id, "gather_evidence", {"evidence": "x", "third_party": "none"})
    assert driver.open_nodes(case_id) == [apology]
    assert driver.task(case_id, apology)["role"] == role
    forms = {"apology_in_person": {"apology_done": True, "apologised_by": "副总经理"},
             "apology_written": {"apology_done": True, "letter_reference": "L-9"},
             "apology_oral": {"apology_done": True}}
    driver.do(case_id, apology, forms[apology])
    finish(driver, case_id)
    assert driver.case(case_id).outcome == "closed"


def test_public_case_gets_a_public_apology_and_one_voice_to_the_media_in_parallel(driver: Driver) -> None:
    case_id = driver.start(PROCESS, BASE)
    respond(driver, case_id, public=True)
    investigate(driver, case_id, at_fault=True)
    driver.do(case_id, "corrective_action", {"corrective_measures": "整改", "compensation_amount": 0})
    assert driver.open_nodes(case_id) == ["apology_public", "media_statement"]
    assert driver.task(case_id, "media_statement")["role"] == "spokesperson"
    driver.do(case_id, "media_statement", {"statement": "统一口径", "media_contacted": ["晚报"]})
    assert driver.open_nodes(case_id) == ["apology_public"]  # the join waits for the apology
    driver.do(case_id, "apology_public", {"apology_done": True, "notice_text": "致歉声明"})
    assert driver.open_nodes(case_id) == ["follow_up"]
    driver.do(case_id, "follow_up", {"customer_attitude": "restored"})
    driver.do(case_id, "close_case", {"closure_result": "resolved", "closure_summary": "已处理"})
    assert driver.open_nodes(case_id) == ["rebuild_image"]
    assert driver.task(case_id, "rebuild_image")["role"] == "spokesperson"
    finish_after_rebuild = {"cause_category": "product_defect", "root_cause": "x", "lessons": "y"}
    driver.do(case_id, "rebuild_image", REBUILD)
    driver.do(case_id, "lessons_learned", finish_after_rebuild)
    assert driver.case(case_id).outcome == "closed"


def test_media_threat_alone_triggers_the_media_statement(driver: Driver) -> None:
    case_id = driver.start(PROCESS, {**BASE, "media_threat": True})
    respond(driver, case_id)
    investigate(driver, case_id, at_fault=False)
    driver.do(case_id, "gather_evidence", {"evidence": "x", "third_party": "expert"})
    assert driver.open_nodes(case_id) == ["apology_oral", "media_statement"]


def test_major_complaint_is_urgent_and_its_first_response_limit_is_one_hour(driver: Driver) -> None:
    case_id = driver.start(PROCESS, BASE)
    state = driver.state(case_id)
    assert state.priority == "urgent"
    assert state.clocks["case:first_response"].target_text == "1h"
    assert state.clocks["case:resolution"].target_text == "2d"
    assert driver.task(case_id, "immediate_response")["priority"] == "urgent"


def test_platinum_major_complaint_must_be_resolved_within_a_day(driver: Driver) -> None:
    case_id = driver.start(PROCESS, {**BASE, "tier": "platinum"})
    assert driver.state(case_id).clocks["case:resolution"].target_text == "1d"


def test_every_step_escalates_straight_to_the_service_director(driver: Driver) -> None:
    case_id = driver.start(PROCESS, BASE)
    respond(driver, case_id)
    driver.reach(case_id, "investigate", 150)
    notes = [(n.kind, n.roles, n.percent) for cid, n in driver.notifier.sent
             if cid == case_id and n.clock.startswith("task:")]
    assert notes == [("warned", ("crisis_team",), 50), ("breached", ("service_director",), 100),
                     ("escalated", ("service_director",), 150)]
    task = driver.task(case_id, "investigate")
    assert task["role"] == "service_director"
    driver.do(case_id, "investigate", {"company_at_fault": False, "findings": "总监调查"}, role="service_director")
    assert driver.open_nodes(case_id) == ["gather_evidence"]


def test_missed_immediate_response_notifies_the_service_director(driver: Driver) -> None:
    case_id = driver.start(PROCESS, BASE)
    driver.reach(case_id, "case:first_response", 100)
    assert ("breached", ("service_director",), 100) in driver.notified(case_id)
    assert driver.state(case_id).clocks["case:first_response"].breached

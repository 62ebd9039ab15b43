"""big_client_return_visit (大客户回访): every branch driven to an end."""

from __future__ import annotations

from typing import Any

import pytest

from engine.run.handlers import HandlerContext, default_registry
from tests.test_library_common import Driver, driver, library, parameters  # noqa: F401  (driver: the fixture)
from tests.test_library_complaint_handling import run_ordinary_complaint

PROCESS = "big_client_return_visit"
CLIENT = {"customer_id": "BC-002", "customer_name": "华能电厂", "tier": "gold", "visit_reason": "after_service",
          "related_case_id": "ASR-1"}
GOOD = {"reliability": 5, "responsiveness": 4, "assurance": 5, "empathy": 4, "tangibles": 4}
POOR = {"reliability": 2, "responsiveness": 2, "assurance": 3, "empathy": 3, "tangibles": 3}


def reach_customer(d: Driver, case_id: str) -> None:
    d.do(case_id, "contact_customer", {"reached": True, "contact_channel": "phone"})


def record(d: Driver, case_id: str) -> None:
    d.do(case_id, "record_result", {"record_summary": "回访完成"})


def test_satisfied_customer_is_recorded_and_the_visit_ends(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    reach_customer(driver, case_id)
    driver.do(case_id, "survey", {**GOOD, "overall_comment": "满意"})
    data = driver.state(case_id).data
    assert data["average_score"] == 4.4 and data["low_score"] is False and data["follow_up"] == "none"
    assert driver.open_nodes(case_id) == ["record_result"]
    record(driver, case_id)
    assert (driver.case(case_id).status, driver.case(case_id).outcome) == ("completed", "visited")
    assert driver.children(case_id) == []


def test_unreached_customer_is_tried_again_the_next_day(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    driver.do(case_id, "contact_customer", {"reached": False, "contact_channel": "phone"})
    assert driver.open_nodes(case_id) == []
    driver.fire_timer(case_id)
    reach_customer(driver, case_id)
    driver.do(case_id, "survey", GOOD)
    record(driver, case_id)
    assert driver.case(case_id).outcome == "visited"
    assert driver.state(case_id).data["contact_attempts"] == 2


def test_customer_never_reached_ends_unreachable_after_the_attempts(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    for attempt in range(3):  # params.max_contact_attempts
        if attempt:
            driver.fire_timer(case_id)
        driver.do(case_id, "contact_customer", {"reached": False, "contact_channel": "phone"})
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "unreachable")
    assert view.data["contact_attempts"] == 3


def test_low_score_opens_a_complaint(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    reach_customer(driver, case_id)
    driver.do(case_id, "survey", {**POOR, "specific_issue": "维修人员迟到两次"})
    data = driver.state(case_id).data
    assert data["low_score"] is True and data["follow_up"] == "complaint"
    child = driver.child(case_id)
    child_data = driver.state(child).data
    assert driver.state(child).process_id == "complaint_handling"
    assert child_data["channel"] == "return_visit"
    assert child_data["category"] == "service_quality"  # the weakest dimension is reliability
    assert child_data["description"] == "维修人员迟到两次"
    run_ordinary_complaint(driver, child, channel="return_visit", tier="gold")
    assert driver.open_nodes(case_id) == ["record_result"]
    assert driver.state(case_id).data["follow_up_result"] == "closed"
    record(driver, case_id)
    assert driver.case(case_id).outcome == "visited"


def test_low_score_from_a_customer_thinking_of_leaving_opens_a_retention_case(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    reach_customer(driver, case_id)
    driver.do(case_id, "survey", {**POOR, "considering_leaving": True})
    child = driver.child(case_id)
    assert driver.state(child).process_id == "customer_retention"
    assert driver.state(child).data["warning_signal"] == "low_satisfaction"
    assert driver.state(child).data["source_case_id"] == case_id
    driver.do(child, "analyse_cause", {"churn_cause": "service_quality", "cause_detail": "服务响应慢",
                                       "monthly_revenue": 200000, "gross_margin_rate": 0.3,
                                       "expected_tenure_months": 36})
    driver.do(child, "design_offer", {"offer_type": "service_upgrade", "offer_cost": 8000,
                                      "offer_description": "专属服务通道"})
    driver.do(child, "contact_customer", {"retention_result": "retained"})
    assert driver.case(child).outcome == "retained"
    assert driver.state(case_id).data["follow_up_result"] == "retained"
    record(driver, case_id)
    assert driver.case(case_id).outcome == "visited"


def test_one_very_low_dimension_counts_as_a_low_score(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    reach_customer(driver, case_id)
    driver.do(case_id, "survey", {**GOOD, "empathy": 1})
    data = driver.state(case_id).data
    assert data["average_score"] == 3.8
    assert data["low_score"] is True and data["lowest_dimension"] == "empathy"
    assert driver.state(driver.child(case_id)).data["category"] == "service_attitude"


def test_survey_scores_must_be_between_one_and_five(driver: Driver) -> None:
    from engine.errors import InputError

    case_id = driver.start(PROCESS, CLIENT)
    reach_customer(driver, case_id)
    with pytest.raises(InputError):
        driver.do(case_id, "survey", {**GOOD, "tangibles": 6})
    with pytest.raises(InputError):
        driver.do(case_id, "survey", {"reliability": 5})  # the other four are required


def test_overdue_contact_escalates_to_the_supervisor(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CLIENT)
    driver.reach(case_id, "contact_customer", 200)
    assert ("breached", ("team_supervisor",), 100) in driver.notified(case_id)
    assert driver.task(case_id, "contact_customer")["role"] == "team_supervisor"


def test_periodic_return_visits_are_scheduled_by_tier() -> None:
    schedules = {s.id: s.every for s in library().latest[PROCESS].definition.schedules}
    assert schedules == {"platinum_periodic": "30d", "gold_periodic": "90d"}


# -- the scoring handler ------------------------------------------------------------------------------


def evaluate(scores: dict[str, Any], **extra: Any) -> dict[str, Any]:
    params = parameters(PROCESS)
    context = HandlerContext("c", PROCESS, "evaluate_survey", 1, "k", {**scores, **extra}, params)
    return dict(default_registry().get("surveys.evaluate_servqual")(context) or {})


@pytest.mark.parametrize(("dimension", "category"), [
    ("reliability", "service_quality"), ("responsiveness", "response_delay"), ("assurance", "service_attitude"),
    ("empathy", "service_attitude"), ("tangibles", "service_quality"),
])
def test_weakest_dimension_decides_the_complaint_category(dimension: str, category: str) -> None:
    result = evaluate({**GOOD, dimension: 1})
    assert (result["lowest_dimension"], result["complaint_category"], result["follow_up"]) == (
        dimension, category, "complaint")


def test_average_below_the_limit_is_low() -> None:
    assert evaluate({name: 3 for name in GOOD})["low_score"] is True
    assert evaluate({name: 4 for name in GOOD})["low_score"] is False

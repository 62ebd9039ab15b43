"""credit_rating (客户信用评级): every branch driven to an end."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import TaskRefused
from engine.run.handlers import HandlerContext, default_registry
from tests.test_library_common import Driver, driver, parameters  # noqa: F401  (driver: the fixture)

PROCESS = "credit_rating"

STRONG: dict[str, Any] = {  # every component at 100
    "annual_revenue": 50_000_000, "net_profit": 10_000_000,
    "total_assets": 60_000_000, "total_liabilities": 15_000_000,
    "current_assets": 20_000_000, "current_liabilities": 8_000_000,
    "on_time_payment_rate": 1.0, "max_overdue_days": 0, "relationship_years": 6, "external_blacklisted": False,
}
MIDDLING: dict[str, Any] = {
    "annual_revenue": 10_000_000, "net_profit": 600_000,
    "total_assets": 10_000_000, "total_liabilities": 6_000_000,
    "current_assets": 3_000_000, "current_liabilities": 2_500_000,
    "on_time_payment_rate": 0.98, "max_overdue_days": 0, "relationship_years": 5, "external_blacklisted": False,
}


def classify_and_collect(d: Driver, case_id: str, financials: dict[str, Any]) -> None:
    d.do(case_id, "classify", {"customer_id": "K-77", "customer_name": "新兴物流", "customer_type": "enterprise",
                               "credit_class": "existing_customer", "requested_limit": 500_000})
    d.do(case_id, "collect_info", financials)


def propose(d: Driver, case_id: str, rating: str, limit: float) -> None:
    d.do(case_id, "propose_rating", {"proposed_rating": rating, "proposed_limit": limit, "rationale": "依据评分"})


def decide(d: Driver, case_id: str, node: str, decision: str) -> None:
    d.do(case_id, node, {"approval_decision": decision, "approval_comment": decision})


def test_middling_customer_is_approved_by_a_second_person_and_published(driver: Driver) -> None:
    case_id = driver.start(PROCESS)
    classify_and_collect(driver, case_id, MIDDLING)
    data = driver.state(case_id).data
    assert data["suggested_rating"] == "BBB"
    assert data["credit_score"] == pytest.approx(66.7, abs=0.1)
    propose(driver, case_id, "BBB", 500_000)
    task = driver.task(case_id, "peer_review")
    assert task["role"] == "credit_reviewer"  # four eyes: not the analyst who proposed
    decide(driver, case_id, "peer_review", "approved")
    data = driver.state(case_id).data
    assert data["published_rating"] == "BBB" and data["rating_record_id"].startswith("CR-")
    assert driver.open_nodes(case_id) == []  # supervision period
    driver.fire_timer(case_id)
    driver.do(case_id, "periodic_review", {"change_needed": False, "review_findings": "无变化"})
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "rated")


def test_the_analyst_cannot_approve_their_own_proposal(driver: Driver) -> None:
    case_id = driver.start(PROCESS)
    classify_and_collect(driver, case_id, MIDDLING)
    propose(driver, case_id, "BBB", 500_000)
    with pytest.raises(TaskRefused):
        driver.do(case_id, "peer_review", {"approval_decision": "approved", "approval_comment": "自批"},
                  role="credit_analyst")


def test_top_rating_needs_the_credit_manager(driver: Driver) -> None:
    case_id = driver.start(PROCESS)
    classify_and_collect(driver, case_id, STRONG)
    data = driver.state(case_id).data
    assert (data["credit_score"], data["suggested_rating"], data["suggested_limit"]) == (100.0, "AAA", 10_000_000)
    propose(driver, case_id, "AA", 800_000)
    assert driver.open_nodes(case_id) == ["manager_approval"]
    assert driver.task(case_id, "manager_approval")["role"] == "credit_manager"
    decide(driver, case_id, "manager_approval", "approved")
    assert driver.state(case_id).data["published_rating"] == "AA"


def test_large_limit_needs_the_credit_manager_whatever_the_rating(driver: Driver) -> None:
    case_id = driver.start(PROCESS)
    classify_and_collect(driver, case_id, MIDDLING)
    propose(driver, case_id, "BBB", 1_500_000)
    assert driver.open_nodes(case_id) == ["manager_approval"]


def test_returned_proposal_goes_back_to_collecting_information(driver: Driver) -> None:
    case_id = driver.start(PROCESS)
    classify_and_collect(driver, case_id, MIDDLING)
    propose(driver, case_id, "BBB", 500_000)
    decide(driver, case_id, "peer_review", "returned")
    assert driver.open_nodes(case_id) == ["collect_info"]
    driver.do(case_id, "collect_info", {**MIDDLING, "on_time_payment_rate": 1.0})
    propose(driver, case_id, "BBB", 500_000)
    decide(driver, case_id, "peer_review", "approved")
    assert driver.state(case_id).visits["assess"] == 2
    assert driver.open_nodes(case_id) == []


def test_rejected_rating_ends_the_case(driver: Driver) -> None:
    case_id = driver.start(PROCESS)
    classify_and_collect(driver, case_id, MIDDLING)
    propose(driver, case_id, "A", 500_000)
    decide(driver, case_id, "peer_review", "rejected")
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "rejected")
    assert "publish" not in view.path()


def test_periodic_review_can_start_a_rating_change(driver: Driver) -> None:
    case_id = driver.start(PROCESS)
    classify_and_collect(driver, case_id, MIDDLING)
    propose(driver, case_id, "BBB", 500_000)
    decide(driver, case_id, "peer_review", "approved")
    driver.fire_timer(case_id)
    driver.do(case_id, "periodic_review", {"change_needed": True, "review_findings": "连续逾期"})
    child = driver.child(case_id)
    child_data = driver.state(child).data
    assert driver.state(child).process_id == "credit_rating_change"
    assert (child_data["trigger"], child_data["current_rating"], child_data["current_limit"]) == (
        "periodic_review", "BBB", 500_000)
    driver.do(child, "reassess", {**MIDDLING, "on_time_payment_rate": 0.7, "max_overdue_days": 60})
    driver.do(child, "propose_change", {"new_rating": "BB", "new_limit": 200_000, "change_reason": "逾期"})
    decide(driver, child, "peer_review", "approved")
    driver.do(child, "notify_customer", {"customer_notified": True, "notice_channel": "letter"})
    driver.do(child, "notify_sales", {"sales_acknowledged": True})
    assert driver.case(child).outcome == "changed"
    view = driver.case(case_id)
    assert (view.outcome, view.data["change_result"]) == ("rated", "changed")


def test_overdue_collection_escalates_to_the_credit_manager(driver: Driver) -> None:
    case_id = driver.start(PROCESS)
    driver.do(case_id, "classify", {"customer_id": "K-1", "customer_name": "甲", "customer_type": "individual",
                                    "credit_class": "new_customer"})
    driver.reach(case_id, "collect_info", 200)
    assert ("breached", ("credit_manager",), 100) in driver.notified(case_id)
    assert driver.task(case_id, "collect_info")["role"] == "credit_manager"


# -- the scoring handler ---------------------------------------------------------------------------

PARAMS = parameters(PROCESS)


def score(data: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    context = HandlerContext("c", PROCESS, "assess", 1, "k", data, params or PARAMS)
    return dict(default_registry().get("credit.score_credit")(context) or {})


def test_blacklisted_customer_is_rated_c_whatever_the_figures() -> None:
    result = score({**STRONG, "external_blacklisted": True})
    assert result["suggested_rating"] == "C" and result["credit_score"] <= 30 and result["suggested_limit"] == 0


def test_losses_and_overdue_payments_lower_the_rating() -> None:
    weak = score({**MIDDLING, "net_profit": -100_000, "on_time_payment_rate": 0.6, "max_overdue_days": 90})
    assert weak["suggested_rating"] in {"B", "C"}
    assert weak["credit_score"] < score(MIDDLING)["credit_score"]


def test_weights_come_from_the_parameters() -> None:
    payment_only = {**PARAMS, "score_weights": {"profitability": 0, "liquidity": 0, "leverage": 0,
                                                "payment_history": 1, "relationship": 0}}
    assert score({**MIDDLING, "on_time_payment_rate": 0.75}, payment_only)["credit_score"] == 75.0


def test_publish_record_id_is_idempotent() -> None:
    data = {"proposed_rating": "A", "proposed_limit": 1000}
    handler = default_registry().get("credit.publish_rating")
    first = handler(HandlerContext("c", PROCESS, "publish", 1, "c:t5:publish:1", data, PARAMS))
    again = handler(HandlerContext("c", PROCESS, "publish", 2, "c:t5:publish:1", data, PARAMS))
    assert first == again



def test_the_proposer_may_not_approve_their_own_rating_even_holding_the_reviewer_role(driver: Driver) -> None:
    """Four eyes is by person, not only by role: the proposer is refused at the approval step."""
    case_id = driver.start(PROCESS)
    classify_and_collect(driver, case_id, MIDDLING)
    driver.do(case_id, "propose_rating", {"proposed_rating": "BBB", "proposed_limit": 500_000, "rationale": "评分"},
              actor="li")
    with pytest.raises(TaskRefused, match="four-eyes"):
        driver.do(case_id, "peer_review", {"approval_decision": "approved", "approval_comment": "ok"}, actor="li")
    driver.do(case_id, "peer_review", {"approval_decision": "approved", "approval_comment": "ok"}, actor="wang")
    assert driver.state(case_id).data["published_rating"] == "BBB"

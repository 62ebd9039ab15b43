"""customer_retention (客户挽留): every branch driven to an end."""

from __future__ import annotations

from typing import Any

import pytest

from engine.run.handlers import HandlerContext, default_registry
from tests.test_library_common import Driver, driver, parameters  # noqa: F401  (driver: the fixture)

PROCESS = "customer_retention"
WARNING = {"customer_id": "R-1", "customer_name": "恒泰商贸", "tier": "gold", "warning_signal": "volume_drop",
           "drop_percent": 35}
VALUABLE = {"churn_cause": "competitor_offer", "cause_detail": "竞争对手降价 10%", "monthly_revenue": 50_000,
            "gross_margin_rate": 0.3, "expected_tenure_months": 24}


def offer(d: Driver, case_id: str, cost: float) -> None:
    d.do(case_id, "design_offer", {"offer_type": "discount", "offer_cost": cost, "offer_description": "年度折扣"})


def test_valuable_customer_gets_an_offer_within_the_limit_and_is_retained(driver: Driver) -> None:
    case_id = driver.start(PROCESS, WARNING)
    driver.do(case_id, "analyse_cause", VALUABLE)
    data = driver.state(case_id).data
    assert data["worth_retaining"] is True
    assert data["lifetime_value"] > data["estimated_retention_cost"] == 12_000
    assert data["suggested_offer"] == "service_upgrade"  # gold
    offer(driver, case_id, 15_000)
    assert driver.open_nodes(case_id) == ["contact_customer"]  # within params.retention_cost_limit
    driver.do(case_id, "contact_customer", {"retention_result": "retained", "contact_note": "接受折扣"})
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "retained")
    assert "approve_offer" not in view.path()


def test_customer_not_worth_retaining_is_let_go_and_recorded(driver: Driver) -> None:
    case_id = driver.start(PROCESS, {**WARNING, "tier": "standard"})
    driver.do(case_id, "analyse_cause", {**VALUABLE, "monthly_revenue": 500, "gross_margin_rate": 0.2,
                                         "expected_tenure_months": 12})
    assert driver.state(case_id).data["worth_retaining"] is False
    assert driver.open_nodes(case_id) == ["let_go"]
    driver.do(case_id, "let_go", {"let_go_reason": "挽留成本高于客户价值"})
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "let_go")


def test_offer_above_the_cost_limit_needs_approval(driver: Driver) -> None:
    case_id = driver.start(PROCESS, WARNING)
    driver.do(case_id, "analyse_cause", VALUABLE)
    offer(driver, case_id, 25_000)
    assert driver.task(case_id, "approve_offer")["role"] == "marketing_manager"
    driver.do(case_id, "approve_offer", {"offer_decision": "approved"})
    driver.do(case_id, "contact_customer", {"retention_result": "retained"})
    assert driver.case(case_id).outcome == "retained"


def test_approver_can_send_the_offer_back_for_revision(driver: Driver) -> None:
    case_id = driver.start(PROCESS, WARNING)
    driver.do(case_id, "analyse_cause", VALUABLE)
    offer(driver, case_id, 40_000)
    driver.do(case_id, "approve_offer", {"offer_decision": "revise", "approval_comment": "成本过高"})
    assert driver.open_nodes(case_id) == ["design_offer"]
    offer(driver, case_id, 18_000)
    assert driver.open_nodes(case_id) == ["contact_customer"]


def test_rejected_offer_lets_the_customer_go(driver: Driver) -> None:
    case_id = driver.start(PROCESS, WARNING)
    driver.do(case_id, "analyse_cause", VALUABLE)
    offer(driver, case_id, 40_000)
    driver.do(case_id, "approve_offer", {"offer_decision": "rejected"})
    driver.do(case_id, "let_go", {"let_go_reason": "方案未获批准"})
    assert driver.case(case_id).outcome == "let_go"


def test_lost_customer_is_tried_again_later_and_won_back(driver: Driver) -> None:
    case_id = driver.start(PROCESS, WARNING)
    driver.do(case_id, "analyse_cause", VALUABLE)
    offer(driver, case_id, 10_000)
    driver.do(case_id, "contact_customer", {"retention_result": "lost"})
    assert driver.open_nodes(case_id) == []  # waiting for the win-back attempt
    driver.fire_timer(case_id)
    assert driver.state(case_id).data["winback_attempts"] == 1
    driver.do(case_id, "contact_customer", {"retention_result": "retained", "contact_note": "赢回"})
    assert driver.case(case_id).outcome == "retained"


def test_customer_lost_again_after_the_win_back_attempt_is_deregistered(driver: Driver) -> None:
    case_id = driver.start(PROCESS, WARNING)
    driver.do(case_id, "analyse_cause", VALUABLE)
    offer(driver, case_id, 10_000)
    driver.do(case_id, "contact_customer", {"retention_result": "lost"})
    driver.fire_timer(case_id)
    driver.do(case_id, "contact_customer", {"retention_result": "lost"})
    task = driver.task(case_id, "deregister")
    assert task["role"] == "customer_info_admin"
    driver.do(case_id, "deregister", {"deregistration_reason": "转投竞争对手", "archive_kept": True})
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "lost")


def test_slow_cause_analysis_of_a_gold_customer_escalates_to_the_department_manager(driver: Driver) -> None:
    case_id = driver.start(PROCESS, WARNING)
    assert driver.clock_of(case_id, "analyse_cause").target_text == "1d"
    assert driver.state(case_id).priority == "high"
    driver.reach(case_id, "analyse_cause", 200)
    assert ("breached", ("department_manager",), 100) in driver.notified(case_id)
    assert driver.task(case_id, "analyse_cause")["role"] == "department_manager"


# -- the profitability handler ------------------------------------------------------------------------

PARAMS = parameters(PROCESS)


def assess(data: dict[str, Any]) -> dict[str, Any]:
    context = HandlerContext("c", PROCESS, "assess_value", 1, "k", data, PARAMS)
    return dict(default_registry().get("retention.assess_value")(context) or {})


def test_lifetime_value_is_the_discounted_margin() -> None:
    result = assess({"tier": "silver", "monthly_revenue": 10_000, "gross_margin_rate": 0.25,
                     "expected_tenure_months": 12})
    # 2,500 a month for 12 months at 1 % a month
    assert result["lifetime_value"] == pytest.approx(2500 * (1 - 1.01 ** -12) / 0.01, abs=0.01)
    assert result["estimated_retention_cost"] == 4000
    assert result["worth_retaining"] is True


@pytest.mark.parametrize(("tier", "offer_type"), [("platinum", "dedicated_manager"), ("gold", "service_upgrade"),
                                                  ("silver", "discount"), ("standard", "loyalty_gift")])
def test_suggested_offer_follows_the_tier(tier: str, offer_type: str) -> None:
    assert assess({"tier": tier, "monthly_revenue": 1000})["suggested_offer"] == offer_type


def test_customer_without_margin_is_never_worth_retaining() -> None:
    assert assess({"tier": "platinum", "monthly_revenue": 0})["worth_retaining"] is False

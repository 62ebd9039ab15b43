"""credit_rating_change (客户信用等级变更): every branch driven to an end."""

from __future__ import annotations


import pytest

from engine.run.handlers import HandlerContext, default_registry
from tests.test_library_common import Driver, driver, parameters  # noqa: F401  (driver: the fixture)
from tests.test_library_credit_rating import MIDDLING

PROCESS = "credit_rating_change"
CUSTOMER = {"customer_id": "K-9", "customer_name": "远东贸易", "tier": "gold", "current_rating": "A",
            "current_limit": 800_000}


def reassess_and_propose(d: Driver, case_id: str, rating: str, limit: float = 300_000) -> None:
    d.do(case_id, "reassess", MIDDLING)
    d.do(case_id, "propose_change", {"new_rating": rating, "new_limit": limit, "change_reason": "复评"})


def decide(d: Driver, case_id: str, node: str, decision: str) -> None:
    d.do(case_id, node, {"approval_decision": decision, "approval_comment": decision})


def notify_both(d: Driver, case_id: str) -> None:
    d.do(case_id, "notify_customer", {"customer_notified": True, "notice_channel": "letter"})
    d.do(case_id, "notify_sales", {"sales_acknowledged": True, "sales_action": "收紧账期"})


def test_one_grade_downgrade_is_approved_by_a_reviewer_notified_and_archived(driver: Driver) -> None:
    case_id = driver.start(PROCESS, {**CUSTOMER, "trigger": "financial_change"})
    reassess_and_propose(driver, case_id, "BBB")
    data = driver.state(case_id).data
    assert (data["grades_moved"], data["is_downgrade"], data["needs_manager"]) == (-1, True, False)
    assert driver.task(case_id, "peer_review")["role"] == "credit_reviewer"
    decide(driver, case_id, "peer_review", "approved")
    assert driver.open_nodes(case_id) == ["notify_customer", "notify_sales"]
    notify_both(driver, case_id)
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "changed")
    assert view.data["archive_record_id"].startswith("CA-")


def test_notification_join_waits_for_customer_and_sales(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CUSTOMER)
    reassess_and_propose(driver, case_id, "BBB")
    decide(driver, case_id, "peer_review", "approved")
    driver.do(case_id, "notify_sales", {"sales_acknowledged": True})
    assert driver.open_nodes(case_id) == ["notify_customer"]
    assert "update_archive" not in driver.path(case_id)
    driver.do(case_id, "notify_customer", {"customer_notified": True, "notice_channel": "phone"})
    assert driver.case(case_id).outcome == "changed"


def test_downgrade_by_two_grades_needs_the_credit_manager(driver: Driver) -> None:
    case_id = driver.start(PROCESS, {**CUSTOMER, "trigger": "overdue_payment"})
    reassess_and_propose(driver, case_id, "BB")
    assert driver.state(case_id).data["grades_moved"] == -2
    assert driver.open_nodes(case_id) == ["manager_approval"]
    decide(driver, case_id, "manager_approval", "approved")
    notify_both(driver, case_id)
    assert driver.case(case_id).outcome == "changed"


def test_upgrade_into_the_top_ratings_needs_the_credit_manager(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CUSTOMER)
    reassess_and_propose(driver, case_id, "AA")
    data = driver.state(case_id).data
    assert (data["grades_moved"], data["is_downgrade"], data["needs_manager"]) == (1, False, True)
    assert driver.open_nodes(case_id) == ["manager_approval"]


def test_rejected_change_keeps_the_rating(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CUSTOMER)
    reassess_and_propose(driver, case_id, "BBB")
    decide(driver, case_id, "peer_review", "rejected")
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "unchanged")
    assert "notify_split" not in view.path()


def test_returned_change_is_reassessed(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CUSTOMER)
    reassess_and_propose(driver, case_id, "BB")
    decide(driver, case_id, "manager_approval", "returned")
    assert driver.open_nodes(case_id) == ["reassess"]
    reassess_and_propose(driver, case_id, "BBB")
    assert driver.open_nodes(case_id) == ["peer_review"]
    decide(driver, case_id, "peer_review", "approved")
    notify_both(driver, case_id)
    assert driver.case(case_id).outcome == "changed"


@pytest.mark.parametrize(("trigger", "target", "priority"), [
    ("overdue_payment", "1d", "high"), ("financial_change", "3d", "normal"), ("periodic_review", "3d", "normal"),
])
def test_overdue_payment_is_reassessed_faster_and_with_priority(driver: Driver, trigger: str, target: str,
                                                                priority: str) -> None:
    case_id = driver.start(PROCESS, {**CUSTOMER, "trigger": trigger})
    assert driver.clock_of(case_id, "reassess").target_text == target
    assert driver.state(case_id).priority == priority


def test_late_notification_is_escalated(driver: Driver) -> None:
    case_id = driver.start(PROCESS, CUSTOMER)
    reassess_and_propose(driver, case_id, "BBB")
    decide(driver, case_id, "peer_review", "approved")
    driver.reach(case_id, "notify_customer", 200)
    assert ("escalated", ("credit_manager",), 200) in driver.notified(case_id)


# -- the approval-level handler -------------------------------------------------------------------

PARAMS = parameters(PROCESS)


@pytest.mark.parametrize(("old", "new", "limit", "moved", "manager"), [
    ("A", "BBB", 100_000, -1, False),
    ("A", "BB", 100_000, -2, True),
    ("AAA", "C", 0, -6, True),
    ("BB", "BBB", 100_000, 1, False),
    ("A", "AA", 100_000, 1, True),
    ("A", "A", 2_000_000, 0, True),
])
def test_approval_level_by_grades_moved_and_limit(old: str, new: str, limit: float, moved: int,
                                                  manager: bool) -> None:
    data = {"current_rating": old, "new_rating": new, "new_limit": limit}
    context = HandlerContext("c", PROCESS, "grade_change", 1, "k", data, PARAMS)
    result = default_registry().get("credit.compare_ratings")(context) or {}
    assert (result["grades_moved"], result["needs_manager"]) == (moved, manager)
    assert result["is_downgrade"] is (moved < 0)

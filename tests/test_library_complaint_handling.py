"""complaint_handling (客户投诉处理): every branch driven to an end through the in-memory engine."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import TaskRefused
from engine.run.handlers import HandlerContext, default_registry
from tests.test_library_common import Driver, driver, parameters  # noqa: F401  (driver: the fixture)

PROCESS = "complaint_handling"

REGISTRATION: dict[str, Any] = {
    "channel": "hotline",
    "customer_id": "C-1001",
    "customer_name": "王磊",
    "tier": "silver",
    "category": "billing",
    "description": "本月话费多扣了 58 元",
}
NO_HANDOFF = {"handoff_technical": False, "handoff_billing": False, "handoff_logistics": False,
              "handoff_quality": False}


def open_complaint(d: Driver, **registration: Any) -> str:
    """Start a case and register it at the front desk; the major-complaint check runs at once."""
    case_id = d.start(PROCESS, {"tier": registration.get("tier", "silver")})
    d.do(case_id, "register", {**REGISTRATION, **registration})
    return case_id


def assign(d: Driver, case_id: str) -> None:
    d.do(case_id, "assign_owner", {"owner": "li.na"})
    d.do(case_id, "first_contact", {"contact_made": True, "acknowledgement": "已致歉,两天内答复"})


def handle(d: Driver, case_id: str, **handoffs: bool) -> None:
    d.do(case_id, "handle", {"handling_notes": "核查计费记录", **NO_HANDOFF, **handoffs})


def tell_status(d: Driver, case_id: str) -> None:
    """The front desk tells the customer where a handed-off complaint stands (状态跟踪)."""
    d.do(case_id, "inform_status", {"status_told": "已转相关部门处理,明天回复"})


def reply(d: Driver, case_id: str, accepted: bool) -> None:
    d.do(case_id, "reply_customer", {"reply_summary": "退还多扣费用", "resolution_type": "refund"})
    d.reply(case_id, accepted, "" if accepted else "不同意")


def close_and_analyse(d: Driver, case_id: str) -> None:
    d.do(case_id, "close", {"closure_summary": "已退费"})
    d.do(case_id, "record_analysis", {"cause_category": "system_fault", "root_cause": "计费规则配置错误"})


def return_visit(d: Driver, case_id: str, score: int) -> None:
    assert d.open_nodes(case_id) == []  # waiting on the 1-day timer, nothing to do yet
    d.fire_timer(case_id)
    d.do(case_id, "return_visit", {"satisfaction": score, "return_visit_comment": "ok"})


def resolve_ordinary(d: Driver, case_id: str) -> None:
    handle(d, case_id)
    reply(d, case_id, accepted=True)
    close_and_analyse(d, case_id)


RESPONSE_FORMS: dict[str, dict[str, Any]] = {
    "apology_in_person": {"apology_done": True, "apologised_by": "张总"},
    "apology_written": {"apology_done": True, "letter_reference": "L-2025-001"},
    "apology_public": {"apology_done": True, "notice_text": "致歉声明"},
    "apology_oral": {"apology_done": True},
    "media_statement": {"statement": "统一口径"},
}


def run_ordinary_complaint(d: Driver, case_id: str, satisfaction: int = 5, **registration: Any) -> None:
    """Drive a complaint case that another process opened all the way to its end."""
    d.do(case_id, "register", {**REGISTRATION, **registration})
    assign(d, case_id)
    resolve_ordinary(d, case_id)
    return_visit(d, case_id, satisfaction)


def finish_major_child(d: Driver, child: str, *, at_fault: bool = True, compensation: float = 2000) -> None:
    d.do(child, "immediate_response", {"facts_clear": False, "apology_given": "general",
                                       "timetable": "24小时内给出调查结果", "customer_wish": "none",
                                       "is_public": False})
    d.do(child, "investigate", {"company_at_fault": at_fault, "findings": "计费系统故障"})
    if at_fault:
        d.do(child, "corrective_action", {"corrective_measures": "修复计费规则", "compensation_amount": compensation})
    else:
        d.do(child, "gather_evidence", {"evidence": "通话记录", "third_party": "regulator"})
    for node in d.open_nodes(child):  # the apology form chosen by the case, and a media statement if public
        d.do(child, node, RESPONSE_FORMS[node])
    d.do(child, "follow_up", {"customer_attitude": "restored"})
    d.do(child, "close_case", {"closure_result": "resolved_with_compensation", "closure_summary": "赔偿并致歉"})
    if d.open_nodes(child) == ["rebuild_image"]:  # a public crisis: rebuild the public image first
        d.do(child, "rebuild_image", {"publicity_plan": "正面宣传", "image_outcome": "recovering"})
    d.do(child, "lessons_learned", {"cause_category": "system_fault", "root_cause": "计费规则未测试",
                                    "lessons": "上线前回归测试"})


# -- the happy path and the main branches ------------------------------------------------------------


def test_ordinary_complaint_is_resolved_closed_and_visited(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assert driver.state(case_id).data["is_major"] is False
    assign(driver, case_id)
    resolve_ordinary(driver, case_id)
    return_visit(driver, case_id, 5)
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "closed")
    assert view.data["reply_rounds"] == 1
    assert view.data["owner"] == "li.na"
    assert view.data["cause_category"] == "system_fault"
    path = view.path()
    assert path.index("close") < path.index("record_analysis") < path.index("return_visit_wait") < path.index(
        "return_visit")
    assert "handle_major" not in path


def test_first_response_and_resolution_clocks_are_met_in_time(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    resolve_ordinary(driver, case_id)
    clocks = driver.state(case_id).clocks
    assert clocks["case:first_response"].status == "met"
    assert clocks["case:resolution"].status == "met"
    assert not clocks["case:first_response"].breached


@pytest.mark.parametrize(("tier", "first_response", "resolution"),
                         [("gold", "2h", "2d"), ("platinum", "2h", "2d"), ("silver", "8h", "5d"),
                          ("standard", "8h", "5d")])
def test_sla_targets_follow_the_customer_tier(driver: Driver, tier: str, first_response: str,
                                              resolution: str) -> None:
    case_id = open_complaint(driver, tier=tier)
    clocks = driver.state(case_id).clocks
    assert clocks["case:first_response"].target_text == first_response
    assert clocks["case:resolution"].target_text == resolution


def test_gold_customer_case_gets_high_priority(driver: Driver) -> None:
    case_id = driver.start(PROCESS, {"tier": "gold"})
    assert driver.state(case_id).priority == "high"
    assert driver.task(case_id, "register")["priority"] == "high"


# -- major complaints -------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [
    {"media_threat": True},
    {"is_journalist": True},
    {"is_official": True},
    {"is_celebrity": True},
    {"is_vip": True},
    {"strong_emotion": True},
    {"claimed_compensation": 10000},
    {"repeat_count": 3},
])
def test_major_complaint_is_detected_and_runs_as_sub_process(driver: Driver, flags: dict[str, Any]) -> None:
    case_id = open_complaint(driver, **flags)
    state = driver.state(case_id)
    assert state.data["is_major"] is True
    assert state.data["major_reasons"]
    child = driver.child(case_id)
    child_state = driver.state(child)
    assert child_state.process_id == "major_complaint"
    assert child_state.data["complaint_case_id"] == case_id
    assert child_state.data["customer_name"] == "王磊"
    assert driver.open_nodes(case_id) == []  # the parent waits for the child
    assert "assign_owner" not in driver.path(case_id)


def test_major_sub_process_results_come_back_and_the_complaint_is_closed_after_the_visit(driver: Driver) -> None:
    case_id = open_complaint(driver, media_threat=True, claimed_compensation=30000)
    child = driver.child(case_id)
    finish_major_child(driver, child, compensation=8000)
    assert driver.case(child).outcome == "closed"
    data = driver.state(case_id).data
    assert data["major_outcome"] == "resolved_with_compensation"
    assert data["compensation_offered"] == 8000
    assert data["root_cause"] == "计费规则未测试"
    assert driver.open_nodes(case_id) == ["record_analysis"]
    driver.do(case_id, "record_analysis", {"cause_category": "system_fault", "root_cause": "计费规则未测试"})
    return_visit(driver, case_id, 4)
    assert (driver.case(case_id).status, driver.case(case_id).outcome) == ("completed", "closed")


def test_small_claim_first_complaint_is_not_major(driver: Driver) -> None:
    case_id = open_complaint(driver, claimed_compensation=9999, repeat_count=2)
    assert driver.state(case_id).data["is_major"] is False
    assert driver.open_nodes(case_id) == ["assign_owner"]


# -- hand-offs to departments -------------------------------------------------------------------------


def test_hand_off_to_several_departments_waits_for_all_of_them(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    handle(driver, case_id, handoff_technical=True, handoff_billing=True)
    tasks = {t["node"]: t["role"] for t in driver.engine.open_tasks(case_id)}
    # the front desk sees every department's progress on the case and tells the customer
    assert tasks == {"dept_technical": "technical_dept", "dept_billing": "billing_dept", "inform_status": "front_desk"}
    tell_status(driver, case_id)
    driver.do(case_id, "dept_billing", {"billing_response": "确认多扣", "refund_amount": 58})
    assert driver.open_nodes(case_id) == ["dept_technical"]
    driver.do(case_id, "dept_technical", {"technical_response": "规则已修复", "technical_fixed": True})
    assert driver.open_nodes(case_id) == ["reply_customer"]
    reply(driver, case_id, accepted=True)
    close_and_analyse(driver, case_id)
    return_visit(driver, case_id, 5)
    assert driver.case(case_id).outcome == "closed"


@pytest.mark.parametrize(("flag", "node", "form"), [
    ("handoff_technical", "dept_technical", {"technical_response": "ok"}),
    ("handoff_billing", "dept_billing", {"billing_response": "ok"}),
    ("handoff_logistics", "dept_logistics", {"logistics_response": "ok"}),
    ("handoff_quality", "dept_quality", {"quality_response": "ok"}),
])
def test_each_department_hand_off_is_a_task_of_that_department(driver: Driver, flag: str, node: str,
                                                                 form: dict[str, Any]) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    handle(driver, case_id, **{flag: True})
    assert driver.open_nodes(case_id) == sorted([node, "inform_status"])
    tell_status(driver, case_id)
    driver.do(case_id, node, form)
    assert driver.open_nodes(case_id) == ["reply_customer"]


def test_a_department_cannot_complete_another_departments_hand_off(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    handle(driver, case_id, handoff_technical=True)
    with pytest.raises(TaskRefused):
        driver.do(case_id, "dept_technical", {"technical_response": "x"}, role="billing_dept")


def test_overdue_hand_off_is_escalated_to_owner_then_supervisor(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    handle(driver, case_id, handoff_logistics=True)
    assert driver.clock_of(case_id, "dept_logistics").target_text == "1d"
    driver.reach(case_id, "dept_logistics", 100)
    notes = driver.notified(case_id)
    assert ("warned", ("complaint_handler",), 75) in notes
    assert ("breached", ("team_supervisor", "complaint_handler"), 100) in notes
    assert driver.task(case_id, "dept_logistics")["priority"] == "high"


# -- replies, rework and the supervisor -----------------------------------------------------------------


def test_waiting_for_the_customer_pauses_the_resolution_clock(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    handle(driver, case_id)
    driver.do(case_id, "reply_customer", {"reply_summary": "退费", "resolution_type": "refund"})
    assert driver.state(case_id).clocks["case:resolution"].status == "paused"
    driver.reply(case_id, True)
    assert driver.state(case_id).clocks["case:resolution"].status == "running"


def test_rejected_reply_goes_back_to_handling(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    handle(driver, case_id)
    reply(driver, case_id, accepted=False)
    assert driver.open_nodes(case_id) == ["handle"]
    handle(driver, case_id, handoff_billing=True)
    driver.do(case_id, "dept_billing", {"billing_response": "补退 20 元"})
    tell_status(driver, case_id)
    reply(driver, case_id, accepted=True)
    close_and_analyse(driver, case_id)
    return_visit(driver, case_id, 4)
    view = driver.case(case_id)
    assert view.outcome == "closed"
    assert view.data["reply_rounds"] == 2
    assert view.state.visits["handle"] == 2


def test_reply_rounds_are_bounded_then_the_supervisor_makes_a_final_offer(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    for _ in range(3):  # params.max_reply_rounds
        handle(driver, case_id)
        reply(driver, case_id, accepted=False)
    assert driver.open_nodes(case_id) == ["supervisor_intervene"]
    assert driver.task(case_id, "supervisor_intervene")["role"] == "team_supervisor"
    assert driver.state(case_id).visits["handle"] == 3
    driver.do(case_id, "supervisor_intervene", {"supervisor_decision": "final_offer", "supervisor_note": "补偿100元",
                                                "compensation_offered": 100})
    assert driver.open_nodes(case_id) == ["close"]
    close_and_analyse(driver, case_id)
    return_visit(driver, case_id, 3)
    assert driver.case(case_id).outcome == "closed"


def test_supervisor_can_refer_an_unresolved_complaint_as_major(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    for _ in range(3):
        handle(driver, case_id)
        reply(driver, case_id, accepted=False)
    driver.do(case_id, "supervisor_intervene", {"supervisor_decision": "refer_major", "supervisor_note": "客户扬言起诉"})
    child = driver.child(case_id)
    assert driver.state(child).process_id == "major_complaint"
    finish_major_child(driver, child, at_fault=False)
    assert driver.open_nodes(case_id) == ["record_analysis"]


# -- return visit and reopening -----------------------------------------------------------------------


def test_dissatisfied_return_visit_reopens_the_complaint(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    resolve_ordinary(driver, case_id)
    return_visit(driver, case_id, 2)
    state = driver.state(case_id)
    assert driver.open_nodes(case_id) == ["handle"]
    assert state.data["reopen_count"] == 1
    assert state.data["reply_rounds"] == 0  # a reopened complaint gets its rounds back
    resolve_ordinary(driver, case_id)
    return_visit(driver, case_id, 5)
    assert (driver.case(case_id).status, driver.case(case_id).outcome) == ("completed", "closed")


def test_reopening_is_bounded_and_ends_closed_dissatisfied(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    resolve_ordinary(driver, case_id)
    for _ in range(2):  # params.max_reopens
        return_visit(driver, case_id, 1)
        assert driver.open_nodes(case_id) == ["handle"]
        resolve_ordinary(driver, case_id)
    return_visit(driver, case_id, 1)
    view = driver.case(case_id)
    assert (view.status, view.outcome) == ("completed", "closed_dissatisfied")
    assert view.data["reopen_count"] == 3


# -- escalation ---------------------------------------------------------------------------------------


def test_missed_first_response_escalates_level_by_level(driver: Driver) -> None:
    case_id = open_complaint(driver)
    driver.do(case_id, "assign_owner", {"owner": "li.na"})
    driver.reach(case_id, "case:first_response", 150)
    notes = [n for n in driver.notified(case_id)]
    kinds = [(kind, roles, pct) for kind, roles, pct in notes]
    assert ("warned", ("complaint_handler",), 50) in kinds
    assert ("warned", ("complaint_handler",), 75) in kinds
    assert ("breached", ("team_supervisor",), 100) in kinds
    assert ("escalated", ("department_manager",), 150) in kinds
    task = driver.task(case_id, "first_contact")
    assert task["role"] == "department_manager"  # reassigned at 150 %
    assert driver.state(case_id).priority == "high"
    assert driver.state(case_id).clocks["case:first_response"].breached


def test_the_department_manager_can_complete_a_reassigned_task(driver: Driver) -> None:
    case_id = open_complaint(driver)
    driver.do(case_id, "assign_owner", {"owner": "li.na"})
    driver.reach(case_id, "case:first_response", 150)
    driver.do(case_id, "first_contact", {"contact_made": True, "acknowledgement": "经理亲自致歉"},
              role="department_manager")
    assert driver.open_nodes(case_id) == ["handle"]


def test_overdue_handling_climbs_the_ladder_to_the_department_manager(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    assert driver.clock_of(case_id, "handle").target_text == "3d"
    driver.reach(case_id, "handle", 150)
    handle_notes = [n for n in driver.notifier.sent if n[0] == case_id and n[1].clock.startswith("task:")]
    assert [(n.kind, n.roles, n.percent) for _, n in handle_notes] == [
        ("warned", ("complaint_handler",), 50),
        ("warned", ("complaint_handler",), 75),
        ("breached", ("team_supervisor",), 100),
        ("escalated", ("department_manager",), 150),
    ]
    task = driver.task(case_id, "handle")
    assert task["role"] == "department_manager"
    assert task["escalation_level"] == 4


def test_handling_overdue_twice_over_is_routed_to_major_complaint_handling(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    driver.reach(case_id, "handle", 200)
    assert ("escalated", ("service_director",), 200) in driver.notified(case_id)
    assert "handle" not in driver.open_nodes(case_id)
    assert any(e.data.get("reason") == "interrupted" for e in driver.events(case_id, "task_cancelled"))
    assert any(e.data.get("edge") == "handle_to_major" for e in driver.events(case_id, "edge_taken"))
    child = driver.child(case_id)
    assert driver.state(child).process_id == "major_complaint"
    assert driver.state(child).priority == "urgent"
    finish_major_child(driver, child)
    driver.do(case_id, "record_analysis", {"cause_category": "process_gap", "root_cause": "处理超时"})
    return_visit(driver, case_id, 4)
    assert driver.case(case_id).outcome == "closed"


# -- the major-complaint detection handler ----------------------------------------------------------------

PARAMS = parameters(PROCESS)


def detect(data: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    handler = default_registry().get("complaints.detect_major")
    context = HandlerContext("c1", PROCESS, "detect_major", 1, "c1:t1:detect_major:1", data, params or PARAMS)
    result = handler(context)
    assert result is not None
    return dict(result)


def test_detect_major_lists_every_reason() -> None:
    result = detect({"is_journalist": True, "media_threat": True, "claimed_compensation": 50000,
                     "repeat_count": 4, "tier": "silver"})
    assert result["is_major"] is True
    assert result["major_reasons"] == ["journalist", "media_threat", "high_compensation_claim", "repeat_complaint"]


def test_detect_major_ordinary_complaint() -> None:
    assert detect({"claimed_compensation": 100, "repeat_count": 1, "tier": "gold"}) == {
        "is_major": False, "major_reasons": []}


def test_detect_major_vip_tiers_come_from_parameters() -> None:
    assert detect({"tier": "platinum"})["is_major"] is False
    assert detect({"tier": "platinum"}, {**PARAMS, "major_vip_tiers": ["platinum"]})["major_reasons"] == [
        "vip_customer"]


def test_detect_major_reasons_keep_their_order_whatever_the_order_of_the_data() -> None:
    data = {"strong_emotion": True, "claimed_compensation": "12000", "is_journalist": True}
    reordered = dict(reversed(list(data.items())))
    assert list(reordered) != list(data)
    expected = ["journalist", "strong_emotion", "high_compensation_claim"]  # the claim counts though it is text
    assert detect(data)["major_reasons"] == expected
    assert detect(reordered)["major_reasons"] == expected

"""Where the library's SLA clocks start and stop, and the clock mistakes no definition may make (issue 12).

Spans: complaint clocks run from receipt and hand over to the major-complaint child; the repair
hotline measures round the clock from the call. Library-wide: no duplicated clock, no step
escalating to its own lane, no higher tier with a longer target, no step limit longer than the
case clock measuring it, and every case clock stops before the case's later phases.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.definition.library import DEFAULT_DIR, ProcessLibrary
from engine.definition.model import HumanTask, Policy, ProcessDefinition
from engine.expressions.cel import compile_expression
from engine.run.handlers import HandlerContext, default_registry
from engine.run.runtime import Engine
from engine.run.schedules import due_starts
from engine.time import sla
from engine.time.calendar import BusinessCalendar
from engine.time.clock import FakeClock
from engine.time.durations import parse_duration
from tests.test_library_common import PROCESS_IDS, SHANGHAI, START, Driver, driver, library  # noqa: F401
from tests.test_library_complaint_handling import REGISTRATION, assign, handle, open_complaint, tell_status

COMPLAINT = "complaint_handling"
MAJOR = "major_complaint"
REPAIR = "after_sales_repair"


def definition(process_id: str) -> ProcessDefinition:
    return library().latest[process_id].definition


# -- complaint_handling: from receipt, and handed over on the major path ---------------------------------


def test_complaint_clocks_start_when_the_complaint_is_received(driver: Driver) -> None:
    case_id = driver.start(COMPLAINT)
    driver.advance(timedelta(minutes=40))  # the complaint waits at the front desk
    driver.do(case_id, "register", REGISTRATION)
    driver.advance(timedelta(minutes=40))  # ... and for an owner
    assign(driver, case_id)
    first_response = driver.state(case_id).clocks["case:first_response"]
    assert first_response.started_at == START
    assert first_response.status == "met"
    assert first_response.consumed == 80 * 60  # registration and assignment are counted


def test_the_tier_registered_after_receipt_sets_the_target_from_the_receipt(driver: Driver) -> None:
    case_id = driver.start(COMPLAINT)
    assert driver.state(case_id).clocks["case:first_response"].target_text == "8h"  # tier not known yet
    driver.do(case_id, "register", {**REGISTRATION, "tier": "gold"})
    clock = driver.state(case_id).clocks["case:first_response"]
    assert (clock.target_text, clock.started_at) == ("2h", START)
    assert clock.due_at == START + timedelta(hours=2)


def test_major_path_stops_the_complaint_clocks_at_the_hand_over(driver: Driver) -> None:
    case_id = open_complaint(driver, media_threat=True)
    clocks = driver.state(case_id).clocks
    assert {clocks[c].status for c in ("case:first_response", "case:resolution")} == {"met"}
    assert all(clocks[c].ended_at == START for c in ("case:first_response", "case:resolution"))
    child_clocks = driver.state(driver.child(case_id)).clocks
    assert child_clocks["case:resolution"].status == "running"  # the child's own clocks take over


def test_the_complaint_ladder_does_not_escalate_beside_the_major_child(driver: Driver) -> None:
    case_id = open_complaint(driver, media_threat=True)
    child = driver.child(case_id)
    driver.advance(timedelta(days=14))
    assert driver.notified(case_id) == []
    assert ("breached", ("service_director",), 100) in driver.notified(child)


def test_handling_overdue_twice_over_hands_over_and_the_missed_resolution_reads_breached(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    driver.reach(case_id, "handle", 200)  # 6 working days: the 5-day resolution limit was missed on the way
    state = driver.state(case_id)
    assert "hand_over_major" in driver.path(case_id)
    assert "overdue_escalation" in state.data["major_reasons"]
    resolution = state.clocks["case:resolution"]
    assert resolution.status == "met" and resolution.breached
    assert sla.status_of(resolution, driver.clock.now(), BusinessCalendar()) == "breached"


def test_hand_over_names_the_supervisors_referral_as_the_reason() -> None:
    handler = default_registry().get("complaints.hand_over_major")
    out = handler(HandlerContext("c", COMPLAINT, "hand_over_major", 1, "c:t:hand_over_major:1",
                                 {"is_major": False, "major_reasons": [], "supervisor_decision": "refer_major"}, {}))
    assert out == {"is_major": True, "major_reasons": ["supervisor_referral"], "progress": "major_handling"}


def test_the_first_response_warning_arrives_once(driver: Driver) -> None:
    case_id = open_complaint(driver)
    driver.do(case_id, "assign_owner", {"owner": "li.na"})
    driver.reach(case_id, "case:first_response", 75)
    warnings = [n for n in driver.notified(case_id) if n[2] in (50, 75)]
    assert warnings == [("warned", ("complaint_handler",), 50), ("warned", ("complaint_handler",), 75)]


# -- complaint_handling: the front desk's status tracking (登记、跟踪、反馈) ----------------------------------


def test_front_desk_tells_the_customer_the_status_while_departments_work(driver: Driver) -> None:
    case_id = open_complaint(driver)
    assign(driver, case_id)
    handle(driver, case_id, handoff_billing=True)
    assert driver.state(case_id).data["progress"] == "with_departments"
    assert driver.task(case_id, "inform_status")["role"] == "front_desk"
    tell_status(driver, case_id)
    assert driver.state(case_id).data["status_told"].startswith("已转相关部门")
    driver.do(case_id, "dept_billing", {"billing_response": "确认多扣"})
    assert driver.open_nodes(case_id) == ["reply_customer"]


def test_progress_follows_the_complaint_through_its_stages(driver: Driver) -> None:
    case_id = driver.start(COMPLAINT)
    seen = [driver.state(case_id).data["progress"]]
    driver.do(case_id, "register", REGISTRATION)
    seen.append(driver.state(case_id).data["progress"])
    driver.do(case_id, "assign_owner", {"owner": "li.na"})
    seen.append(driver.state(case_id).data["progress"])
    driver.do(case_id, "first_contact", {"contact_made": True, "acknowledgement": "已致歉"})
    seen.append(driver.state(case_id).data["progress"])
    handle(driver, case_id)
    seen.append(driver.state(case_id).data["progress"])
    driver.do(case_id, "reply_customer", {"reply_summary": "退费", "resolution_type": "refund"})
    seen.append(driver.state(case_id).data["progress"])
    driver.reply(case_id, True)
    driver.do(case_id, "close", {"closure_summary": "已退费"})
    seen.append(driver.state(case_id).data["progress"])
    assert seen == ["received", "registered", "assigned", "contacted", "handling", "replied", "closed"]


# -- major_complaint: combinable apologies, the rebuild phase --------------------------------------------


def _to_apology(d: Driver, data: dict[str, Any], wish: str) -> str:
    case_id = d.start(MAJOR, {"customer_name": "钱先生", "tier": "silver", **data})
    d.do(case_id, "immediate_response", {"facts_clear": True, "apology_given": "specific", "customer_wish": wish,
                                         "is_public": False})
    d.do(case_id, "investigate", {"company_at_fault": False, "findings": "x"})
    d.do(case_id, "gather_evidence", {"evidence": "x", "third_party": "none"})
    return case_id


def test_a_vip_who_asks_in_writing_gets_the_visit_and_the_letter(driver: Driver) -> None:
    case_id = _to_apology(driver, {"is_vip": True}, "written")
    assert driver.open_nodes(case_id) == ["apology_in_person", "apology_written"]
    driver.do(case_id, "apology_in_person", {"apology_done": True, "apologised_by": "副总经理"})
    assert driver.open_nodes(case_id) == ["apology_written"]  # the join waits for every form chosen
    driver.do(case_id, "apology_written", {"apology_done": True, "letter_reference": "L-1"})
    assert driver.open_nodes(case_id) == ["follow_up"]


def test_a_crisis_kept_out_of_the_public_eye_skips_the_image_rebuild(driver: Driver) -> None:
    case_id = _to_apology(driver, {}, "none")
    driver.do(case_id, "apology_oral", {"apology_done": True})
    driver.do(case_id, "follow_up", {"customer_attitude": "restored"})
    driver.do(case_id, "close_case", {"closure_result": "resolved", "closure_summary": "已处理"})
    assert driver.open_nodes(case_id) == ["lessons_learned"]
    assert driver.state(case_id).clocks["case:resolution"].status == "met"


# -- after_sales_repair: round the clock, from the call ----------------------------------------------------


SATURDAY_NIGHT = datetime(2025, 9, 20, 23, 0, tzinfo=SHANGHAI)
CALL = {"caller_name": "周先生", "phone": "138", "address": "东区 1 号", "district": "east", "area_type": "urban",
        "fault_description": "停电"}


def test_a_night_call_is_measured_from_the_call_round_the_clock() -> None:
    d = Driver(SATURDAY_NIGHT)
    case_id = d.start(REPAIR)
    assert d.task(case_id, "receive_call")["due_at"] == SATURDAY_NIGHT + timedelta(minutes=15)
    restoration = d.state(case_id).clocks["case:restoration"]
    assert (restoration.started_at, restoration.status) == (SATURDAY_NIGHT, "running")


def test_restoration_target_follows_the_severity_but_counts_from_the_call() -> None:
    d = Driver(SATURDAY_NIGHT)
    case_id = d.start(REPAIR)
    d.advance(timedelta(minutes=10))
    d.do(case_id, "receive_call", {**CALL, "fault_type": "safety_hazard", "safety_risk": True})
    restoration = d.state(case_id).clocks["case:restoration"]
    assert restoration.target_text == "4h"
    assert restoration.due_at == SATURDAY_NIGHT + timedelta(hours=4)  # 03:00 on Sunday, not Monday 13:00


def test_a_minor_fault_breaches_24_hours_after_the_call() -> None:
    d = Driver(SATURDAY_NIGHT)
    case_id = d.start(REPAIR)
    d.do(case_id, "receive_call", {**CALL, "fault_type": "other"})
    assert d.state(case_id).clocks["case:restoration"].due_at == SATURDAY_NIGHT + timedelta(hours=24)


# -- visit schedules start visits --------------------------------------------------------------------------


def _scheduled(d: Driver, process_id: str) -> list[dict[str, Any]]:
    return [c for c in d.engine.store.cases(process_id=process_id) if c["id"].startswith(f"{process_id}-")]


def test_the_sweep_starts_each_schedules_visit_once_per_period(driver: Driver) -> None:
    driver.sweep()
    driver.sweep()
    visits = _scheduled(driver, "big_client_visit")
    assert len(visits) == 2 and len(_scheduled(driver, "big_client_return_visit")) == 2
    tiers = sorted(driver.state(c["id"]).data["tier"] for c in visits)
    assert tiers == ["gold", "platinum"]
    platinum = next(c["id"] for c in visits if driver.state(c["id"]).data["tier"] == "platinum")
    assert driver.state(platinum).data["visit_type"] == "scheduled"
    assert driver.open_nodes(platinum) == ["plan_visit"]
    assert driver.events(platinum, "case_started")[0].data["actor"] == "schedule:platinum_monthly"


def test_thirty_days_later_platinum_clients_get_their_next_visit_and_gold_ones_do_not(driver: Driver) -> None:
    driver.sweep()
    driver.advance(timedelta(days=30))
    tiers = sorted(driver.state(c["id"]).data["tier"] for c in _scheduled(driver, "big_client_visit"))
    assert tiers == ["gold", "platinum", "platinum"]


def test_a_schedule_the_process_refuses_is_logged_and_the_sweep_goes_on(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    for other in DEFAULT_DIR.glob("*.yaml"):  # the processes it calls must be there too
        (tmp_path / other.name).write_text(other.read_text(encoding="utf-8"), encoding="utf-8")
    text = (DEFAULT_DIR / "big_client_visit.yaml").read_text(encoding="utf-8")
    (tmp_path / "big_client_visit.yaml").write_text(text.replace("data: {tier: gold,", "data: {tier: diamond,"),
                                                    encoding="utf-8")
    clock = FakeClock(START)
    engine = Engine.in_memory(clock=clock, library=ProcessLibrary.from_dir(tmp_path))
    case_id = engine.start("big_client_visit", {"tier": "gold"})
    clock.advance(timedelta(days=10))
    swept = dict(engine.sweep())
    assert "gold_quarterly" in caplog.text and "diamond" in caplog.text
    assert "big_client_visit-platinum_monthly-" in " ".join(swept)  # the good schedule still started
    assert case_id in swept  # and the due escalation of the open case was applied
    assert engine.case(case_id).state.clocks


def test_scheduled_starts_fall_in_fixed_periods_so_concurrent_sweeps_agree() -> None:
    defn = [definition("big_client_visit")]
    now = datetime(2025, 9, 15, 1, 0, tzinfo=UTC)
    first = {s.schedule_id: s for s in due_starts(defn, now)}
    later = {s.schedule_id: s for s in due_starts(defn, now + timedelta(hours=5))}
    assert first["platinum_monthly"].case_id == later["platinum_monthly"].case_id
    assert first["platinum_monthly"].due_at <= now < first["platinum_monthly"].due_at + timedelta(days=30)
    month_on = {s.schedule_id: s for s in due_starts(defn, now + timedelta(days=30))}
    assert month_on["platinum_monthly"].period == first["platinum_monthly"].period + 1


# -- one clear status per clock ----------------------------------------------------------------------------


def test_clock_statuses_read_running_paused_met_and_cancelled(driver: Driver) -> None:
    calendar = BusinessCalendar()
    case_id = open_complaint(driver)
    assign(driver, case_id)
    handle(driver, case_id)
    driver.do(case_id, "reply_customer", {"reply_summary": "退费", "resolution_type": "refund"})
    clocks = driver.state(case_id).clocks
    now = driver.clock.now()
    assert sla.status_of(clocks["case:first_response"], now, calendar) == "met"
    assert sla.status_of(clocks["case:resolution"], now, calendar) == "paused"
    driver.reply(case_id, True)
    assert sla.status_of(driver.state(case_id).clocks["case:resolution"], now, calendar) == "running"
    driver.engine.cancel(case_id, "withdrawn")
    assert sla.status_of(driver.state(case_id).clocks["case:resolution"], now, calendar) == "cancelled"


def test_svcflow_show_lists_a_missed_clock_as_breached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from svcflow.cli import app

    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'svcflow.db'}")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    started = runner.invoke(app, ["start", COMPLAINT, "--set", "tier=gold"])
    case_id = started.stdout.strip()
    later = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    assert runner.invoke(app, ["sweep", "--now", later]).exit_code == 0
    shown = runner.invoke(app, ["show", case_id, "--json"])
    statuses = {c["clock"]: c["status"] for c in json.loads(shown.stdout)["clocks"]}
    assert statuses["case:first_response"] == "breached"
    assert statuses["case:resolution"] == "breached"


# -- the whole library: clock mistakes no definition may make ---------------------------------------------


def _referenced_enums(definition: ProcessDefinition, policies: list[Policy]) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for policy in policies:
        if policy.when:
            for path in compile_expression(policy.when).references:
                spec = definition.data.get(path[1]) if len(path) > 1 and path[0] == "data" else None
                if spec is not None and spec.choices:
                    fields[path[1]] = list(spec.choices)
    return fields


def _target(definition: ProcessDefinition, policies: list[Policy], data: dict[str, Any]) -> int:
    defaults = {name: spec.default for name, spec in definition.data.items()}
    scope = {"data": {**defaults, **data}, "params": definition.parameters, "steps": {}, "case": {}}
    day = BusinessCalendar(definition.calendar).day_seconds
    for policy in policies:
        if policy.when is None or compile_expression(policy.when).evaluate_bool(scope):
            return parse_duration(policy.target).total_seconds(day)
    raise AssertionError("no policy applies")


def _situations(definition: ProcessDefinition, *policy_lists: list[Policy]) -> list[dict[str, Any]]:
    """Every combination of the enum fields (tier, severity, area...) the policies read."""
    fields: dict[str, list[str]] = {}
    for policies in policy_lists:
        fields.update(_referenced_enums(definition, policies))
    names = sorted(fields)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(fields[n] for n in names))]


def _human_slas(definition: ProcessDefinition) -> list[HumanTask]:
    return [n for n in definition.nodes if isinstance(n, HumanTask) and n.sla is not None]


def _span(definition: ProcessDefinition, start: str, stops: set[str]) -> set[str]:
    """Nodes a case can reach from the clock's start without passing a node that stops it."""
    outgoing: dict[str, list[str]] = {}
    for edge in definition.edges:
        if edge.kind == "normal":
            outgoing.setdefault(edge.source, []).append(edge.target)
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node in stops:
            continue
        for target in outgoing.get(node, []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _clock_start(definition: ProcessDefinition, start_on: str | None) -> str:
    return start_on or next(n.id for n in definition.nodes if n.kind == "start")


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_no_step_escalates_to_its_own_lane(process_id: str) -> None:
    d = definition(process_id)
    for node in _human_slas(d):
        for level in d.ladder(node.sla.escalation):  # type: ignore[union-attr]
            if level.at >= sla.BREACH_PCT:
                assert node.lane not in [*level.notify, level.reassign], (node.id, level.at)


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_a_higher_tier_never_gets_a_longer_target(process_id: str) -> None:
    d = definition(process_id)
    tiers = ["platinum", "gold", "silver", "standard"]
    if "tier" not in d.data:
        pytest.skip("no value tier in this process")
    policy_lists = [c.policies for c in d.clocks] + [n.sla.effective_policies() for n in _human_slas(d)]  # type: ignore[union-attr]
    for policies in policy_lists:
        for situation in _situations(d, policies):
            targets = [_target(d, policies, {**situation, "tier": tier}) for tier in tiers]
            assert targets == sorted(targets), (policies, situation)


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_no_step_limit_is_longer_than_the_case_clock_measuring_it(process_id: str) -> None:
    d = definition(process_id)
    for clock in d.clocks:
        span = _span(d, _clock_start(d, clock.start_on), set(clock.stop_on))
        for node in _human_slas(d):
            if node.id not in span:
                continue
            policies = node.sla.effective_policies()  # type: ignore[union-attr]
            for situation in _situations(d, clock.policies, policies):
                assert _target(d, policies, situation) <= _target(d, clock.policies, situation), \
                    (clock.id, node.id, situation)


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_no_step_sla_duplicates_the_case_clock_it_stops(process_id: str) -> None:
    d = definition(process_id)
    for clock in d.clocks:
        for node in _human_slas(d):
            if node.id in clock.stop_on:
                step = [p.target for p in node.sla.effective_policies()]  # type: ignore[union-attr]
                assert step != [p.target for p in clock.policies], (clock.id, node.id)


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_every_case_clock_stops_before_the_case_can_end(process_id: str) -> None:
    d = definition(process_id)
    ends = {n.id for n in d.nodes if n.kind == "end"}
    for clock in d.clocks:
        assert clock.stop_on, clock.id
        span = _span(d, _clock_start(d, clock.start_on), set(clock.stop_on))
        assert not span & ends, (clock.id, sorted(span & ends))

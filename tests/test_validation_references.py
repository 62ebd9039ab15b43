"""Declared fields, schedules, sub-process calls and messages: every reference resolves, every value fits.

Each test writes one mistake into the sample definition of tests/test_validation.py and checks
the located problem `svcflow validate FILE` reports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_validation import (
    LINEAR_EDGES,
    LINEAR_NODES,
    assert_clean,
    caller,
    check,
    line_of,
    only,
    process_yaml,
    write,
)


def test_a_form_field_of_another_type_than_the_declared_field_is_a_type_mismatch(tmp_path: Path) -> None:
    nodes = LINEAR_NODES.replace("lane: agent}", "lane: agent, form: [{id: amount, type: text}]}")
    text = process_yaml(nodes=nodes)
    problem = only(check(tmp_path, text), "type_mismatch")
    assert problem.node == "review" and problem.line == line_of(text, "id: amount, type: text")
    assert problem.message == "the form field 'amount' is text, but data: declares amount as number"


def test_a_form_offering_a_choice_the_declared_enum_does_not_allow_is_reported(tmp_path: Path) -> None:
    nodes = LINEAR_NODES.replace(
        "lane: agent}", "lane: agent, form: [{id: tier, type: enum, choices: [gold, diamond]}]}")
    problem = only(check(tmp_path, process_yaml(nodes=nodes)), "unknown_choice")
    assert "offers diamond, which data.tier does not allow" in problem.message


def test_a_default_that_does_not_fit_its_field_is_reported(tmp_path: Path) -> None:
    text = process_yaml().replace("amount: {type: number}", "amount: {type: number, default: lots}")
    problem = only(check(tmp_path, text), "bad_field")
    assert problem.line == line_of(text, "default: lots")
    assert "the default 'lots' of data.amount does not fit" in problem.message


def test_bounds_on_a_text_field_and_inverted_bounds_are_reported(tmp_path: Path) -> None:
    text = process_yaml().replace("amount: {type: number}", "amount: {type: number, minimum: 10, maximum: 1}")
    assert "minimum 10 above its maximum 1" in only(check(tmp_path, text), "bad_field").message
    text = process_yaml().replace("amount: {type: number}", "amount: {type: string, minimum: 1}")
    assert "has no minimum or maximum" in only(check(tmp_path, text), "bad_field").message


def test_schedule_data_must_be_declared_fields_not_only_written_ones(tmp_path: Path) -> None:
    nodes = LINEAR_NODES.replace("lane: agent}", "lane: agent, form: [{id: note, type: text}]}")
    text = process_yaml(nodes=nodes, extra="schedules:\n  - {id: monthly, every: 30d, data: {note: hi}}\n")
    problem = only(check(tmp_path, text), "unknown_field")
    assert "not declared under data:" in problem.message and "a step writes it" in problem.message


def test_schedule_data_of_the_wrong_type_is_reported(tmp_path: Path) -> None:
    text = process_yaml(extra="schedules:\n  - {id: monthly, every: 30d, data: {tier: diamond}}\n")
    problem = only(check(tmp_path, text), "type_mismatch")
    assert problem.line == line_of(text, "tier: diamond}")
    assert "expected one of platinum, gold, silver, standard" in problem.message


def test_a_schedule_missing_a_required_field_is_reported(tmp_path: Path) -> None:
    text = process_yaml(extra="schedules:\n  - {id: monthly, every: 30d, data: {tier: gold}}\n").replace(
        "amount: {type: number}", "amount: {type: number, required: true}")
    problem = only(check(tmp_path, text), "missing_input")
    assert "does not set data.amount, which is required" in problem.message
    assert_clean(check(tmp_path, text.replace("data: {tier: gold}", "data: {tier: gold, amount: 3}")))


def test_a_sub_process_input_must_be_declared_data_of_the_child(tmp_path: Path) -> None:
    child_nodes = LINEAR_NODES.replace("lane: agent}", "lane: agent, form: [{id: note, type: text}]}")
    write(tmp_path, process_yaml(process_id="refund_approval", nodes=child_nodes), "refund_approval")
    problem = only(check(tmp_path, caller("refund_approval", inputs="{note: data.amount}")), "unknown_field")
    assert "starts with declared data only" in problem.message


def test_a_sub_process_call_missing_a_required_child_field_is_reported(tmp_path: Path) -> None:
    child = process_yaml(process_id="refund_approval").replace(
        "amount: {type: number}", "amount: {type: number, required: true}")
    write(tmp_path, child, "refund_approval")
    problem = only(check(tmp_path, caller("refund_approval")), "missing_input")
    assert problem.node == "approval" and "requires data.amount" in problem.message
    assert_clean(check(tmp_path, caller("refund_approval", inputs="{amount: data.amount}")))


def test_two_waits_for_one_message_with_different_payloads_conflict(tmp_path: Path) -> None:
    nodes = """
        - {id: start, kind: start}
        - {id: first, kind: message, message: reply, fields: {text: {type: text}}}
        - {id: second, kind: message, message: reply, fields: {score: {type: integer}}}
        - {id: done, kind: end}
    """
    edges = """
        - {from: start, to: first}
        - {from: first, to: second}
        - {from: second, to: done}
    """
    text = process_yaml(nodes=nodes, edges=edges)
    problem = only(check(tmp_path, text), "message_conflict")
    assert problem.node == "second" and "'second' and 'first' both wait for the message 'reply'" in problem.message
    assert_clean(check(tmp_path, text.replace("message: reply, fields: {score", "message: rating, fields: {score")))


def test_linear_sample_stays_clean(tmp_path: Path) -> None:
    assert_clean(check(tmp_path, process_yaml(edges=LINEAR_EDGES)))


def test_a_cron_text_no_scheduler_can_read_is_reported(tmp_path: Path) -> None:
    text = process_yaml(extra="schedules:\n  - {id: monthly, cron: '0 9 32 * *'}\n")
    problem = only(check(tmp_path, text), "bad_cron")
    assert problem.line == line_of(text, "cron:")
    assert "the day of month field '32' is outside 1-31" in problem.message
    assert "this one has 2" in only(check(tmp_path, text.replace("'0 9 32 * *'", "'every monday'")),
                                  "bad_cron").message


def test_common_cron_forms_are_accepted(tmp_path: Path) -> None:
    for cron in ["0 9 1 * *", "*/15 8-18 * * mon-fri", "30 9 1,15 jan,jul 1", "@daily"]:
        assert_clean(check(tmp_path, process_yaml(extra=f"schedules:\n  - {{id: s, cron: '{cron}'}}\n")))


def test_a_message_name_longer_than_senders_may_send_is_undeliverable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = """
        - {id: start, kind: start}
        - {id: wait_reply, kind: message, message: customer_reply_after_the_second_visit}
        - {id: done, kind: end}
    """
    text = process_yaml(nodes=nodes, edges="- {from: start, to: wait_reply}\n- {from: wait_reply, to: done}\n")
    assert_clean(check(tmp_path, text))  # 37 characters: deliverable under the default limit of 64
    monkeypatch.setenv("SVCFLOW_MAX_ID_CHARS", "20")
    problem = only(check(tmp_path, text), "undeliverable_message")
    assert problem.node == "wait_reply" and problem.line == line_of(text, "message: customer_reply")
    assert "senders are refused above 20 (SVCFLOW_MAX_ID_CHARS)" in problem.message

"""Refusal reasons in Chinese and English from one catalogue (engine/messages.py): what the engine
stores in English, the waiting run's state message and re-opened form show in both languages, and
the inbox in the reader's."""

from __future__ import annotations

import re

import pytest

from engine.access import Gate
from engine.definition.model import HumanTask
from engine.errors import SvcflowError
from engine.messages import REFUSALS, bilingual_reason, in_chinese, say
from flows.human import describe_task, last_refusal, waiting_message
from svcflow.server.i18n import refusal
from tests.test_access import COMPLAINT, complaint_at_register, gate, open_task  # noqa: F401
from tests.test_access import credit_rating_waiting_for_peer_review


def refused_then_shown(gate: Gate, case_id: str, task_id: str, action: object) -> tuple[str, str]:
    """Run a refused action; the stored reason as the waiting run's state message and Resume form show it."""
    with pytest.raises(SvcflowError):
        action()  # type: ignore[operator]
    engine = gate.engine
    state, _ = engine.store.load_case(case_id)
    task = state.tasks[task_id]
    graph = engine.graph_for(state)
    node = graph.nodes[task.node]
    assert isinstance(node, HumanTask)
    reason = last_refusal(engine, case_id, task_id)
    assert reason is not None
    form = describe_task(graph, state, task, now=engine.clock.now(), refusal=reason)
    return waiting_message(node, task, reason), form


def test_every_template_reads_back_into_chinese_with_the_same_values() -> None:
    for key, (chinese, english) in REFUSALS.items():
        names = re.findall(r"\{(\w+)\}", english)
        values = {name: f"v{i}" for i, name in enumerate(names)}
        assert in_chinese(say(key, **values)) == chinese.format(**values), key


def test_a_reason_without_a_template_stays_in_english() -> None:
    assert in_chinese("something the catalogue never said") is None
    assert bilingual_reason("something the catalogue never said") == "something the catalogue never said"


def test_an_unknown_user_is_refused_in_both_languages_on_the_waiting_run(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    message, form = refused_then_shown(gate, case_id, task_id, lambda: gate.complete(
        gate.principal("mallory"), task_id, {"channel": "phone", **COMPLAINT}))
    assert message.startswith("上次提交被拒绝 / Last submission refused: 'mallory' 不是用户目录中的用户(提示:")
    assert " / 'mallory' is not a user of the directory (hint: " in message
    assert "'mallory' 不是用户目录中的用户" in form and "'mallory' is not a user of the directory" in form


def test_a_wrong_role_is_refused_in_both_languages_on_the_waiting_run(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    message, _ = refused_then_shown(gate, case_id, task_id, lambda: gate.complete(
        gate.principal("li"), task_id, {"channel": "phone", **COMPLAINT}))
    assert f": li 不持有任务 {task_id} 接受的任何角色(提示:" in message
    assert f" / li holds none of the roles task {task_id} accepts (hint: " in message


def test_the_four_eyes_rule_is_refused_in_both_languages_on_the_waiting_run(gate: Gate) -> None:
    case_id = credit_rating_waiting_for_peer_review(gate)
    task_id = open_task(gate, case_id, "peer_review")
    message, _ = refused_then_shown(gate, case_id, task_id, lambda: gate.complete(
        gate.principal("chen"), task_id, {"approval_decision": "approved", "approval_comment": "自批"},
        role="credit_reviewer"))
    assert ": chen 已办理本案件的 'propose_rating',不能再办理 'peer_review'(四眼原则)" in message
    assert " / chen completed 'propose_rating' of this case and may not also complete 'peer_review' " \
           "(four-eyes rule)" in message


def test_invalid_form_data_names_the_field_by_label_with_the_problem_in_both_languages(gate: Gate) -> None:
    case_id, task_id = complaint_at_register(gate)
    message, form = refused_then_shown(gate, case_id, task_id, lambda: gate.complete(
        gate.principal("wang"), task_id, {**COMPLAINT, "channel": "fax"}))
    assert "«投诉渠道 / Channel»: 应为以下之一:" in message and "/ expected one of" in message
    assert "«投诉渠道 / Channel»: 应为以下之一:" in form


def test_the_inbox_shows_a_refusal_in_chinese_from_the_same_catalogue_and_leaves_english_as_stored() -> None:
    stored = say("role_not_held", actor="wang", role="credit_reviewer")
    assert refusal(stored, "zh") == "wang 不持有角色 'credit_reviewer'"
    assert refusal(stored, "en") is None  # the English shown is the stored reason itself

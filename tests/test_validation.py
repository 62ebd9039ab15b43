"""The validator: what a designer is told about a definition before it may run.

Each test states one rule. Definitions are small YAML texts written to a temporary file named
after their id, then checked with `validate_paths` exactly as `svcflow validate FILE` does.
"""

from __future__ import annotations

from pathlib import Path
from string import Template
from textwrap import dedent, indent

import pytest

from engine.time import durations
from engine.definition import validation
from engine.errors import Problem
from engine.run.handlers import HandlerContext, HandlerRegistry, default_registry
from engine.definition.library import DEFAULT_DIR, ProcessLibrary
from engine.definition.validation import CODES, validate_graph, validate_library, validate_paths

FIXTURES = Path(__file__).parent / "fixtures"


def _noop(context: HandlerContext) -> None:
    return None


HANDLERS = HandlerRegistry()
for _name in ("crm.lookup", "crm.notify", "finance.pay", "finance.fraud_check"):
    HANDLERS.add(_name, _noop)

HEADER = Template("""\
id: $id
version: 1
name: {zh: 样例, en: Sample}
lanes:
  - {id: agent, name: {zh: 坐席, en: Agent}}
  - {id: supervisor, name: {zh: 主管, en: Supervisor}}
data:
  tier: {type: enum, choices: [platinum, gold, silver, standard]}
  accepted: {type: boolean}
  amount: {type: number}
parameters:
  large_amount: 5000
""")

LINEAR_NODES = """
- {id: start, kind: start}
- {id: review, kind: human, lane: agent}
- {id: done, kind: end}
"""
LINEAR_EDGES = """
- {from: start, to: review}
- {from: review, to: done}
"""


def process_yaml(nodes: str = LINEAR_NODES, edges: str = LINEAR_EDGES, *, extra: str = "",
                 process_id: str = "sample") -> str:
    """A definition with the standard header; `extra` adds top-level keys (ladders, clocks...)."""
    text = HEADER.substitute(id=process_id) + dedent(extra).strip("\n")
    if extra:
        text += "\n"
    text += "nodes:\n" + indent(dedent(nodes).strip("\n"), "  ") + "\n"
    text += "edges:\n" + indent(dedent(edges).strip("\n"), "  ") + "\n"
    return text


def write(directory: Path, text: str, name: str = "sample") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def check(directory: Path, text: str, name: str = "sample",
          handlers: HandlerRegistry | None = HANDLERS) -> list[Problem]:
    return validate_paths([write(directory, text, name)], handlers)


def line_of(text: str, marker: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing `marker`, so tests need no hard-coded numbers."""
    found = [number for number, line in enumerate(text.splitlines(), start=1) if marker in line]
    assert len(found) >= occurrence, f"{marker!r} not in the text"
    return found[occurrence - 1]


def only(problems: list[Problem], code: str) -> Problem:
    matching = [p for p in problems if p.code == code]
    assert len(matching) == 1, f"expected one {code}, got: " + "\n".join(map(str, problems))
    return matching[0]


def codes(problems: list[Problem]) -> set[str]:
    return {p.code for p in problems}


def assert_clean(problems: list[Problem]) -> None:
    assert problems == [], "\n".join(map(str, problems))


# ------------------------------------------------------------------------------------------
# Clean definitions
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((FIXTURES / "valid").glob("*.yaml")), ids=lambda p: p.name)
def test_valid_fixture_validates_clean(path: Path) -> None:
    assert_clean(validate_paths([path], HANDLERS))


def test_valid_fixture_directory_validates_clean_as_a_library() -> None:
    assert_clean(validate_paths([FIXTURES / "valid"], HANDLERS))


@pytest.mark.parametrize("path", sorted(DEFAULT_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_process_in_the_library_validates_clean_with_the_builtin_handlers(path: Path) -> None:
    assert_clean(validate_paths([path], default_registry()))


def test_a_minimal_linear_process_is_clean(tmp_path: Path) -> None:
    assert_clean(check(tmp_path, process_yaml()))


# ------------------------------------------------------------------------------------------
# Ids and references between nodes and edges
# ------------------------------------------------------------------------------------------


def test_duplicate_node_id_is_reported_at_the_second_occurrence(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: review, kind: human, lane: agent}
        - {id: review, kind: human, lane: supervisor}
        - {id: done, kind: end}
    """)
    problem = only(check(tmp_path, text), "duplicate_id")
    assert problem.node == "review"
    assert problem.line == line_of(text, "lane: supervisor")
    assert problem.file is not None and problem.file.endswith("sample.yaml")


def test_duplicate_edge_id_is_reported(tmp_path: Path) -> None:
    text = process_yaml(edges="""
        - {id: first, from: start, to: review}
        - {id: first, from: review, to: done}
    """)
    problem = only(check(tmp_path, text), "duplicate_id")
    assert problem.line == line_of(text, "from: review")
    assert "edge" in problem.message


def test_edge_to_unknown_node_is_reported_with_line_and_closest_id(tmp_path: Path) -> None:
    text = process_yaml(edges="""
        - {from: start, to: review}
        - from: review
          to: dnoe
    """)
    problems = check(tmp_path, text)
    problem = only(problems, "unknown_node")
    assert problem.node == "review"
    assert problem.line == line_of(text, "to: dnoe")
    assert problem.file is not None and problem.file.endswith("sample.yaml")
    assert problem.hint is not None and "'done'" in problem.hint
    assert "dead_end" not in codes(problems)  # the broken edge is the one cause reported


def test_edge_from_unknown_node_is_reported(tmp_path: Path) -> None:
    text = process_yaml(edges=LINEAR_EDGES + "- {from: reveiw, to: done}\n")
    problem = only(check(tmp_path, text), "unknown_node")
    assert problem.line == line_of(text, "from: reveiw")
    assert problem.hint is not None and "'review'" in problem.hint


# ------------------------------------------------------------------------------------------
# Start, end and the number of outgoing edges
# ------------------------------------------------------------------------------------------


def test_a_process_without_start_is_reported(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: review, kind: human, lane: agent}
        - {id: done, kind: end}
    """, edges="- {from: review, to: done}")
    problem = only(check(tmp_path, text), "start_count")
    assert problem.line == line_of(text, "nodes:")


def test_a_second_start_is_reported(tmp_path: Path) -> None:
    text = process_yaml(nodes=LINEAR_NODES + "- {id: start_again, kind: start}\n",
                        edges=LINEAR_EDGES + "- {from: start_again, to: review}\n")
    problem = only(check(tmp_path, text), "start_count")
    assert problem.node == "start_again"
    assert problem.line == line_of(text, "id: start_again")


def test_an_edge_into_the_start_is_reported(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: review, kind: human, lane: agent}
        - {id: again, kind: exclusive}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: review}
        - {from: review, to: again}
        - {from: again, to: done, default: true}
        - {from: again, to: start, when: data.amount > 100}
    """)
    problem = only(check(tmp_path, text), "start_incoming")
    assert problem.node == "start"
    assert problem.line == line_of(text, "to: start,")


def test_an_edge_out_of_an_end_is_reported(tmp_path: Path) -> None:
    text = process_yaml(edges=LINEAR_EDGES + "- {from: done, to: review}\n")
    problem = only(check(tmp_path, text), "end_outgoing")
    assert problem.node == "done"
    assert problem.line == line_of(text, "from: done")


def test_a_task_with_two_outgoing_edges_must_branch_through_a_gateway(tmp_path: Path) -> None:
    text = process_yaml(nodes=LINEAR_NODES + "- {id: other, kind: end}\n",
                        edges=LINEAR_EDGES + "- {from: review, to: other}\n")
    problem = only(check(tmp_path, text), "outgoing_count")
    assert problem.node == "review"
    assert problem.line == line_of(text, "id: review")
    assert problem.hint is not None and "gateway" in problem.hint


def test_a_task_without_outgoing_edge_is_reported_once(tmp_path: Path) -> None:
    text = process_yaml(nodes=LINEAR_NODES + "- {id: stuck, kind: timer, duration: 1h}\n",
                        edges="""
        - {from: start, to: review}
        - {from: review, to: stuck}
    """)
    problems = check(tmp_path, text)
    problem = only(problems, "outgoing_count")
    assert problem.node == "stuck"
    assert "dead_end" not in codes(problems)


def test_a_process_without_end_is_reported(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: review, kind: human, lane: agent}
    """, edges="- {from: start, to: review}")
    assert "end_count" in codes(check(tmp_path, text))


# ------------------------------------------------------------------------------------------
# Reachability
# ------------------------------------------------------------------------------------------


def test_a_node_the_start_cannot_reach_is_reported(tmp_path: Path) -> None:
    text = process_yaml(nodes=LINEAR_NODES + "- {id: orphan, kind: human, lane: agent}\n",
                        edges=LINEAR_EDGES + "- {from: orphan, to: done}\n")
    problem = only(check(tmp_path, text), "unreachable")
    assert problem.node == "orphan"
    assert problem.line == line_of(text, "id: orphan")


def test_an_escalation_edge_makes_its_target_reachable(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - id: review
          kind: human
          lane: agent
          sla: {target: 2h, escalation: [{at: 100, route: to_supervisor}]}
        - {id: supervisor_review, kind: human, lane: supervisor}
        - {id: done, kind: end}
    """, edges=LINEAR_EDGES + dedent("""
        - {id: to_supervisor, from: review, to: supervisor_review, kind: escalation}
        - {from: supervisor_review, to: done}
    """))
    assert_clean(check(tmp_path, text))


def test_a_loop_without_exit_is_a_dead_end(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: review, kind: human, lane: agent}
        - {id: ask_again, kind: human, lane: agent}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: review}
        - {from: review, to: ask_again}
        - {from: ask_again, to: review}
    """)
    problems = check(tmp_path, text)
    problem = only(problems, "dead_end")
    assert problem.node == "review"
    assert "ask_again" in problem.message
    assert problem.line == line_of(text, "id: review")
    assert only(problems, "unreachable").node == "done"


def test_a_loop_with_an_exit_through_a_gateway_is_fine(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: review, kind: human, lane: agent}
        - {id: satisfied, kind: exclusive}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: review}
        - {from: review, to: satisfied}
        - {from: satisfied, to: done, when: data.accepted == true}
        - {from: satisfied, to: review, when: data.accepted == false}
    """)
    assert_clean(check(tmp_path, text))


# ------------------------------------------------------------------------------------------
# Gateways
# ------------------------------------------------------------------------------------------

CHOICE_NODES = """
- {id: start, kind: start}
- {id: review, kind: human, lane: agent}
- {id: decide, kind: exclusive}
- {id: approve, kind: end}
- {id: reject, kind: end}
"""


def choice(when_yes: str | None, when_no: str | None, *, default_no: bool = False,
           kind: str = "exclusive") -> str:
    def edge(target: str, when: str | None, default: bool = False) -> str:
        parts = [f"from: decide, to: {target}"]
        if when is not None:
            parts.append(f"when: '{when}'")
        if default:
            parts.append("default: true")
        return "- {" + ", ".join(parts) + "}\n"

    nodes = CHOICE_NODES.replace("kind: exclusive", f"kind: {kind}")
    edges = "- {from: start, to: review}\n- {from: review, to: decide}\n"
    edges += edge("approve", when_yes) + edge("reject", when_no, default_no)
    return process_yaml(nodes=nodes, edges=edges)


def test_a_gateway_with_one_way_in_and_one_way_out_is_pointless(tmp_path: Path) -> None:
    text = process_yaml(nodes=LINEAR_NODES + "- {id: nothing, kind: exclusive}\n", edges="""
        - {from: start, to: review}
        - {from: review, to: nothing}
        - {from: nothing, to: done}
    """)
    problem = only(check(tmp_path, text), "gateway_degree")
    assert problem.node == "nothing"
    assert problem.hint is not None and "connect review to done" in problem.hint


def test_a_parallel_gateway_must_be_either_a_split_or_a_join(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: fork, kind: parallel}
        - {id: a, kind: human, lane: agent}
        - {id: b, kind: human, lane: agent}
        - {id: both, kind: parallel}
        - {id: c, kind: human, lane: agent}
        - {id: d, kind: human, lane: agent}
        - {id: sync, kind: parallel}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: fork}
        - {from: fork, to: a}
        - {from: fork, to: b}
        - {from: a, to: both}
        - {from: b, to: both}
        - {from: both, to: c}
        - {from: both, to: d}
        - {from: c, to: sync}
        - {from: d, to: sync}
        - {from: sync, to: done}
    """)
    problem = only(check(tmp_path, text), "gateway_degree")
    assert problem.node == "both"
    assert "2 incoming and 2 outgoing" in problem.message


def test_conditions_without_default_that_may_all_be_false_report_no_default(tmp_path: Path) -> None:
    text = choice("data.amount > 1000", "data.amount < 100")
    problem = only(check(tmp_path, text), "no_default")
    assert problem.node == "decide"
    assert problem.line == line_of(text, "id: decide")
    assert problem.hint is not None and "default: true" in problem.hint


def test_a_default_edge_makes_any_conditions_complete(tmp_path: Path) -> None:
    assert_clean(check(tmp_path, choice("data.amount > 1000", None, default_no=True)))


def test_boolean_conditions_covering_true_and_false_need_no_default(tmp_path: Path) -> None:
    assert_clean(check(tmp_path, choice("data.accepted == true", "data.accepted == false")))
    assert_clean(check(tmp_path, choice("data.accepted", "!data.accepted")))


def test_enum_conditions_covering_every_choice_need_no_default(tmp_path: Path) -> None:
    text = choice('data.tier in ["platinum", "gold"]', 'data.tier == "silver" || data.tier == "standard"')
    assert_clean(check(tmp_path, text))


def test_enum_conditions_missing_a_choice_report_no_default(tmp_path: Path) -> None:
    text = choice('data.tier in ["platinum", "gold"]', 'data.tier == "silver"')
    assert only(check(tmp_path, text), "no_default").node == "decide"


def test_conditions_on_two_different_fields_are_not_proven_complete(tmp_path: Path) -> None:
    text = choice("data.accepted == true", 'data.tier != "gold"')
    assert "no_default" in codes(check(tmp_path, text))


def test_inclusive_gateways_need_a_default_or_complete_conditions_too(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: checks, kind: inclusive}
        - {id: a, kind: human, lane: agent}
        - {id: b, kind: human, lane: agent}
        - {id: checks_done, kind: inclusive}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: checks}
        - {from: checks, to: a, when: data.amount > 10}
        - {from: checks, to: b, when: data.accepted == true}
        - {from: a, to: checks_done}
        - {from: b, to: checks_done}
        - {from: checks_done, to: done}
    """)
    assert only(check(tmp_path, text), "no_default").node == "checks"


def test_a_branch_without_condition_or_default_is_reported(tmp_path: Path) -> None:
    text = choice("data.accepted == true", None)
    problem = only(check(tmp_path, text), "missing_condition")
    assert problem.node == "decide"
    assert problem.line == line_of(text, "to: reject")


def test_two_default_edges_are_reported(tmp_path: Path) -> None:
    text = choice(None, None, default_no=True).replace("to: approve}", "to: approve, default: true}")
    problem = only(check(tmp_path, text), "multiple_defaults")
    assert problem.line == line_of(text, "to: reject")


def test_a_condition_on_an_edge_leaving_a_task_is_reported(tmp_path: Path) -> None:
    text = process_yaml(edges="""
        - {from: start, to: review}
        - {from: review, to: done, when: data.accepted == true}
    """)
    problem = only(check(tmp_path, text), "misplaced_condition")
    assert problem.node == "review"
    assert problem.line == line_of(text, "when: data.accepted")


def test_a_condition_comparing_an_enum_with_a_value_it_never_has_is_reported(tmp_path: Path) -> None:
    text = choice('data.tier == "golden"', None, default_no=True)
    problem = only(check(tmp_path, text), "unknown_choice")
    assert problem.hint is not None and "'gold'" in problem.hint


# ------------------------------------------------------------------------------------------
# Parallel and inclusive splits and joins
# ------------------------------------------------------------------------------------------


def test_a_parallel_split_whose_branches_end_separately_has_no_join(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: fork, kind: parallel}
        - {id: a, kind: human, lane: agent}
        - {id: b, kind: human, lane: agent}
        - {id: done_a, kind: end}
        - {id: done_b, kind: end}
    """, edges="""
        - {from: start, to: fork}
        - {from: fork, to: a}
        - {from: fork, to: b}
        - {from: a, to: done_a}
        - {from: b, to: done_b}
    """)
    problem = only(check(tmp_path, text), "split_join_mismatch")
    assert problem.node == "fork"
    assert problem.line == line_of(text, "id: fork")


def test_a_parallel_join_after_an_exclusive_choice_has_no_split(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: choose, kind: exclusive}
        - {id: a, kind: human, lane: agent}
        - {id: b, kind: human, lane: agent}
        - {id: sync, kind: parallel}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: choose}
        - {from: choose, to: a, when: data.accepted == true}
        - {from: choose, to: b, default: true}
        - {from: a, to: sync}
        - {from: b, to: sync}
        - {from: sync, to: done}
    """)
    problem = only(check(tmp_path, text), "split_join_mismatch")
    assert problem.node == "sync"
    assert "no matching" in problem.message


def test_an_inclusive_split_closed_by_a_parallel_join_is_a_mismatch(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: checks, kind: inclusive}
        - {id: a, kind: human, lane: agent}
        - {id: b, kind: human, lane: agent}
        - {id: sync, kind: parallel}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: checks}
        - {from: checks, to: a, default: true}
        - {from: checks, to: b, when: data.amount > 10}
        - {from: a, to: sync}
        - {from: b, to: sync}
        - {from: sync, to: done}
    """)
    problems = [p for p in check(tmp_path, text) if p.code == "split_join_mismatch"]
    assert {p.node for p in problems} == {"checks", "sync"}


# ------------------------------------------------------------------------------------------
# Roles, handlers, sub-processes
# ------------------------------------------------------------------------------------------


def test_an_unknown_lane_is_reported_with_the_closest_role(tmp_path: Path) -> None:
    text = process_yaml(nodes=LINEAR_NODES.replace("lane: agent", "lane: agnet"))
    problem = only(check(tmp_path, text), "unknown_role")
    assert problem.node == "review"
    assert problem.line == line_of(text, "lane: agnet")
    assert problem.hint is not None and "'agent'" in problem.hint


def test_escalation_notify_and_reassign_roles_must_be_lanes(tmp_path: Path) -> None:
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - id: review
          kind: human
          lane: agent
          sla:
            target: 2h
            escalation:
              - {at: 50, notify: [team_lead]}
              - {at: 100, reassign: director}
        - {id: done, kind: end}
    """)
    problems = [p for p in check(tmp_path, text) if p.code == "unknown_role"]
    assert [(p.node, p.line) for p in problems] == [
        ("review", line_of(text, "team_lead")), ("review", line_of(text, "director"))]


def test_an_unregistered_handler_is_reported_when_handlers_are_given(tmp_path: Path) -> None:
    text = process_yaml(nodes=LINEAR_NODES + "- {id: lookup, kind: auto, handler: crm.lookpu}\n",
                        edges="""
        - {from: start, to: lookup}
        - {from: lookup, to: review}
        - {from: review, to: done}
    """)
    problem = only(check(tmp_path, text), "unknown_handler")
    assert problem.node == "lookup"
    assert problem.hint is not None and "'crm.lookup'" in problem.hint
    assert "unknown_handler" not in codes(check(tmp_path, text, handlers=None))


SUBPROCESS_NODES = """
- {id: start, kind: start}
- id: approval
  kind: subprocess
  process: PROCESS
  inputs: INPUTS
  outputs: OUTPUTS
- {id: done, kind: end}
"""
SUBPROCESS_EDGES = """
- {from: start, to: approval}
- {from: approval, to: done}
"""


def caller(process: str, inputs: str = "{}", outputs: str = "{}", process_id: str = "sample") -> str:
    nodes = SUBPROCESS_NODES.replace("PROCESS", process).replace("INPUTS", inputs).replace("OUTPUTS", outputs)
    return process_yaml(nodes=nodes, edges=SUBPROCESS_EDGES, process_id=process_id)


def test_an_unknown_sub_process_is_reported_with_the_closest_id(tmp_path: Path) -> None:
    write(tmp_path, process_yaml(process_id="refund_approval"), "refund_approval")
    text = caller("refund_aproval")
    problem = only(check(tmp_path, text), "unknown_process")
    assert problem.node == "approval"
    assert problem.line == line_of(text, "process: refund_aproval")
    assert problem.hint is not None and "'refund_approval'" in problem.hint


def test_a_single_file_resolves_sub_processes_against_the_files_next_to_it(tmp_path: Path) -> None:
    write(tmp_path, process_yaml(process_id="refund_approval"), "refund_approval")
    assert_clean(check(tmp_path, caller("refund_approval")))


def test_a_single_file_resolves_sub_processes_against_the_default_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library_dir = tmp_path / "process_defs"
    library_dir.mkdir()
    write(library_dir, process_yaml(process_id="refund_approval"), "refund_approval")
    monkeypatch.setattr(validation, "DEFAULT_DIR", library_dir)
    elsewhere = tmp_path / "drafts"
    elsewhere.mkdir()
    assert_clean(check(elsewhere, caller("refund_approval")))


def test_processes_calling_each_other_are_reported_as_one_call_cycle(tmp_path: Path) -> None:
    write(tmp_path, caller("beta", process_id="alpha"), "alpha")
    write(tmp_path, caller("alpha", process_id="beta"), "beta")
    problems = validate_paths([tmp_path], HANDLERS)
    problem = only(problems, "call_cycle")
    assert problem.file is not None and problem.file.endswith("alpha.yaml")
    assert problem.node == "approval"
    assert "alpha → beta → alpha" in problem.message


def test_a_process_calling_itself_is_a_call_cycle(tmp_path: Path) -> None:
    assert only(check(tmp_path, caller("sample")), "call_cycle").node == "approval"


def test_sub_process_inputs_must_be_fields_of_the_child(tmp_path: Path) -> None:
    write(tmp_path, process_yaml(process_id="refund_approval"), "refund_approval")
    text = caller("refund_approval", inputs="{amount: data.amount, amout_due: data.amount}")
    problem = only(check(tmp_path, text), "unknown_field")
    assert "amout_due" in problem.message
    assert problem.node == "approval"


def test_sub_process_outputs_are_read_from_the_child_data(tmp_path: Path) -> None:
    child = process_yaml(process_id="refund_approval",
                         nodes=LINEAR_NODES.replace("lane: agent}", "lane: agent, form: [{id: approved, type: boolean}]}"))
    write(tmp_path, child, "refund_approval")
    assert_clean(check(tmp_path, caller("refund_approval", outputs="{approved: data.approved}")))
    problem = only(check(tmp_path, caller("refund_approval", outputs="{approved: data.aproved}")), "unknown_field")
    assert "refund_approval" in problem.message
    assert problem.hint is not None and "'approved'" in problem.hint


def test_sub_process_outputs_see_only_the_child_data_and_its_outcome(tmp_path: Path) -> None:
    write(tmp_path, process_yaml(process_id="refund_approval"), "refund_approval")
    assert_clean(check(tmp_path, caller("refund_approval", outputs="{approval_outcome: case.outcome}")))
    text = caller("refund_approval", outputs="{limit: params.large_amount}")
    problem = only(check(tmp_path, text), "unknown_field")
    assert problem.line == line_of(text, "params.large_amount")
    assert problem.hint is not None and "case.outcome" in problem.hint


# ------------------------------------------------------------------------------------------
# Expressions
# ------------------------------------------------------------------------------------------


def test_a_condition_that_does_not_parse_is_reported_with_its_column(tmp_path: Path) -> None:
    text = choice("data.amount > 1000 and data.accepted", None, default_no=True)
    problem = only(check(tmp_path, text), "bad_expression")
    assert problem.node == "decide"
    assert problem.line == line_of(text, "and data.accepted")
    assert "column 20" in problem.message
    assert problem.hint is not None and "&&" in problem.hint


def test_a_condition_naming_an_unknown_field_is_reported_with_the_closest_field(tmp_path: Path) -> None:
    text = choice("data.amuont > 1000", None, default_no=True)
    problem = only(check(tmp_path, text), "unknown_field")
    assert "data.amuont" in problem.message
    assert problem.hint is not None and "'amount'" in problem.hint
    assert problem.line == line_of(text, "data.amuont")


def test_fields_written_by_forms_handlers_messages_compute_and_sub_processes_are_known(tmp_path: Path) -> None:
    write(tmp_path, process_yaml(process_id="child"), "child")
    text = process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: review, kind: human, lane: agent, form: [{id: note, type: text}]}
        - {id: lookup, kind: auto, handler: crm.lookup, outputs: {vip: {type: boolean}}}
        - {id: reply, kind: message, message: customer_reply, fields: {answer: {type: string}}}
        - {id: nested, kind: subprocess, process: child, outputs: {child_tier: data.tier}}
        - {id: sum_up, kind: timer, duration: 1h, compute: {summary: 'data.note + data.answer'}}
        - {id: decide, kind: exclusive}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: review}
        - {from: review, to: lookup}
        - {from: lookup, to: reply}
        - {from: reply, to: nested}
        - {from: nested, to: sum_up}
        - {from: sum_up, to: decide}
        - {from: decide, to: done, when: 'data.vip && data.child_tier == "gold" && size(data.summary) > 0'}
        - {from: decide, to: review, default: true}
    """)
    assert_clean(check(tmp_path, text))


def test_unknown_steps_params_and_case_properties_are_reported(tmp_path: Path) -> None:
    text = choice("has(steps.reveiw) && params.large_amout > 0 && case.tierr == \"gold\"", None, default_no=True)
    problems = [p for p in check(tmp_path, text) if p.code == "unknown_field"]
    messages = " ".join(p.message for p in problems)
    assert len(problems) == 3
    assert "steps.reveiw" in messages and "params.large_amout" in messages and "case.tierr" in messages


def test_a_name_outside_data_steps_params_case_is_reported(tmp_path: Path) -> None:
    text = choice("amount > 1000", None, default_no=True)
    problem = only(check(tmp_path, text), "unknown_field")
    assert "'amount'" in problem.message
    assert problem.hint is not None and "data.amount" in problem.hint


def test_timer_until_compute_and_case_priority_expressions_are_checked(tmp_path: Path) -> None:
    text = process_yaml(
        extra="case_priority: 'data.amont > 5000 ? \"high\" : \"normal\"'",
        nodes="""
        - {id: start, kind: start}
        - {id: review, kind: human, lane: agent, compute: {total: 'data.amount +'}}
        - {id: wait, kind: timer, until: steps.reveiw.completed_at}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: review}
        - {from: review, to: wait}
        - {from: wait, to: done}
    """)
    problems = check(tmp_path, text)
    located = {(p.code, p.line) for p in problems}
    assert located == {
        ("unknown_field", line_of(text, "case_priority")),
        ("bad_expression", line_of(text, "compute")),
        ("unknown_field", line_of(text, "until")),
    }


def test_schedule_data_must_name_fields_of_the_process(tmp_path: Path) -> None:
    text = process_yaml() + "schedules:\n  - {id: monthly, every: 30d, data: {tierr: gold}}\n"
    problem = only(check(tmp_path, text), "unknown_field")
    assert problem.line == line_of(text, "tierr")


# ------------------------------------------------------------------------------------------
# SLAs, escalation, durations, clocks
# ------------------------------------------------------------------------------------------

ESCALATING_NODES = """
- {id: start, kind: start}
- id: review
  kind: human
  lane: agent
  sla: {target: 2h, escalation: ESCALATION}
- {id: other, kind: human, lane: agent}
- {id: supervisor_review, kind: human, lane: supervisor}
- {id: done, kind: end}
"""
ESCALATING_EDGES = """
- {from: start, to: review}
- {from: review, to: other}
- {from: other, to: done}
- {id: to_supervisor, from: review, to: supervisor_review, kind: escalation}
- {id: other_to_supervisor, from: other, to: supervisor_review, kind: escalation}
- {from: supervisor_review, to: done}
"""


def escalating(escalation: str, *, extra: str = "", edges: str = ESCALATING_EDGES) -> str:
    return process_yaml(nodes=ESCALATING_NODES.replace("ESCALATION", escalation), edges=edges, extra=extra)


def test_a_route_must_be_an_escalation_edge_leaving_the_task_of_the_sla(tmp_path: Path) -> None:
    text = escalating("[{at: 100, route: other_to_supervisor}]",
                      extra="clocks: [{id: response, policies: [{target: 1d}], escalation: [{at: 100, route: "
                            "to_supervisor}]}]")
    problem = only(check(tmp_path, text), "unknown_edge")
    assert problem.node == "review"
    assert problem.line == line_of(text, "route: other_to_supervisor")
    assert "leaves 'other'" in problem.message


def test_a_case_clock_may_route_along_any_escalation_edge(tmp_path: Path) -> None:
    text = escalating("[{at: 100, route: to_supervisor}]",
                      extra="clocks: [{id: response, policies: [{target: 1d}], escalation: [{at: 100, route: "
                            "other_to_supervisor}]}]")
    assert_clean(check(tmp_path, text))


def test_a_route_naming_a_normal_edge_is_reported(tmp_path: Path) -> None:
    edges = ESCALATING_EDGES.replace("{from: review, to: other}", "{id: review_done, from: review, to: other}")
    text = escalating("[{at: 100, route: review_done}]", edges=edges)
    problem = only(check(tmp_path, text), "unknown_edge")
    assert problem.hint is not None and "kind: escalation" in problem.hint


def test_a_route_to_no_edge_at_all_suggests_the_closest_escalation_edge(tmp_path: Path) -> None:
    text = escalating("[{at: 100, route: to_supervisr}]",
                      extra="clocks: [{id: response, policies: [{target: 1d}], escalation: [{at: 100, route: "
                            "other_to_supervisor}]}]")
    problem = only(check(tmp_path, text), "unknown_edge")
    assert problem.hint is not None and "'to_supervisor'" in problem.hint


def test_a_named_ladder_must_exist(tmp_path: Path) -> None:
    text = escalating("standrd", extra="ladders: {standard: [{at: 50, notify: [agent]}]}")
    problem = only(check(tmp_path, text), "unknown_ladder")
    assert problem.node == "review"
    assert problem.hint is not None and "'standard'" in problem.hint


def test_a_named_ladders_route_is_checked_against_each_task_using_it(tmp_path: Path) -> None:
    edges = ESCALATING_EDGES.replace("- {id: to_supervisor, from: review, to: supervisor_review, kind: escalation}\n", "")
    text = escalating("standard", extra="ladders: {standard: [{at: 100, route: other_to_supervisor}]}", edges=edges)
    problem = only(check(tmp_path, text), "unknown_edge")
    assert problem.node == "review"
    assert problem.line == line_of(text, "route: other_to_supervisor")


def test_escalation_levels_must_strictly_increase(tmp_path: Path) -> None:
    text = escalating("[{at: 100, route: to_supervisor}, {at: 75, notify: [supervisor]}]")
    problem = only(check(tmp_path, text.replace("- {id: other_to_supervisor", "# ")), "bad_ladder")
    assert problem.node == "review"
    assert "75%" in problem.message


def test_an_escalation_edge_needs_an_id(tmp_path: Path) -> None:
    text = escalating("[{at: 100, route: to_supervisor}]",
                      edges=ESCALATING_EDGES.replace("{id: other_to_supervisor, ", "{"))
    problem = only(check(tmp_path, text), "edge_needs_id")
    assert problem.node == "other"
    assert problem.line == line_of(text, "{from: other, to: supervisor_review")


def test_an_escalation_edge_no_level_routes_along_is_reported(tmp_path: Path) -> None:
    text = escalating("[{at: 100, route: to_supervisor}]")
    problem = only(check(tmp_path, text), "unused_escalation_edge")
    assert problem.line == line_of(text, "id: other_to_supervisor")


def test_an_unconditional_policy_before_others_is_reported(tmp_path: Path) -> None:
    text = process_yaml(extra="""
        clocks:
          - id: resolution
            policies:
              - {target: 5d}
              - {when: 'data.tier == "gold"', target: 2d}
    """)
    problem = only(check(tmp_path, text), "bad_policy")
    assert problem.line == line_of(text, "{target: 5d}")


def test_a_case_clock_must_start_and_stop_on_existing_nodes(tmp_path: Path) -> None:
    text = process_yaml(extra="""
        clocks:
          - id: resolution
            start_on: reveiw
            stop_on: [done, finished]
            policies: [{target: 5d}]
    """)
    problems = [p for p in check(tmp_path, text) if p.code == "unknown_node"]
    assert [p.line for p in problems] == [line_of(text, "start_on"), line_of(text, "stop_on")]
    assert problems[0].hint is not None and "'review'" in problems[0].hint


def test_a_zero_sla_target_is_a_bad_duration(tmp_path: Path) -> None:
    text = process_yaml(nodes=LINEAR_NODES.replace("lane: agent}", "lane: agent, sla: {target: 0h}}"))
    problem = only(check(tmp_path, text), "bad_duration")
    assert problem.node == "review"
    assert problem.line == line_of(text, "0h")


def test_a_duration_the_parser_refuses_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> object:
        raise ValueError("too long")

    monkeypatch.setattr(durations, "parse_duration", refuse)
    text = process_yaml(nodes=LINEAR_NODES.replace("lane: agent}", "lane: agent, sla: {target: 99d}}"))
    problem = only(check(tmp_path, text), "bad_duration")
    assert problem.node == "review"
    assert "too long" in problem.message


# ------------------------------------------------------------------------------------------
# Files, loading and reporting
# ------------------------------------------------------------------------------------------


def test_the_id_must_match_the_file_name(tmp_path: Path) -> None:
    text = process_yaml(process_id="complaint_handling")
    problem = only(check(tmp_path, text, name="complaints"), "id_mismatch")
    assert problem.line == 1
    assert problem.hint is not None and "complaint_handling.yaml" in problem.hint


def test_a_file_with_several_different_problems_reports_all_of_them_at_once() -> None:
    path = FIXTURES / "invalid" / "several_problems.yaml"
    text = path.read_text(encoding="utf-8")
    problems = validate_paths([path], HANDLERS)
    located = {(p.code, p.node, p.line) for p in problems}
    assert located >= {
        ("id_mismatch", None, line_of(text, "id: several_problem")),
        ("unknown_role", "register", line_of(text, "lane: agnet")),
        ("unknown_handler", "lookup", line_of(text, "crm.lookpu")),
        ("bad_expression", "route", line_of(text, "&&'")),
        ("unknown_field", "route", line_of(text, "data.tire")),
        ("no_default", "route", line_of(text, "id: route,")),
        ("unknown_node", "other_path", line_of(text, "to: dnoe")),
        ("unreachable", "orphan", line_of(text, "id: orphan")),
    }
    assert all(p.file == str(path) for p in problems)


def test_yaml_and_schema_errors_are_reported_with_the_rest_without_raising(tmp_path: Path) -> None:
    broken = FIXTURES / "invalid" / "broken_syntax.yaml"
    schema = write(tmp_path, process_yaml().replace("kind: human", "kind: humann"), "bad_schema")
    missing = tmp_path / "missing.yaml"
    good = write(tmp_path, process_yaml(process_id="good").replace("lane: agent", "lane: nobody"), "good")
    problems = validate_paths([broken, schema, missing, good], HANDLERS)
    files = {Path(p.file).name for p in problems if p.file}
    assert files == {"broken_syntax.yaml", "bad_schema.yaml", "missing.yaml", "good.yaml"}
    assert any(p.code.startswith("schema.") for p in problems)
    assert "unknown_role" in codes(problems)


def test_problems_are_sorted_by_file_and_line(tmp_path: Path) -> None:
    problems = validate_paths([FIXTURES / "invalid" / "several_problems.yaml"], HANDLERS)
    assert [p.line or 0 for p in problems] == sorted(p.line or 0 for p in problems)


def test_every_reported_code_is_documented() -> None:
    problems = validate_paths([FIXTURES / "invalid" / "several_problems.yaml"], HANDLERS)
    assert codes(problems) <= set(CODES)


def test_validate_graph_without_library_or_handlers_skips_those_checks() -> None:
    library = ProcessLibrary()
    loaded = library.add_text(process_yaml(nodes="""
        - {id: start, kind: start}
        - {id: lookup, kind: auto, handler: crm.lookpu}
        - {id: approval, kind: subprocess, process: nowhere}
        - {id: done, kind: end}
    """, edges="""
        - {from: start, to: lookup}
        - {from: lookup, to: approval}
        - {from: approval, to: done}
    """), "sample.yaml")
    graph = library.graph_of(loaded)
    assert_clean(validate_graph(graph, None, None))
    assert codes(validate_graph(graph, library, HANDLERS)) == {"unknown_process", "unknown_handler"}


def test_validate_library_checks_every_definition_of_the_library(tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        write(tmp_path, process_yaml(process_id=name).replace("lane: agent", "lane: nobody"), name)
    library, load_problems = ProcessLibrary.load([tmp_path])
    assert load_problems == []
    problems = validate_library(library, None)
    assert {(Path(p.file or "").name, p.code) for p in problems} == {
        ("alpha.yaml", "unknown_role"), ("beta.yaml", "unknown_role")}

"""Broken and hostile definition files: every one ends in our own located error, in bounded time.

A definition file is input like a form field: it can be mistyped, saved in the wrong encoding,
or crafted to hang the validator (alias bombs, deep nesting, thousands of unknown references,
expressions that nest or iterate without end). `svcflow validate` must answer each with a clear
message naming the file and line, exit non-zero, and never print a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import limits
from engine.definition.library import DEFAULT_DIR
from engine.definition.validation import validate_paths
from engine.errors import Problem
from engine.expressions.cel import ExpressionError, compile_expression

ROOT = Path(__file__).resolve().parent.parent
COMPLAINT = (DEFAULT_DIR / "complaint_handling.yaml").read_text(encoding="utf-8")


def problems_of(tmp_path: Path, content: str | bytes, name: str = "complaint_handling.yaml") -> list[Problem]:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return validate_paths([path], None)


def only(problems: list[Problem], code: str) -> Problem:
    assert [p.code for p in problems] == [code], [str(p) for p in problems]
    return problems[0]


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def billion_laughs() -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        previous, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "id: bomb\n" + "\n".join(lines) + "\n"


# -- the YAML reader --------------------------------------------------------------------------------
def test_a_control_character_is_located_not_a_reader_traceback(tmp_path: Path) -> None:
    text = COMPLAINT.replace("version: 1", "version: 1\x07")
    problem = only(problems_of(tmp_path, text), "yaml")
    assert problem.line == line_of(COMPLAINT, "version: 1")
    assert "U+0007" in problem.message


def test_an_unknown_tag_is_refused_at_its_line(tmp_path: Path) -> None:
    text = COMPLAINT.replace("version: 1", "version: !python/object 1")
    problem = only(problems_of(tmp_path, text), "yaml_tag")
    assert problem.line == line_of(COMPLAINT, "version: 1") and "!python/object" in problem.message


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, billion_laughs(), "bomb.yaml"), "yaml_size")
    assert "aliases" in problem.message and problem.line is not None


def test_an_alias_inside_its_own_anchor_is_refused_not_a_recursion(tmp_path: Path) -> None:
    text = COMPLAINT.replace("lanes:\n", "lanes: &lanes\n  - *lanes\n", 1)
    problem = only(problems_of(tmp_path, text), "yaml_alias")
    assert problem.line == line_of(text, "- *lanes") and "contain itself" in problem.message


def test_aliases_within_the_limit_still_work(tmp_path: Path) -> None:
    text = COMPLAINT.replace("lanes:\n", "lanes: &lanes\n", 1) + "schedules: []\n"
    assert [p for p in problems_of(tmp_path, text) if p.is_error] == []


def test_block_nesting_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    deep = "".join(f"{'  ' * level}k{level}:\n" for level in range(60)) + "  " * 60 + "x: 1\n"
    problem = only(problems_of(tmp_path, "id: deep\n" + deep, "deep.yaml"), "yaml_depth")
    assert problem.line is not None and problem.line <= 40


def test_thousands_of_nested_flow_brackets_are_a_message_not_a_recursion_error(tmp_path: Path) -> None:
    text = "id: deep\nname: " + "[" * 20_000 + "]" * 20_000 + "\n"
    problem = problems_of(tmp_path, text, "deep.yaml")[0]
    assert problem.line == 2 and problem.code in {"yaml", "yaml_depth"}


def test_tab_indentation_says_tab_and_the_line(tmp_path: Path) -> None:
    text = COMPLAINT.replace("\n  - {id: front_desk", "\n\t- {id: front_desk", 1)
    problem = only(problems_of(tmp_path, text), "yaml")
    assert "tab" in problem.message and problem.line == line_of(COMPLAINT, "  - {id: front_desk")
    assert problem.hint is not None and "spaces" in problem.hint


def test_a_gbk_file_is_told_to_be_saved_as_utf8(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, COMPLAINT.encode("gb18030")), "encoding")
    assert "not UTF-8" in problem.message and problem.line == line_of(COMPLAINT, "客")
    assert problem.hint is not None and "GB18030" in problem.hint


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    text = COMPLAINT + "# " + "x" * limits.definition_limits().max_definition_bytes + "\n"
    problem = only(problems_of(tmp_path, text), "yaml_size")
    assert "SVCFLOW_MAX_DEFINITION_BYTES" in (problem.hint or "")


def test_two_documents_in_one_file_are_refused(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, COMPLAINT + "---\nid: other\n"), "yaml")
    assert "more than one YAML document" in problem.message


# -- many references to nothing ---------------------------------------------------------------------
def chain(steps: int, typo_every: int) -> str:
    lines = ["id: chain", "version: 1", "name: {zh: 链, en: Chain}", "lanes: [{id: agent, name: {zh: a, en: a}}]",
             "nodes:", "  - {id: start, kind: start}"]
    lines += [f"  - {{id: step_{i}, kind: human, lane: agent}}" for i in range(steps)]
    lines += ["  - {id: done, kind: end}", "edges:", "  - {from: start, to: step_0}"]
    lines += [f"  - {{from: step_{i}, to: {'stpe' if (i + 1) % typo_every == 0 else 'step'}_{i + 1}}}"
              for i in range(steps - 1)]
    lines += [f"  - {{from: step_{steps - 1}, to: done}}"]
    return "\n".join(lines) + "\n"


def test_thousands_of_unknown_references_are_reported_capped_with_short_hints(tmp_path: Path) -> None:
    problems = [p for p in problems_of(tmp_path, chain(3000, 1), "chain.yaml") if p.code == "unknown_node"]
    located = [p for p in problems if p.line is not None]
    assert len(located) == 50
    assert "2949 more" in problems[-1].message or any("2949 more" in p.message for p in problems)
    assert located[0].hint == "did you mean 'step_1'?"


def test_a_hint_listing_known_ids_names_at_most_ten(tmp_path: Path) -> None:
    text = chain(3000, 10_000).replace("to: done}", "to: zzz_unheard_of}")
    problem = next(p for p in problems_of(tmp_path, text, "chain.yaml") if p.code == "unknown_node")
    assert problem.hint is not None and problem.hint.endswith("... (2992 more)")
    assert problem.hint.count(", ") == 10


# -- CEL in definitions -----------------------------------------------------------------------------
def with_condition(condition: str) -> str:
    return COMPLAINT.replace("when: data.is_major,", f"when: '{condition}',", 1)


def test_fifty_nested_parentheses_are_a_located_problem_and_other_checks_still_run(tmp_path: Path) -> None:
    text = with_condition("(" * 50 + "data.is_major" + ")" * 50).replace(
        "to: assign_owner, default: true,", "to: assign_owner, when: data.is_major,")
    problems = problems_of(tmp_path, text)
    bad = next(p for p in problems if p.code == "bad_expression")
    assert "nest 50 deep" in bad.message and bad.node == "major_check"
    assert bad.line == line_of(COMPLAINT, "when: data.is_major,")
    assert "no_default" in {p.code for p in problems}  # the gateway is still checked


def test_a_500_term_conjunction_is_a_located_problem(tmp_path: Path) -> None:
    problem = only([p for p in problems_of(tmp_path, with_condition(" && ".join(["data.is_major"] * 500)))
                    if p.code != "no_default"], "bad_expression")
    assert "limit" in problem.message and problem.node == "major_check"


def test_a_long_chain_under_the_length_limit_is_refused_for_its_depth() -> None:
    with pytest.raises(ExpressionError, match="operators nest"):
        compile_expression(" || ".join(["a"] * 100))


def test_brackets_inside_string_literals_do_not_count_as_nesting() -> None:
    assert compile_expression('data.note == "' + "(" * 100 + '"').evaluate_bool({"data": {"note": "(" * 100}})


def test_nested_macros_stop_at_the_step_budget_with_an_expression_error() -> None:
    items = "[0,1,2,3,4,5,6,7,8,9]"
    text = f"size({items}" + "".join(f".map(v{i}, {items}" for i in range(6)) + ")" * 6 + ") > 0"
    assert len(text) == 217
    expression = compile_expression(text)
    with pytest.raises(ExpressionError, match="macro iterations"):
        expression.evaluate({})


def test_macros_within_the_budget_evaluate_normally() -> None:
    expression = compile_expression("[1, 2, 3].map(x, [1, 2].filter(y, y < x)).exists(l, size(l) == 2)")
    assert expression.evaluate({}) is True


def test_expression_limits_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVCFLOW_CEL_MAX_LENGTH", "20")
    limits.expression_limits.cache_clear()
    try:
        with pytest.raises(ExpressionError, match="the limit is 20"):
            compile_expression("data.configurable_limit_probe > 1")
    finally:
        monkeypatch.delenv("SVCFLOW_CEL_MAX_LENGTH")
        limits.expression_limits.cache_clear()
    assert compile_expression("data.configurable_limit_probe_2 > 1").references


# -- the command, as a designer runs it -------------------------------------------------------------
@pytest.mark.parametrize("content", [
    billion_laughs().encode(),
    ("id: deep\nname: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n").encode(),
    COMPLAINT.replace("version: 1", "version: !!python/name:os.system 1").encode(),
    COMPLAINT.encode("gb18030"),
    b"id: x\x00\n",
], ids=["alias-bomb", "deep-flow", "python-tag", "gbk", "nul-byte"])
def test_svcflow_validate_answers_hostile_files_with_a_located_error_and_no_traceback(
        tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "svcflow", "validate", str(path)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert f"{path}:" in result.stderr or f"{path}: " in result.stderr

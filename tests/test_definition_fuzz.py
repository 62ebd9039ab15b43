"""Fuzzing the definition loader and validator with mutations of the 8 library definitions.

Whatever a mutation does to a real definition — YAML text damage (deleted, swapped or truncated
lines, garbage characters, tabs, tags, anchors, deep brackets) or structural damage after parsing
(deleted, renamed or retyped keys, swapped references, garbage scalars, deep nesting, shared
objects that become aliases) — `svcflow validate` must answer with our own problems only: each
names the file, each that names an existing node has a line, none is an internal error, and each
example finishes within a hard per-example time limit (an alarm interrupts a hang and fails the
example). Derandomized with a fixed example count, so CI runs the same examples every time, in
well under a minute.
"""

from __future__ import annotations

import copy
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.definition.library import DEFAULT_DIR
from engine.definition.validation import validate_paths
from engine.errors import Problem
from engine.limits import definition_limits
from engine.run.handlers import default_registry

FILES = sorted(DEFAULT_DIR.glob("*.yaml"))
TEXTS = {path.name: path.read_text(encoding="utf-8") for path in FILES}
PARSED = {name: yaml.safe_load(text) for name, text in TEXTS.items()}
HANDLERS = default_registry()  # as `svcflow validate` checks them

# deadline=None: a busy CI machine must not fail an example for being slow; `time_limit` fails a hang.
FUZZ = settings(max_examples=35, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HANG_SECONDS = 10  # CPU seconds; a library file validates in well under one, a 10 MB file in about one


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` of CPU time and fail it.

    CPU time (ITIMER_PROF), not wall time: the machine running the tests may be shared with
    other jobs, which slows the clock on the wall but not the work done; a hang in the
    validator is a loop that burns CPU, and is caught either way."""
    def interrupt(signum: int, frame: Any) -> None:
        raise TimeoutError(f"validation did not finish within {seconds} CPU seconds: a hang")

    previous = signal.signal(signal.SIGPROF, interrupt)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


GARBAGE = st.sampled_from([
    "\x07", "\x00", "\t", "\ufeff", "&a ", "*a", "*nowhere", "!tag ", "!!python/object:os.system ", "<<: ",
    "[" * 40, "{" * 40, "'", '"', ": ", "- ", "---\n", "%YAML 1.1\n", "\\", "#", "\udcff", "我",
    "((((((((((((((((((((((((((((((((((((((((data.x", " && data.x" * 40,
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["", "start", "end", "data.tier == 3", "1d", "-5h", "enum", "((", "$"]),
)


def write_and_validate(name: str, text: str) -> tuple[list[Problem], Path]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        with time_limit(HANG_SECONDS):
            return validate_paths([path], HANDLERS), path


def node_ids(text: str) -> set[str]:
    try:
        data = yaml.safe_load(text)
    except Exception:
        return set()
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        return set()
    return {str(node["id"]) for node in nodes if isinstance(node, dict) and "id" in node}


def assert_only_located_problems(name: str, text: str) -> None:
    problems, path = write_and_validate(name, text)
    existing = node_ids(text)
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.code != "internal_error", str(problem)
        assert problem.file is not None, str(problem)
        assert problem.message.strip() and "Traceback" not in problem.message, str(problem)
        if problem.file == str(path) and problem.node in existing and "more problem(s)" not in problem.message:
            assert problem.line is not None, str(problem)


# -- text mutations --------------------------------------------------------------------------------
@st.composite
def text_mutations(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(TEXTS)))
    lines = TEXTS[name].split("\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "garbage", "truncate", "indent"]))
        if action == "delete":
            del lines[at]
        elif action == "duplicate":
            lines.insert(at, lines[at])
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif action == "garbage":
            column = draw(st.integers(0, len(lines[at])))
            lines[at] = lines[at][:column] + draw(GARBAGE) + lines[at][column:]
        elif action == "truncate":
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        else:
            lines[at] = draw(st.sampled_from(["\t", " ", "   "])) + lines[at]
    return name, "\n".join(lines)


@FUZZ
@given(text_mutations())
def test_text_mutations_of_the_library_give_only_located_problems(case: tuple[str, str]) -> None:
    assert_only_located_problems(*case)


# -- structure mutations ---------------------------------------------------------------------------
def containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    found: list[tuple[tuple[Any, ...], Any]] = []
    if isinstance(value, dict):
        found.append((path, value))
        for key, child in value.items():
            found.extend(containers(child, (*path, key)))
    elif isinstance(value, list):
        found.append((path, value))
        for index, child in enumerate(value):
            found.extend(containers(child, (*path, index)))
    return found


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for child in value.values() for s in strings(child)]
    if isinstance(value, list):
        return [s for child in value for s in strings(child)]
    return []


@st.composite
def structure_mutations(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(PARSED)))
    data = copy.deepcopy(PARSED[name])
    words = sorted(set(strings(data)))
    for _ in range(draw(st.integers(1, 3))):
        places = [(path, value) for path, value in containers(data) if value]
        _, target = draw(st.sampled_from(places))
        key = draw(st.sampled_from(sorted(target, key=str) if isinstance(target, dict) else range(len(target))))
        action = draw(st.sampled_from(["delete", "rename", "retype", "swap_reference", "nest", "share"]))
        if action == "delete":
            del target[key]
        elif action == "rename" and isinstance(target, dict):
            target[draw(st.sampled_from(["kind", "id", "when", "to", "lane", "x_y", "Node", "default"]))] = (
                target.pop(key))
        elif action == "retype":
            target[key] = draw(SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                        SCALARS, max_size=3))
        elif action == "swap_reference" and words:
            target[key] = draw(st.sampled_from(words))
        elif action == "nest":
            value = target[key]
            for _ in range(draw(st.integers(1, 60))):
                value = [value]
            target[key] = value
        elif action == "share":
            target[key] = data  # a cycle: the dumper writes an anchor and an alias
            break  # the data now contains itself: walking it again would never end
    try:
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, RecursionError):
        text = yaml.safe_dump(PARSED[name], allow_unicode=True, sort_keys=False)
    return name, text


@FUZZ
@given(structure_mutations())
def test_structure_mutations_of_the_library_give_only_located_problems(case: tuple[str, str]) -> None:
    assert_only_located_problems(*case)


def test_the_unmutated_library_passes_the_same_assertions() -> None:
    for name, text in TEXTS.items():
        problems, _ = write_and_validate(name, text)
        assert problems == []


def test_the_time_limit_fails_a_hang() -> None:
    with pytest.raises(TimeoutError), time_limit(0.2):
        while True:
            pass


# -- size -----------------------------------------------------------------------------------------
def ten_megabytes() -> str:
    """A definition of about 10 MB: the complaint process followed by a long comment block."""
    base = TEXTS["complaint_handling.yaml"]
    line = "# " + "备注 remark " * 8 + "\n"
    return base + line * ((10_000_000 - len(base.encode("utf-8"))) // len(line.encode("utf-8")) + 1)


def test_a_ten_megabyte_file_is_refused_at_once_with_a_located_error() -> None:
    text = ten_megabytes()
    assert len(text.encode("utf-8")) >= 10_000_000
    problems, path = write_and_validate("complaint_handling.yaml", text)
    assert [p.code for p in problems] == ["yaml_size"]
    assert problems[0].file == str(path) and "SVCFLOW_MAX_DEFINITION_BYTES" in (problems[0].hint or "")


def test_a_ten_megabyte_file_under_a_raised_limit_still_validates_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SVCFLOW_MAX_DEFINITION_BYTES", "20000000")
    definition_limits.cache_clear()
    try:
        problems, _ = write_and_validate("complaint_handling.yaml", ten_megabytes())
    finally:
        monkeypatch.delenv("SVCFLOW_MAX_DEFINITION_BYTES")
        definition_limits.cache_clear()
    assert problems == []

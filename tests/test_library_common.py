"""The process library as a whole, plus the small driver the per-process library tests share.

The per-process files (test_library_<process>.py) drive every branch of one definition to an
end through the in-memory engine. Time only moves when a test moves the FakeClock; instead of
guessing business-time arithmetic, tests jump to the instants the engine itself scheduled
(a timer's due time, an SLA clock's next threshold), which keeps them independent of the
working-hours calendar.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.time.clock import FakeClock
from engine.run.handlers import default_registry
from engine.definition.library import DEFAULT_DIR, ProcessLibrary
from engine.run.runtime import CaseView, Engine, LogNotifier
from engine.run.state import InstanceState

SHANGHAI = ZoneInfo("Asia/Shanghai")
# a Monday morning, well away from public holidays, so business time runs from the start
START = datetime(2025, 9, 15, 9, 0, tzinfo=SHANGHAI)

PROCESS_IDS = (
    "after_sales_repair",
    "big_client_return_visit",
    "big_client_visit",
    "complaint_handling",
    "credit_rating",
    "credit_rating_change",
    "customer_retention",
    "major_complaint",
)


@functools.cache
def library() -> ProcessLibrary:
    """The library of process_defs/, loaded once: engines only read it (graphs are cached per version)."""
    return ProcessLibrary.from_dir()


def parameters(process_id: str) -> dict[str, Any]:
    return dict(library().latest[process_id].definition.parameters)


class Driver:
    """An in-memory engine with a fake clock and helpers that read like the process steps."""

    def __init__(self, start: datetime = START) -> None:
        self.clock = FakeClock(start)
        self.notifier = LogNotifier()
        self.engine = Engine.in_memory(clock=self.clock, library=library(), notifier=self.notifier)

    # -- cases ---------------------------------------------------------------------------------
    def start(self, process_id: str, data: Mapping[str, Any] | None = None) -> str:
        return self.engine.start(process_id, dict(data or {}), actor="tester")

    def case(self, case_id: str) -> CaseView:
        return self.engine.case(case_id)

    def state(self, case_id: str) -> InstanceState:
        return self.engine.case(case_id).state

    def path(self, case_id: str) -> list[str]:
        return self.case(case_id).path()

    def children(self, case_id: str) -> list[str]:
        return self.case(case_id).children

    def child(self, case_id: str) -> str:
        """The newest child case (sub-processes start one per visit of the node)."""
        children = self.children(case_id)
        assert children, f"case {case_id} has no child case"
        return children[-1]

    def events(self, case_id: str, type_: str) -> list[Any]:
        return [e for e in self.case(case_id).events if e.type == type_]

    # -- tasks -----------------------------------------------------------------------------------
    def open_nodes(self, case_id: str) -> list[str]:
        return sorted(task["node"] for task in self.engine.open_tasks(case_id))

    def task(self, case_id: str, node: str) -> dict[str, Any]:
        tasks = [t for t in self.engine.open_tasks(case_id) if t["node"] == node]
        assert len(tasks) == 1, f"expected one open task '{node}', open: {self.open_nodes(case_id)}"
        return tasks[0]

    def do(self, case_id: str, node: str, data: Mapping[str, Any] | None = None, *,
           role: str | None = None, actor: str | None = None) -> InstanceState:
        """Complete the open task at `node` as its role (or the role given), by one person per role."""
        task = self.task(case_id, node)
        role = role or task["role"]
        return self.engine.complete(task["id"], actor=actor or f"{role}_user", role=role, data=dict(data or {}))

    def reply(self, case_id: str, accepted: bool, comment: str = "") -> InstanceState:
        payload: dict[str, Any] = {"accepted": accepted}
        if comment:
            payload["customer_comment"] = comment
        return self.engine.send_message(case_id, "customer_reply", payload, actor="customer")

    # -- time --------------------------------------------------------------------------------------
    def sweep(self) -> None:
        self.engine.sweep()

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self.engine.sweep()

    def move_to(self, instant: datetime) -> None:
        if instant > self.clock.now():
            self.clock.set(instant)
        self.engine.sweep()

    def fire_timer(self, case_id: str) -> None:
        """Jump to the case's earliest timer and let the sweep fire it."""
        dues = [t.timer_due for t in self.state(case_id).tokens.values() if t.timer_due is not None]
        assert dues, f"case {case_id} waits on no timer (at {self.state(case_id).tokens})"
        self.move_to(min(dues) + timedelta(seconds=1))

    def clock_of(self, case_id: str, clock_id: str) -> Any:
        """An SLA clock by id: 'case:<clock>' for case clocks, or a node id for its open task's clock."""
        state = self.state(case_id)
        if clock_id.startswith("case:"):
            return state.clocks[clock_id]
        task = self.task(case_id, clock_id)
        return state.clocks[f"task:{task['id']}"]

    def reach(self, case_id: str, clock_id: str, percent: int) -> None:
        """Move the clock until the SLA clock has passed `percent` of its target, firing levels on the way."""
        for _ in range(20):
            clock = self.clock_of_any(case_id, clock_id)
            if percent in clock.fired or clock.next_at is None or clock.next_pct is None or clock.next_pct > percent:
                break
            self.move_to(clock.next_at + timedelta(seconds=1))
        assert percent in self.clock_of_any(case_id, clock_id).fired, f"{clock_id} never reached {percent} %"

    def clock_of_any(self, case_id: str, clock_id: str) -> Any:
        """Like clock_of, but also finds the clock of a task that is no longer open."""
        state = self.state(case_id)
        if clock_id.startswith("case:"):
            return state.clocks[clock_id]
        task_ids = [t.id for t in state.tasks.values() if t.node == clock_id]
        return state.clocks[f"task:{task_ids[-1]}"]

    def notified(self, case_id: str) -> list[tuple[str, tuple[str, ...], int]]:
        """(kind, roles, percent) of every notification sent for the case."""
        return [(n.kind, n.roles, n.percent) for cid, n in self.notifier.sent if cid == case_id]


@pytest.fixture
def driver() -> Driver:
    return Driver()


# ----------------------------------------------------------------------------------------------
# the library as a whole
# ----------------------------------------------------------------------------------------------


def test_library_has_the_eight_processes_and_loads_clean() -> None:
    library, load_problems = ProcessLibrary.load([DEFAULT_DIR])
    assert load_problems == []
    assert library.process_ids() == list(PROCESS_IDS)
    assert library.problems(default_registry()) == []  # not even a warning


def test_library_validates_without_problems() -> None:
    from engine.definition.validation import validate_paths

    problems = validate_paths([DEFAULT_DIR], default_registry())
    assert [str(p) for p in problems] == []


def test_every_handler_named_by_the_library_is_registered_and_every_builtin_is_used() -> None:
    from engine.run.builtin_handlers import HANDLER_NAMES

    registry = default_registry()
    used: set[str] = set()
    for process_id in PROCESS_IDS:
        for node in library().latest[process_id].definition.nodes:
            if node.kind == "auto":  # type: ignore[attr-defined]
                assert node.handler in registry, (process_id, node.id)  # type: ignore[attr-defined]
                used.add(node.handler)  # type: ignore[attr-defined]
    assert used == set(HANDLER_NAMES)


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_definition_is_bilingual_and_typed(process_id: str) -> None:
    definition = ProcessLibrary.from_dir().latest[process_id].definition
    assert definition.version == 1
    assert definition.name.zh and definition.name.en
    assert all(lane.name.zh and lane.name.en for lane in definition.lanes)
    for node in definition.nodes:
        assert node.name is not None and node.name.zh and node.name.en, node.id
        if node.kind == "human":  # type: ignore[attr-defined]
            # a step may go without an SLA of its own when a case clock stopping at it is its limit
            measured = any(node.id in clock.stop_on for clock in definition.clocks)
            assert node.sla is not None or measured, f"{node.id} has no SLA"  # type: ignore[attr-defined]
            for form_field in node.form:  # type: ignore[attr-defined]
                assert form_field.label is not None and form_field.label.zh and form_field.label.en
    assert definition.parameters, "editable defaults belong under parameters:"


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_file_says_time_limits_are_our_defaults(process_id: str) -> None:
    text = (DEFAULT_DIR / f"{process_id}.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "# yaml-language-server: $schema=../schema/process-definition.json"
    header = "\n".join(line for line in lines[:12] if line.startswith("#"))
    assert "DEFAULT OF OURS" in header


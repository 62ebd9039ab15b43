"""One status and one breach rate per case clock, checked against a log written by hand.

Six cases of a one-step process with one case clock (`resolution`, 4 h):
  c1 stopped in time                     -> met
  c2 reached 100 %, then stopped late    -> breached (once, not also met)
  c3 stopped over its target             -> breached
  c4 cancelled with the case             -> cancelled
  c5 reached 100 %, then cancelled       -> breached (a breach is not undone by cancelling)
  c6 still running at the end of the log -> running
so: started 6, met 1, breached 3, cancelled 1, running 1; breach rate 3 / (1 + 3) = 75 %.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from analytics.model import ClockStats
from analytics.stats import compute_stats
from engine.definition.graph import ProcessGraph
from engine.definition.library import ProcessLibrary
from engine.run.log import LogEntry
from visualize.review import Review, review_html, review_markdown

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLOCKED = """
id: clocked_review
version: 1
name: {zh: 计时流程, en: Clocked process}
lanes:
  - {id: clerk, name: {zh: 办事员, en: Clerk}}
clocks:
  - id: resolution
    name: {zh: 解决时限, en: Resolution}
    stop_on: [work]
    policies:
      - {target: 4h}
nodes:
  - {id: start, kind: start}
  - {id: work, kind: human, lane: clerk}
  - {id: end, kind: end}
edges:
  - {from: start, to: work}
  - {from: work, to: end}
"""
CLOCK = "case:resolution"


def clocked_graph() -> ProcessGraph:
    library = ProcessLibrary()
    return library.graph_of(library.add_text(CLOCKED, "clocked.yaml"))


def events() -> list[LogEntry]:
    out: list[LogEntry] = []
    start = datetime(2025, 9, 22, 9, 0, tzinfo=SHANGHAI)

    def emit(case: str, minutes: int, type_: str, node: str | None = None, **data: Any) -> None:
        out.append(LogEntry(case, "clocked_review", len(out) + 1, start + timedelta(minutes=minutes), type_, node,
                            data))

    for case in ("c1", "c2", "c3", "c4", "c5", "c6"):
        emit(case, 0, "case_started", None, data={})
        emit(case, 0, "sla_started", None, clock=CLOCK, target="4h", due_at=None)
    emit("c1", 60, "sla_met", "work", clock=CLOCK, in_time=True, consumed=3600, target=14400)
    emit("c1", 60, "case_completed", None, outcome="end")
    emit("c2", 240, "sla_breached", None, clock=CLOCK, percent=100, level=1, due=None)
    emit("c2", 300, "sla_met", "work", clock=CLOCK, in_time=False, consumed=18000, target=14400)
    emit("c2", 300, "case_completed", None, outcome="end")
    emit("c3", 300, "sla_met", "work", clock=CLOCK, in_time=False, consumed=18000, target=14400)
    emit("c3", 300, "case_completed", None, outcome="end")
    emit("c4", 30, "sla_stopped", None, clock=CLOCK)
    emit("c4", 30, "case_cancelled", None, outcome="withdrawn")
    emit("c5", 240, "sla_breached", None, clock=CLOCK, percent=100, level=1, due=None)
    emit("c5", 250, "sla_stopped", None, clock=CLOCK)
    emit("c5", 250, "case_cancelled", None, outcome="withdrawn")
    return sorted(out, key=lambda e: (e.at, e.seq))


@pytest.fixture(scope="module")
def clock() -> ClockStats:
    return compute_stats(clocked_graph(), events()).clocks[CLOCK]


def test_met_counts_only_clocks_stopped_within_their_target(clock: ClockStats) -> None:
    assert clock.met == 1


def test_a_clock_that_breached_and_then_stopped_late_is_breached_once(clock: ClockStats) -> None:
    assert clock.breached == 3


def test_cancelled_counts_clocks_stopped_with_the_case_before_any_breach(clock: ClockStats) -> None:
    assert clock.cancelled == 1


def test_running_is_what_has_no_status_yet(clock: ClockStats) -> None:
    assert (clock.started, clock.running) == (6, 1)


def test_breach_rate_is_breached_among_decided_clocks(clock: ClockStats) -> None:
    assert clock.breach_rate == pytest.approx(0.75)


def test_review_shows_one_breach_rate_per_clock_and_no_pooled_rate() -> None:
    graph = clocked_graph()
    review = Review(graph, compute_stats(graph, events()))
    page = review_html(review, render_svg=False)
    assert "case-clock breach rate" not in page
    assert "Resolution" in page and "75.0 %" in page
    assert "3 breached, 1 met, 1 running" in review_markdown(review)

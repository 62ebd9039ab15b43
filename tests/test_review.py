"""Process review: statistics from a small hand-made event log, and the self-contained HTML report.

The log is written by hand (not by the engine) so every expected number below can be checked
with a pencil: four cases of a two-step process, one of which loops back once.
"""

from __future__ import annotations

import os
import random
import re
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.definition.graph import ProcessGraph
from engine.definition.library import ProcessLibrary
from engine.run.log import LogEntry
from analytics import parallel as parallel_module
from analytics.business_time import Stamps
from visualize.review import (
    Review, build_review, publish_review_artifact, review_html, review_markdown, write_review,
)
from simulation.scenario import load_scenario
from simulation.simulator import SimulationResult, simulate
from analytics.stats import (
    WORKERS_ENV, BusinessTime, ProcessStats, compress_loops, compute_stats, quantile, quantile_of_runs,
    review_workers, status_of,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
AS_IS = Path(__file__).resolve().parent.parent / "scenarios" / "complaint_as_is.yaml"
pytest_plugins = ["tests.conftest_prefect"]  # the session's Prefect test server, for the artifact test
MINI = """
id: mini_review
version: 1
name: {zh: 小流程, en: Mini process}
lanes:
  - {id: clerk, name: {zh: 办事员, en: Clerk}}
  - {id: boss, name: {zh: 主管, en: Boss}}
data:
  retry: {type: boolean, default: false}
nodes:
  - {id: start, kind: start}
  - {id: check, kind: human, lane: clerk, sla: {target: 2h}}
  - {id: route, kind: exclusive}
  - {id: approve, kind: human, lane: boss, sla: {target: 1h}}
  - {id: end, kind: end}
edges:
  - {from: start, to: check}
  - {from: check, to: route}
  - {from: route, to: check, when: data.retry}
  - {from: route, to: approve, default: true}
  - {from: approve, to: end}
"""
TARGETS = {"check": ("2h", 7200), "approve": ("1h", 3600)}
ROLES = {"check": "clerk", "approve": "boss"}


def mini_graph() -> ProcessGraph:
    library = ProcessLibrary()
    return library.graph_of(library.add_text(MINI, "mini.yaml"))


class LogWriter:
    """Writes the events the interpreter would write for a case walking the given steps."""

    def __init__(self) -> None:
        self.events: list[LogEntry] = []

    def emit(self, case_id: str, seq: list[int], at: datetime, type_: str, node: str | None, **data: Any) -> None:
        seq[0] += 1
        self.events.append(LogEntry(case_id, "mini_review", seq[0], at, type_, node, data))

    def case(self, case_id: str, start: datetime, steps: list[tuple[str, int]]) -> None:
        """steps: (human node, wall minutes), in order; gateways and edges are added as the engine would."""
        seq = [0]
        now = start
        self.emit(case_id, seq, now, "case_started", None, data={})
        self.emit(case_id, seq, now, "node_entered", "start", token="t1", kind="start")
        self.emit(case_id, seq, now, "node_completed", "start", token="t1")
        self.emit(case_id, seq, now, "edge_taken", "start", edge="start->check", to="check")
        for index, (node, minutes) in enumerate(steps):
            task = f"{case_id}-k{index}"
            text, target = TARGETS[node]
            self.emit(case_id, seq, now, "node_entered", node, token="t1", kind="human")
            self.emit(case_id, seq, now, "sla_started", node, clock=f"task:{task}", target=text, due_at=None)
            self.emit(case_id, seq, now, "task_opened", node, task_id=task, role=ROLES[node], due_at=None,
                      priority="normal")
            done = now + timedelta(minutes=minutes)
            business = BusinessTime(mini_graph().calendar).between(now, done)
            self.emit(case_id, seq, done, "task_completed", node, task_id=task, actor="x", role=ROLES[node],
                      output={})
            self.emit(case_id, seq, done, "sla_met", node, clock=f"task:{task}", in_time=business <= target,
                      consumed=int(business), target=target)
            self.emit(case_id, seq, done, "node_completed", node, token="t1")
            now = done
            if node == "check":
                nxt = steps[index + 1][0]
                self.emit(case_id, seq, now, "edge_taken", "check", edge="check->route", to="route")
                self.emit(case_id, seq, now, "node_entered", "route", token="t1", kind="exclusive")
                self.emit(case_id, seq, now, "node_completed", "route", token="t2")
                self.emit(case_id, seq, now, "edge_taken", "route", edge=f"route->{nxt}", to=nxt)
            else:
                self.emit(case_id, seq, now, "edge_taken", "approve", edge="approve->end", to="end")
        self.emit(case_id, seq, now, "node_entered", "end", token="t1", kind="end")
        self.emit(case_id, seq, now, "node_completed", "end", token="t1")
        self.emit(case_id, seq, now, "case_completed", None, outcome="end")


def day(n: int) -> datetime:
    """9:00 on working days of the week of 22 September 2025 (Monday = 0)."""
    return datetime(2025, 9, 22 + n, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def events() -> list[LogEntry]:
    log = LogWriter()
    log.case("c1", day(0), [("check", 30), ("approve", 60)])
    log.case("c2", day(1), [("check", 30), ("check", 30), ("approve", 180)])  # approve runs over lunch
    log.case("c3", day(2), [("check", 110), ("approve", 60)])
    log.case("c4", day(3), [("check", 40), ("approve", 90)])
    return log.events


@pytest.fixture(scope="module")
def stats(events: list[LogEntry]) -> Any:
    return compute_stats(mini_graph(), events)


# -- statistics ------------------------------------------------------------------------------------
def test_quantile_interpolates_between_ranks() -> None:
    assert quantile([30, 30, 30, 40, 110], 0.5) == 30
    assert quantile([30, 30, 30, 40, 110], 0.9) == pytest.approx(82)
    assert quantile([], 0.5) is None


def test_status_colours_follow_median_and_p90_against_target() -> None:
    assert status_of(0.5, 1.0) == "green"
    assert status_of(1.0, 1.4) == "amber"
    assert status_of(1.2, 1.4) == "red"
    assert status_of(None, None) == "none"


def test_step_volume_counts_every_entry_including_rework(stats: Any) -> None:
    assert stats.steps["check"].entered == 5
    assert stats.steps["check"].cases == 4
    assert stats.steps["approve"].entered == 4


def test_step_median_and_p90_in_business_hours(stats: Any) -> None:
    check = stats.steps["check"]
    assert check.median_business_h == pytest.approx(0.5)
    assert check.p90_business_h == pytest.approx(82 / 60)


def test_business_time_excludes_the_lunch_break_but_wall_time_does_not(stats: Any) -> None:
    approve = stats.steps["approve"]  # business [60, 120, 60, 90] min; wall [60, 180, 60, 90]
    assert approve.median_business_h == pytest.approx(75 / 60)
    assert approve.p90_business_h == pytest.approx(111 / 60)
    assert approve.p90_wall_h == pytest.approx(153 / 60)


def test_step_status_green_within_target_and_red_when_median_over(stats: Any) -> None:
    assert stats.steps["check"].status == "green"  # p90 1.37 h <= 2 h
    assert stats.steps["approve"].status == "red"  # median 1.25 h > 1 h
    assert stats.steps["start"].status == "none"


def test_step_breach_rate_counts_clocks_that_ended_over_target(stats: Any) -> None:
    approve = stats.steps["approve"]
    assert (approve.sla_started, approve.sla_breached) == (4, 2)
    assert approve.breach_rate == pytest.approx(0.5)
    assert stats.steps["check"].breach_rate == 0


def test_path_variants_compress_the_loop_and_count_cases(stats: Any) -> None:
    variants = [(v.cases, v.text) for v in stats.variants]
    assert variants == [
        (3, "start → check → approve → end"),
        (1, "start → (check)↻ → approve → end"),
    ]


def test_compress_loops_collapses_repeated_blocks() -> None:
    assert compress_loops(["a", "b", "c", "b", "c", "b", "c", "d"]) == ("a", "(b → c)↻", "d")
    assert compress_loops(["a", "b", "a", "c"]) == ("a", "b", "a", "c")


def test_rework_counts_re_entries_of_a_node_within_a_case(stats: Any) -> None:
    assert [(r.node, r.cases_with_rework, r.reentries, r.max_visits) for r in stats.rework] == [("check", 1, 1, 2)]


def test_edge_frequencies(stats: Any) -> None:
    counts = {key: edge.count for key, edge in stats.edges.items()}
    assert counts == {"start->check": 4, "check->route": 5, "route->check": 1, "route->approve": 4,
                      "approve->end": 4}


def test_workload_per_role_counts_tasks_and_open_hours(stats: Any) -> None:
    clerk, boss = stats.roles["clerk"], stats.roles["boss"]
    assert (clerk.opened, clerk.completed) == (5, 5)
    assert clerk.open_business_h == pytest.approx((30 + 30 + 30 + 110 + 40) / 60)
    assert boss.completed == 4
    assert boss.open_wall_h == pytest.approx((60 + 180 + 60 + 90) / 60)


def test_slowest_case_is_ranked_by_business_cycle_time(stats: Any) -> None:
    slowest = stats.slowest[0]
    assert slowest.case_id == "c2"
    assert slowest.cycle_business_h == pytest.approx(3.0)
    assert slowest.cycle_wall_h == pytest.approx(4.0)
    assert slowest.reentries == 1


def test_cases_outside_the_period_are_left_out(events: list[LogEntry]) -> None:
    stats = compute_stats(mini_graph(), events, since=day(1), until=day(3))
    assert stats.cases == 2
    assert stats.steps["check"].entered == 3


def test_business_time_matches_the_calendar() -> None:
    calendar = mini_graph().calendar
    fast = BusinessTime(calendar)
    a = datetime(2025, 9, 26, 16, 20, tzinfo=SHANGHAI)  # Friday afternoon, over the weekend
    for hours in (0.5, 3, 30, 200, 2000):
        b = a + timedelta(hours=hours)
        assert fast.between(a, b) == calendar.between(a, b)


# -- reading a long log in several processes ---------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated() -> SimulationResult:
    """A real log: cases interleaved in time, sub-process children, escalations, rework."""
    return simulate(load_scenario(AS_IS), cases=300, seed=5)


def same_statistics(one: ProcessStats, other: ProcessStats) -> None:
    """Equal as data, in the same order (tables list dict entries in order), and as the page shows them."""
    assert other.to_dict() == one.to_dict()
    for name in ("steps", "edges", "roles", "clocks", "escalations_by_kind"):
        assert list(getattr(other, name)) == list(getattr(one, name)), name
    assert other.slowest == one.slowest and other.variants == one.variants


def test_parallel_reading_gives_exactly_the_statistics_of_one_process(simulated: SimulationResult) -> None:
    one = compute_stats(simulated.graph, simulated.events, workers=1)
    two = compute_stats(simulated.graph, simulated.events, workers=2, min_parallel_events=0)
    assert (one.workers, two.workers) == (1, 2)
    same_statistics(one, two)
    pages = [review_html(Review(simulated.graph, s)) for s in (one, two)]
    assert pages[0] == pages[1]


@pytest.mark.parametrize("workers", [3, 5])
def test_parallel_reading_of_a_period_matches_one_process(simulated: SimulationResult, workers: int) -> None:
    events = simulated.events
    period = {"since": events[len(events) // 10].at, "until": events[len(events) * 2 // 3].at}
    one = compute_stats(simulated.graph, events, workers=1, **period)
    many = compute_stats(simulated.graph, events, workers=workers, min_parallel_events=0, **period)
    assert many.workers == workers
    same_statistics(one, many)


def test_reading_in_many_small_chunks_matches_one_process(simulated: SimulationResult,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers going backwards hold events back at every chunk boundary: many boundaries, many replays."""
    monkeypatch.setattr(parallel_module, "_CHUNKS_PER_READER", 1000)
    one = compute_stats(simulated.graph, simulated.events, workers=1)
    for workers in (2, 4):
        same_statistics(one, compute_stats(simulated.graph, simulated.events, workers=workers, min_parallel_events=0))


def test_a_worker_that_fails_leaves_its_stretch_to_the_parent(simulated: SimulationResult,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    one = compute_stats(simulated.graph, simulated.events, workers=1)
    monkeypatch.setattr(parallel_module, "_child", lambda conn, *args: conn.close())  # sends nothing
    two = compute_stats(simulated.graph, simulated.events, workers=2, min_parallel_events=0)
    same_statistics(one, two)


def test_workers_that_die_after_taking_chunks_leave_them_to_the_parent(simulated: SimulationResult,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def take_some_and_die(conn: Any, ctx: Any, rows: Any, plan: Any, reader: tuple[int, bool], slowest: int) -> None:
        for _ in range(3):
            plan.claim(*reader)
        os._exit(1)

    one = compute_stats(simulated.graph, simulated.events, workers=1)
    monkeypatch.setattr(parallel_module, "_child", take_some_and_die)
    for workers in (2, 4):  # with 4, both readers of the second segment die
        same_statistics(one, compute_stats(simulated.graph, simulated.events, workers=workers, min_parallel_events=0))


def test_quantile_of_sorted_runs_is_the_quantile_of_their_merge() -> None:
    rnd = random.Random(7)
    runs = [sorted(rnd.choice([0.5, 1.25, 3.0]) * rnd.randint(0, 40) for _ in range(n)) for n in (0, 1, 57, 200)]
    merged = sorted(v for run in runs for v in run)
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert quantile_of_runs(runs, q) == quantile(merged, q)
        assert quantile_of_runs(runs, q, 3600) == quantile([v / 3600 for v in merged], q)
    assert quantile_of_runs([[], []], 0.5) is None


def test_long_logs_are_read_by_as_many_processes_as_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    monkeypatch.setattr(parallel_module, "_cpus", lambda: 4)
    assert review_workers(2_000_000) == 4
    monkeypatch.setattr(parallel_module, "_cpus", lambda: 1)
    assert review_workers(2_000_000) == 1


def test_short_logs_are_read_in_one_process_whatever_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, "4")
    assert review_workers(parallel_module.PARALLEL_MIN_EVENTS - 1) == 1
    assert review_workers(10_000, workers=4) == 1
    assert review_workers(10_000, workers=4, min_events=10_000) == 4


def test_the_environment_sets_the_worker_count_and_the_keyword_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel_module, "_cpus", lambda: 8)
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert review_workers(2_000_000) == 3
    assert review_workers(2_000_000, workers=2) == 2
    monkeypatch.setenv(WORKERS_ENV, "1")
    assert review_workers(2_000_000) == 1


def test_a_bad_worker_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, "many")
    with pytest.raises(ValueError, match=WORKERS_ENV):
        review_workers(2_000_000)
    with pytest.raises(ValueError):
        review_workers(2_000_000, workers=0)


def test_without_fork_a_log_is_read_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel_module, "_can_fork", lambda: False)
    assert review_workers(2_000_000, workers=2) == 1


def test_fast_timestamps_equal_datetime_timestamp_also_across_dst_changes() -> None:
    stamps = Stamps()
    berlin = ZoneInfo("Europe/Berlin")
    instants = [datetime(2025, 3, 30, 1, 59, 59, tzinfo=berlin), datetime(2025, 3, 30, 3, 0, 1, tzinfo=berlin),
                datetime(2025, 10, 26, 2, 30, tzinfo=berlin), datetime(2025, 10, 26, 2, 30, fold=1, tzinfo=berlin),
                datetime(2025, 10, 27, 9, 15, 7, 250_001, tzinfo=berlin), datetime(2025, 10, 27, 23, 59, tzinfo=berlin),
                datetime(2025, 10, 27, 8, 0, tzinfo=UTC), datetime(2025, 10, 27, 8, 0)]
    stamps.zone = berlin
    for at in instants * 2:  # the second round reads the day table
        assert stamps.slow(at) == at.timestamp(), at


# -- the report -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(events: list[LogEntry]) -> str:
    return review_html(build_review(mini_graph(), events))


def test_review_html_has_no_network_reference_except_xml_namespaces(page: str) -> None:
    found = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert found <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page


def test_review_html_inlines_the_heatmap_svg(page: str) -> None:
    assert "<svg" in page and "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert 'id="node&#45;approve"' in page  # graphviz writes '-' in ids as &#45;


def test_review_html_has_the_key_sections(page: str) -> None:
    for section in ("heatmap", "steps", "variants", "rework", "workload", "sla", "escalations", "slowest"):
        assert f'id="{section}"' in page, section
    assert "start → (check)↻ → approve → end" in page


def test_write_review_writes_html_and_png_next_to_it(events: list[LogEntry], tmp_path: Path) -> None:
    html_path, png_path = write_review(build_review(mini_graph(), events), tmp_path / "out" / "report.html")
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert png_path == tmp_path / "out" / "report.png"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_summary_lists_steps_with_status(events: list[LogEntry]) -> None:
    text = review_markdown(build_review(mini_graph(), events))
    assert "| approve | 4 |" in text and "red" in text


def test_publishing_outside_a_prefect_run_does_nothing(events: list[LogEntry]) -> None:
    assert publish_review_artifact(build_review(mini_graph(), events)) is False


def test_review_command_reads_the_store_and_writes_the_report(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from engine.time.clock import FakeClock
    from engine.run.runtime import Engine, LogNotifier
    from engine.store.sql import Store
    from svcflow.cli import app

    url = f"sqlite:///{tmp_path / 'svcflow.db'}"
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", url)
    engine = Engine(Store(url), ProcessLibrary.from_dir(), clock=FakeClock(day(0)), notifier=LogNotifier())
    for case_id in ("R1", "R2"):
        engine.start("complaint_handling", {"tier": "gold"}, case_id=case_id)
    engine.store.dispose()
    out = tmp_path / "review" / "report.html"
    result = CliRunner().invoke(app, ["review", "complaint_handling", "--since", "2025-09-01", "--until",
                                      "2025-09-30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 case(s)" in result.output
    assert out.exists() and out.with_suffix(".png").exists()
    assert 'id="steps-table"' in out.read_text(encoding="utf-8")


@pytest.mark.prefect
def test_review_is_published_as_artifacts_inside_a_flow_run(prefect_api: str, events: list[LogEntry]) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    @flow(name="review-test")
    def review_flow() -> bool:
        return publish_review_artifact(build_review(mini_graph(), events))

    assert review_flow() is True
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["review-mini-review", "review-mini-review-steps"])))
    assert {(a.key, a.type) for a in found} >= {("review-mini-review", "markdown"), ("review-mini-review-steps", "table")}

"""The review's process-mining views on the hand-written log of test_review (four cases of check → approve).

Arc check → approve is the time from check's completion to approve's completion, in business minutes
c1 60, c2 120 (10:00 → 13:00 over the 12:00–13:30 lunch), c3 60, c4 90: median 75 min; check → check
(c2's loop) once, 30 min. All four cases start in ISO week 2025-W39 and record no tier.
"""

from __future__ import annotations

from typing import Any

import pytest

from analytics.views import UNRECORDED, Views, compute_views
from engine.definition.library import ProcessLibrary
from engine.run.log import LogEntry
from tests.test_review import LogWriter, day, mini_graph
from visualize.review import Review, build_review, named_path, review_html
from visualize.review_charts import dotted_chart_svg, performance_spectrum_svg


@pytest.fixture(scope="module")
def events() -> list[LogEntry]:
    log = LogWriter()
    log.case("c1", day(0), [("check", 30), ("approve", 60)])
    log.case("c2", day(1), [("check", 30), ("check", 30), ("approve", 180)])
    log.case("c3", day(2), [("check", 110), ("approve", 60)])
    log.case("c4", day(3), [("check", 40), ("approve", 90)])
    return log.events


@pytest.fixture(scope="module")
def views(events: list[LogEntry]) -> Views:
    return compute_views(mini_graph(), events)


def test_time_on_an_arc_runs_from_one_completion_to_the_next(views: Views) -> None:
    arcs = {(a.source, a.target): (a.count, a.median_h) for a in views.arcs}
    assert arcs[("check", "approve")] == (4, pytest.approx(75 / 60))
    assert arcs[("check", "check")] == (1, pytest.approx(0.5))
    assert set(arcs) == {("check", "approve"), ("check", "check")}


def test_breakdown_by_tier_groups_cases_without_one_as_not_recorded(views: Views) -> None:
    (group,) = views.by_field["tier"]
    assert (group.key, group.cases, group.finished) == (UNRECORDED, 4, 4)


def test_weekly_trend_counts_cases_by_their_start_week(views: Views) -> None:
    assert [(g.key, g.cases, g.finished) for g in views.weeks] == [("2025-W39", 4, 4)]
    assert views.weeks[0].median_cycle_h == pytest.approx(2.5)  # cycles 1.5, 2.17, 2.83, 3.0 business hours


def test_dotted_chart_draws_a_dot_per_activity_and_a_legend_entry_per_step(views: Views) -> None:
    svg = dotted_chart_svg(views.sample, str)
    assert svg.startswith('<svg') and svg.count("<circle") == 9 + 2


def test_performance_spectrum_draws_a_line_per_arc_occurrence_leaving_out_self_loops(views: Views) -> None:
    svg = performance_spectrum_svg(views.sample, views.arcs, str)
    assert svg.count('stroke-opacity="0.55"') == 4  # check → approve four times; check → check is no band


def test_variants_are_named_by_step_names_inside_loops_too() -> None:
    library = ProcessLibrary.from_dir()
    graph = library.get("complaint_handling")
    assert named_path(graph, ("start", "(handle → reply_customer)↻", "close")) == \
        "收到投诉 → (调查处理 → 答复客户)↻ → 结案"


def test_the_review_page_has_the_new_sections(events: list[LogEntry]) -> None:
    review: Review = build_review(mini_graph(), events)
    page: Any = review_html(review, render_svg=False)
    for ident in ("arcs-table", "by-tier-table", "by-category-table", "trends-table", "dotted-chart",
                  "performance-spectrum"):
        assert f'id="{ident}"' in page, ident


def test_a_long_log_gets_the_views_only_on_request(events: list[LogEntry], monkeypatch: pytest.MonkeyPatch) -> None:
    import visualize.review as review_module

    monkeypatch.setattr(review_module, "VIEWS_AUTO_MAX_EVENTS", len(events))  # this log now counts as long
    assert build_review(mini_graph(), events).views is None
    asked = build_review(mini_graph(), events, views=True).views
    assert asked is not None and asked.cases == 4


def test_a_long_log_follows_a_fixed_sample_of_cases_for_arcs_but_counts_all(events: list[LogEntry]) -> None:
    views = compute_views(mini_graph(), events, expected_cases=4, traced_cases=2)  # every second case by id
    assert views.cases == 4 and sum(g.cases for g in views.by_field["tier"]) == 4
    assert views.traced == 1  # crc32 of c1, c2, c3 is odd, of c4 even: c4 alone is followed
    assert [(a.source, a.target, a.count) for a in views.arcs] == [("check", "approve", 1)]


def test_activities_past_the_palette_are_drawn_as_squares() -> None:
    from datetime import timedelta

    from analytics.views import SampleCase
    from visualize.review_charts import PALETTE

    start = day(0)
    steps = [(f"s{i}", start + timedelta(minutes=i)) for i in range(len(PALETTE) + 1)]
    svg = dotted_chart_svg([SampleCase("c", start, steps[-1][1], steps)], str)
    assert svg.count("<rect") == 2  # the thirteenth activity's dot and its legend mark
    assert svg.count("<circle") == 2 * len(PALETTE)

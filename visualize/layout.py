"""Where things go on a chart: lanes, loops, and full-width lane bands in the definition's order.

Graphviz's `dot` is good at one thing we need (ordering steps left to right and keeping edges
short) and bad at another: it draws lanes as clusters in an order of its own choosing, each as
wide as its own steps. So a chart is laid out twice. `dot` first lays out the steps with one
cluster per lane; then every lane becomes a band spanning the whole chart, stacked in the
definition's lane order (customer-facing first), each step keeping its column and its place
inside its lane; `neato -n2` finally routes the edges around the steps at those fixed positions.
Positions depend only on the definition, so a small edit moves only what it touches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.definition.graph import ProcessGraph
from visualize.geometry import Layout, NodeBox

LANE_PAD = 8.0  # points between a band's edge and the steps inside it
HEADER_GAP = 8.0  # points between the lane names' column and the first step
TIGHT_PAD = 4.0  # LANE_PAD on a compacted chart: every point of height counts there
ROW_GAP = 6.0  # points between two rows of steps in one (packed) lane
BLOCK_GAP = 12.0  # points between the title, the bands and the legend
LOOP_ROOM = 10.0  # points of corridor for rework loops: along the top of a band, right of the steps
LOOP_STEP = 4.0  # points between two loops sharing a corridor
ARROW = 7.0  # points an arrowhead takes (Graphviz's 10 × arrowsize 0.7)
CAPTION_GAP = 4.0  # points between two captions side by side
STEP_GAP = 10.0  # points between two steps side by side in one lane
FLOW_GAP = 12.0  # points between a step and the next one in the same lane: room for the arrow
CROSS_GAP = 24.0  # points a step in another lane stands right of the step before it (centre to centre)


def assign_lanes(graph: ProcessGraph) -> dict[str, str]:
    """Every node's lane: its own, else its neighbours' (a gateway sits with the role that decides,
    an automatic step or a timer with the step it serves), else the first lane of the definition.

    There is no "System" lane: it would be a lane no role owns, pulling automatic steps away
    from the work they belong to.
    """
    definition = graph.definition
    lanes: dict[str, str] = {}
    for node in definition.nodes:
        lane = getattr(node, "lane", None)
        if lane:
            lanes[node.id] = lane
    lane_order = {lane.id: i for i, lane in enumerate(definition.lanes)}
    normal = [e for e in definition.edges if e.kind != "escalation"]
    preds: dict[str, list[str]] = {node_id: [] for node_id in graph.nodes}
    succs: dict[str, list[str]] = {node_id: [] for node_id in graph.nodes}
    for edge in normal:
        if edge.source in graph.nodes and edge.target in graph.nodes:
            succs[edge.source].append(edge.target)
            preds[edge.target].append(edge.source)
    changed = True
    while changed:
        changed = False
        for node in definition.nodes:
            if node.id in lanes:
                continue
            # predecessors weigh more: a gateway belongs to whoever just decided
            votes: dict[str, int] = {}
            for other in preds[node.id]:
                if other in lanes:
                    votes[lanes[other]] = votes.get(lanes[other], 0) + 2
            for other in succs[node.id]:
                if other in lanes:
                    votes[lanes[other]] = votes.get(lanes[other], 0) + 1
            if len(preds[node.id]) > 1 and len(succs[node.id]) == 1 and succs[node.id][0] in lanes:
                votes = {lanes[succs[node.id][0]]: 1}  # a join sits with the step that follows it
            if votes:
                lanes[node.id] = min(votes, key=lambda lane: (-votes[lane], lane_order.get(lane, 999), lane))
                changed = True
    first = definition.lanes[0].id if definition.lanes else ""
    for node in definition.nodes:
        lanes.setdefault(node.id, first)
    return lanes


def back_edges(graph: ProcessGraph) -> set[int]:
    """Indexes (in definition.edges) of edges that close a loop: the rework loops.

    They are drawn without ranking constraint so rework loops run back across the chart instead
    of bending it out of left-to-right. Which edge of a cycle is "the way back" is found by a
    depth-first walk from the start that follows each gateway's default edge first, then the
    others in file order: the default path is the main path, so an edge back onto the walk's
    current path is a loop, and a shortcut (say to the major-complaint handling) stays a
    forward edge. Every cycle has such an edge, so what remains is acyclic.
    """
    definition = graph.definition
    order = {node.id: i for i, node in enumerate(definition.nodes)}
    index_of = {id(edge): i for i, edge in enumerate(definition.edges)}
    children: dict[str, list[tuple[int, str]]] = {node_id: [] for node_id in order}
    for edge in definition.edges:
        if edge.kind != "escalation" and edge.source in order and edge.target in order:
            children[edge.source].append((index_of[id(edge)], edge.target))
    for outgoing in children.values():
        outgoing.sort(key=lambda item: (not definition.edges[item[0]].default, item[0]))
    found: set[int] = set()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    roots = ([graph.start_id] if graph.start_id in order else []) + list(order)
    for root in roots:
        if root is None or root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node_id, position = stack[-1]
            if position == len(children[node_id]):
                state[node_id] = 2
                stack.pop()
                continue
            stack[-1] = (node_id, position + 1)
            edge_index, target = children[node_id][position]
            if state.get(target) == 1:
                found.add(edge_index)
            elif target not in state:
                state[target] = 1
                stack.append((target, 0))
    return found


def pack_rows(boxes: Sequence[NodeBox]) -> list[tuple[float, list[NodeBox]]]:
    """A lane's steps in as few rows as their columns allow: (row height, boxes) from the top.

    `dot` stacks a lane's steps wherever its edges pull them, so a lane with five steps in five
    different columns can come out three rows tall. Only steps whose columns overlap need rows
    of their own; they are taken top to bottom in `dot`'s order, each into the first row where
    its column is free, so steps sharing a column keep their order.
    """
    rows: list[list[NodeBox]] = []
    for box in sorted(boxes, key=lambda b: (-b.y, b.x, b.name)):
        for row in rows:
            if all(abs(box.x - other.x) >= (box.width + other.width) / 2 + ROW_GAP for other in row):
                row.append(box)
                break
        else:
            rows.append([box])
    return [(max(box.height for box in row), row) for row in rows]


def compact_columns(boxes: Mapping[str, tuple[float, float, float, float]], lanes: Mapping[str, str],
                    flows: Sequence[tuple[str, str, float]], left: float,
                    drawn: Mapping[str, float] | None = None) -> dict[str, float]:
    """New centre x of every step: each as far left as its neighbours allow, in `dot`'s left-to-right order.

    `boxes` maps a step to (x, width, top, bottom) as first placed (y down), `lanes` to its lane,
    `flows` lists forward edges (source, target, room for the label). `dot` gives every column
    the width of its widest step across all lanes, so ten lanes make a chart far wider than any
    one lane needs. Here a step only keeps clear of the steps beside it in its own band (those
    whose rows overlap it) and follows its predecessors: in the same lane after the arrow and
    its label; in another lane, from just right of the predecessor's centre, so the hand-over
    reads left to right as a short diagonal. The order of the steps in a band never changes.
    `drawn` gives a step's width as drawn where it is wider than its box (an event's caption):
    steps of one lane keep clear of each other's captions too.
    """
    def reach(name: str) -> float:  # half the drawn width, beyond the box's own half
        return max(0.0, ((drawn or {}).get(name, boxes[name][1]) - boxes[name][1]) / 2)

    order = sorted(boxes, key=lambda name: (boxes[name][0], name))
    incoming: dict[str, list[tuple[str, float]]] = {}
    for source, target, room in flows:
        if source in boxes and target in boxes:
            incoming.setdefault(target, []).append((source, room))
    placed: dict[str, float] = {}  # name -> new left edge
    in_lane: dict[str, list[str]] = {}
    for name in order:
        x, width, top, bottom = boxes[name]
        start = left
        for other in in_lane.get(lanes[name], []):
            _, o_width, o_top, o_bottom = boxes[other]
            if top < o_bottom - 0.5 and o_top < bottom - 0.5:
                start = max(start, placed[other] + o_width + max(STEP_GAP, reach(other) + reach(name) + CAPTION_GAP))
        for source, room in incoming.get(name, []):
            if source not in placed:
                continue  # an edge `dot` drew right to left: it constrains nothing
            s_width = boxes[source][1]
            _, _, s_top, s_bottom = boxes[source]
            if lanes[source] == lanes[name] and top < s_bottom and s_top < bottom:  # side by side: the label between
                start = max(start, placed[source] + s_width
                            + max(FLOW_GAP, room, reach(source) + reach(name) + CAPTION_GAP))
            elif lanes[source] == lanes[name]:  # one above the other: the label beside the slanted edge
                start = max(start, placed[source] + s_width + FLOW_GAP)
            else:
                start = max(start, placed[source] + s_width / 2 + CROSS_GAP - width / 2)
        placed[name] = start
        in_lane.setdefault(lanes[name], []).append(name)
    return {name: round(placed[name] + boxes[name][1] / 2, 1) for name in placed}


def _headers_inside(down: dict[str, tuple[float, float]], bands_down: dict[str, tuple[float, float]],
                    lane_members: Sequence[tuple[str, str, Sequence[str]]], boxes: Mapping[str, NodeBox],
                    drawn: Mapping[str, float], pad: float) -> None:
    """Put each lane's name (one line) in its band's top-left corner, and the band's steps below it
    only where a step reaches into that corner; later bands move down as much.

    On a compacted chart the first steps of most lanes stand far right of the chart's left edge
    (they follow their predecessors in other lanes), so a column for the names would widen the
    whole chart for the sake of one or two bands. Top-down, y grows downwards; changed in place.
    """
    offset = 0.0
    for lane_id, header, names in lane_members:
        top, bottom = bands_down[lane_id]
        top, bottom = top + offset, bottom + offset
        corner = pad + boxes[header].width + HEADER_GAP
        steps = [name for name in names if name in drawn]
        for name in names:
            down[name] = (down[name][0], down[name][1] + offset)
        if steps and any(down[name][0] - drawn[name] / 2 < corner for name in steps):
            lift = boxes[header].height + 2
            for name in names:
                down[name] = (down[name][0], down[name][1] + lift)
            bottom += lift
            offset += lift
        if not steps:  # a lane without steps: its note beside its name
            for name in names:
                down[name] = (corner + boxes[name].width / 2, down[name][1])
        down[header] = (pad + boxes[header].width / 2, top + 2 + boxes[header].height / 2)
        bands_down[lane_id] = (top, bottom)


@dataclass
class Placement:
    """Fixed positions (Graphviz points, y up) of every node, and each lane band's box."""

    width: float
    height: float
    nodes: dict[str, tuple[float, float]] = field(default_factory=dict)
    bands: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    sizes: dict[str, tuple[float, float]] = field(default_factory=dict)


def place(first_pass: Layout, lane_members: Sequence[tuple[str, str, Sequence[str]]],
          above: Sequence[str], below: Sequence[str],
          captions: Mapping[str, tuple[str, float]] | None = None, headers_on_top: bool = False,
          loop_lanes: Sequence[str] = (), packed: bool = False,
          flows: Sequence[tuple[str, str, float]] | None = None, corner_headers: bool = False) -> Placement:
    """Stack the lanes of a first `dot` pass as full-width bands.

    `lane_members` is (lane id, header node, member nodes) in the definition's lane order;
    `above` and `below` are free-standing blocks (title, legend) placed left-aligned above and
    below the bands; `captions` maps a caption node to (its shape's node, the shape's height):
    a caption hangs right under its shape. Lane names take a column on the left, or with
    `headers_on_top` a line at the top of each band (narrower, for charts limited by width).
    With `packed`, each lane's steps are packed into as few rows as their columns allow (see
    `pack_rows`): a lower chart, but edges between lanes may cross where `dot` had them apart.
    Lanes in `loop_lanes` receive rework loops: they get a corridor along their top, and the
    chart a corridor on its right, for the loops to run in (see `loop_route`).
    With `flows` (forward edges: source, target, room for the label), the steps are pushed left as
    far as their own band and their predecessors allow (see `compact_columns`), instead of keeping
    `dot`'s columns, each as wide as its widest step in any lane.
    With `flows` and `corner_headers`, the lane names take no column: each stands on one line in its
    band's top-left corner (see `_headers_inside`).
    `below` blocks stand side by side, left-aligned, as many in a row as the bands are wide.
    Coordinates are computed top-down, then flipped to Graphviz's y-up.
    """
    pad = LANE_PAD if flows is None else TIGHT_PAD
    boxes = first_pass.nodes
    headers = [boxes[header] for _, header, _ in lane_members]
    header_width = max((box.width for box in headers), default=0.0) + 2 * pad
    if headers_on_top or (corner_headers and flows is not None):
        header_width = 0.0
    members = [boxes[name] for lane_id, _, names in lane_members for name in names
               if f"cluster_{lane_id}" in first_pass.clusters]
    left = min((box.x - box.width / 2 for box in members), default=0.0)
    shift_x = header_width + HEADER_GAP - left

    down: dict[str, tuple[float, float]] = {}  # y grows downwards until the flip
    y = 0.0
    for name in above:
        down[name] = (boxes[name].width / 2, y + boxes[name].height / 2)
        y += boxes[name].height + BLOCK_GAP
    bands_down: dict[str, tuple[float, float]] = {}
    for lane_id, header, names in lane_members:
        cluster = first_pass.clusters.get(f"cluster_{lane_id}")
        label_height = boxes[header].height if headers_on_top else 0.0
        label_height += LOOP_ROOM if lane_id in loop_lanes else 0.0
        if cluster is not None and packed:
            rows = pack_rows([boxes[name] for name in names])
            inner = sum(row_height for row_height, _ in rows) + ROW_GAP * (len(rows) - 1) + 2 * pad
            height = max(inner + label_height, boxes[header].height + 2 * pad)
            row_top = y + label_height + (height - label_height - inner) / 2 + pad
            for row_height, row in rows:
                for box in row:
                    down[box.name] = (box.x + shift_x, row_top + row_height / 2)
                row_top += row_height + ROW_GAP
        elif cluster is not None:
            _, bottom, _, top = cluster
            inner = top - bottom
            height = max(inner + label_height, boxes[header].height + 2 * pad)
            offset = y + label_height + (height - label_height - inner) / 2
            for name in names:
                down[name] = (boxes[name].x + shift_x, offset + (top - boxes[name].y))
        else:  # a lane without steps (it only receives escalations): its note in the first column
            height = max([boxes[header].height, *(boxes[n].height for n in names)]) + 2 * pad
            for name in names:
                down[name] = (header_width + HEADER_GAP + boxes[name].width / 2, y + height / 2)
        if headers_on_top:
            down[header] = (pad + boxes[header].width / 2, y + 2 + boxes[header].height / 2)
        else:
            down[header] = (header_width / 2, y + height / 2)
        bands_down[lane_id] = (y, y + height)
        y += height
    steps = {box.name for box in members}
    if flows is not None:
        lane_of = {name: lane_id for lane_id, _, names in lane_members for name in names if name in steps}
        # a caption wider than its shape's reserved box would reach into a neighbour's caption on a
        # compacted chart: there the whole caption is kept clear
        drawn = {name: boxes[name].width for name in steps}
        for caption, (owner, _) in (captions or {}).items():
            if owner in drawn:
                drawn[owner] = max(drawn[owner], boxes[caption].width)
        columns = compact_columns(
            {name: (down[name][0], boxes[name].width, down[name][1] - boxes[name].height / 2,
                    down[name][1] + boxes[name].height / 2) for name in steps},
            lane_of, flows, header_width + HEADER_GAP, drawn)
        for name, x in columns.items():
            down[name] = (x, down[name][1])
        if corner_headers:
            _headers_inside(down, bands_down, lane_members, boxes, drawn, pad)
            y = max(bottom for _, bottom in bands_down.values())
    right = max((down[name][0] + boxes[name].width / 2 for name in steps), default=header_width + HEADER_GAP)
    for caption, (owner, _) in (captions or {}).items():
        if flows is not None and owner in steps:
            right = max(right, down[owner][0] + boxes[caption].width / 2)
    band_width = right + pad + (LOOP_ROOM if loop_lanes else 0.0)
    width = max([band_width, *(boxes[name].width for name in above)])
    for caption, (owner, shape_height) in (captions or {}).items():
        # the first pass reserved the shape with its caption under it: the shape moves to the top
        x, centre = down[owner]
        top = centre - boxes[owner].height / 2
        down[owner] = (x, top + shape_height / 2)
        down[caption] = (x, top + shape_height + boxes[caption].height / 2)
    y += BLOCK_GAP
    x = 0.0
    row_height = 0.0
    for name in below:
        if x > 0 and x + boxes[name].width > width:
            y += row_height + BLOCK_GAP
            x, row_height = 0.0, 0.0
        down[name] = (x + boxes[name].width / 2, y + boxes[name].height / 2)
        x += boxes[name].width + 2 * BLOCK_GAP
        row_height = max(row_height, boxes[name].height)
        width = max(width, x - 2 * BLOCK_GAP)
    y += row_height + BLOCK_GAP
    total = y - BLOCK_GAP if below else y
    placement = Placement(width=width, height=total)
    placement.sizes = {name: (boxes[name].width, boxes[name].height) for name in down}
    for name, (x, yd) in down.items():
        placement.nodes[name] = (round(x, 1), round(total - yd, 1))
    for lane_id, (top_down, bottom_down) in bands_down.items():
        placement.bands[lane_id] = (0.0, round(total - bottom_down, 1), round(band_width, 1), round(total - top_down, 1))
    return placement


Point = tuple[float, float]


def _straight(points: Sequence[Point]) -> list[Point]:
    """A polyline as the control points of a piecewise cubic Bézier (Graphviz edge `pos`)."""
    out = [points[0]]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        out += [(x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3), (x0 + 2 * (x1 - x0) / 3, y0 + 2 * (y1 - y0) / 3), (x1, y1)]
    return out


def loop_route(placement: Placement, source: str, target: str, source_lane: str, target_lane: str,
               shape_heights: Mapping[str, float], nth: int) -> str | None:
    """The `pos` of a rework loop drawn as a loop: up from the step, back along the top of the target's
    lane, down into the target; from a lower lane first down, out to the right-hand corridor and up.

    A loop drawn as the shortest way back cuts diagonally through every lane in between; around
    the edge of the chart it crosses (almost) nothing. None when the loop runs downwards (the
    router's own path is fine there). `nth` separates loops sharing a corridor.
    """
    sx, sy = placement.nodes[source]
    tx, ty = placement.nodes[target]
    s_half = shape_heights.get(source, placement.sizes[source][1]) / 2
    t_half = shape_heights.get(target, placement.sizes[target][1]) / 2
    _, t_bottom, t_right, t_top = placement.bands[target_lane]
    _, s_bottom, _, s_top = placement.bands[source_lane]
    offset = nth * LOOP_STEP
    corridor = t_top - LOOP_ROOM / 2 - offset
    tip = (tx, ty + t_half)
    if source_lane == target_lane:
        points = [(sx, sy + s_half), (sx, corridor), (tx, corridor), (tx, tip[1] + ARROW)]
    elif s_top <= t_bottom:  # the source's lane lies below the target's
        below = s_bottom + LOOP_ROOM / 2 + offset
        right = t_right - LOOP_ROOM / 2 - offset
        points = [(sx, sy - s_half), (sx, below), (right, below), (right, corridor), (tx, corridor),
                  (tx, tip[1] + ARROW)]
    else:
        return None
    if points[-1][1] >= corridor:  # the target's top is not below the corridor: nothing to come down
        return None
    control = " ".join(f"{x:g},{y:g}" for x, y in _straight([(round(x, 1), round(y, 1)) for x, y in points]))
    return f"e,{tip[0]:g},{tip[1]:g} {control}"


__all__ = ["Placement", "assign_lanes", "back_edges", "compact_columns", "loop_route", "pack_rows", "place"]

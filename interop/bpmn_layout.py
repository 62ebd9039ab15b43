"""Positions for the BPMN diagram (bpmndi): lanes as full-width bands, shapes in BPMN's usual sizes.

The diagram is laid out here, from the definition, rather than read off the flowchart: a modeler
wants BPMN shapes (100x80 tasks, 36 pt events, 50 pt gateways) and nothing else on the plane, and
the flowchart's drawing (captions, legend, title) is free to change without moving a BPMN file.

Like the flowchart, it is done in two Graphviz passes. `dot` orders the steps left to right with
one cluster per lane; the lanes then become bands stacked in the definition's lane order (each
step keeps its column and its place inside its lane), and `neato -n2` routes the sequence flows
around the shapes at those fixed positions. Graphviz measures from the bottom left, BPMN DI from
the top left, so every y is flipped.

Lanes: every flow node is drawn in the lane `visualize` assigns it (its own, else the lane of the
step it serves). Only a process that declares no lane at all gets a "System" lane of ours, because
BPMN needs a lane for every node once a laneSet exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.definition.graph import ProcessGraph
from visualize.flowchart import GRAPHVIZ_HINT, RenderError, assign_lanes, back_edges

SYSTEM_LANE = ":system"  # ':' cannot occur in a lane id, so it never collides with a declared lane
EVENT_SIZE = 36.0
GATEWAY_SIZE = 50.0
TASK_WIDTH = 100.0
TASK_HEIGHT = 80.0
EMPTY_LANE_HEIGHT = 80.0
LANE_PAD = 20.0  # between a band's edge and the shapes inside it
LANE_LABEL_WIDTH = 30.0  # the pool's and each lane's name stand in a band at the left
_EVENT_KINDS = frozenset({"start", "end", "timer", "message"})
_GATEWAY_KINDS = frozenset({"exclusive", "parallel", "inclusive"})


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2


@dataclass
class Layout:
    """Node boxes by node id, waypoints by edge index (in definition.edges), lane bands by lane id."""

    nodes: dict[str, Box] = field(default_factory=dict)
    edges: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    lanes: dict[str, Box] = field(default_factory=dict)
    pool: Box = Box(0, 0, 0, 0)


def drawn_lanes(graph: ProcessGraph) -> dict[str, str]:
    """The lane every flow node is drawn in: a declared lane id, or SYSTEM_LANE when none is declared."""
    declared = {lane.id for lane in graph.definition.lanes}
    return {node_id: lane if lane in declared else SYSTEM_LANE for node_id, lane in assign_lanes(graph).items()}


def lane_order(graph: ProcessGraph, lanes: dict[str, str]) -> list[str]:
    """Lanes top to bottom: every declared lane in definition order (an empty one too: escalations
    may reach it), then the System lane if a node is drawn there."""
    order = [lane.id for lane in graph.definition.lanes]
    if SYSTEM_LANE in lanes.values():
        order.append(SYSTEM_LANE)
    return order


def shape_size(kind: str) -> tuple[float, float]:
    if kind in _EVENT_KINDS:
        return EVENT_SIZE, EVENT_SIZE
    if kind in _GATEWAY_KINDS:
        return GATEWAY_SIZE, GATEWAY_SIZE
    return TASK_WIDTH, TASK_HEIGHT


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node_stmt(graph: ProcessGraph, node_id: str, pos: tuple[float, float] | None) -> str:
    kind = graph.kind(node_id)
    width, height = shape_size(kind)
    shape = "circle" if kind in _EVENT_KINDS else "diamond" if kind in _GATEWAY_KINDS else "box"
    attrs = f'shape={shape}, fixedsize=true, label="", width={width / 72:.4f}, height={height / 72:.4f}'
    if pos is not None:
        attrs += f', pos="{pos[0]:.1f},{pos[1]:.1f}!"'
    return f"{_q(node_id)} [{attrs}];"


def _edge_stmts(graph: ProcessGraph, loops: set[int]) -> list[str]:
    out = []
    for index, edge in enumerate(graph.definition.edges):
        if edge.source in graph.nodes and edge.target in graph.nodes:
            extra = ", constraint=false" if index in loops or edge.kind == "escalation" else ""
            out.append(f"  {_q(edge.source)} -> {_q(edge.target)} [id=\"edge-{index}\"{extra}];")
    return out


def _graphviz_json(dot_text: str, engine: str, no_op: bool = False) -> dict[str, Any]:
    import graphviz

    try:
        raw = graphviz.Source(dot_text, engine=engine).pipe(format="json0", quiet=True,
                                                            neato_no_op=2 if no_op else None)
    except graphviz.ExecutableNotFound:
        raise RenderError("the Graphviz program 'dot' was not found", hint=GRAPHVIZ_HINT) from None
    except graphviz.CalledProcessError as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        raise RenderError(f"Graphviz could not lay out the BPMN diagram: {stderr.strip() or exc}") from None
    return dict(json.loads(raw))


def _points(text: str) -> list[tuple[float, float]]:
    """Graphviz's edge `pos` ("e,x,y x,y x,y ...", a B-spline) as a polyline: the on-curve points.

    A spline of 3n+1 control points passes through every third one; those, plus the arrow's end,
    follow the drawn line closely enough for a modeler to route from.
    """
    end: tuple[float, float] | None = None
    start: tuple[float, float] | None = None
    controls: list[tuple[float, float]] = []
    for part in text.split():
        fields = part.split(",")
        if fields[0] == "e":
            end = (float(fields[1]), float(fields[2]))
        elif fields[0] == "s":
            start = (float(fields[1]), float(fields[2]))
        else:
            controls.append((float(fields[0]), float(fields[1])))
    points = [controls[i] for i in range(0, len(controls), 3)]
    if controls and points[-1] != controls[-1]:
        points.append(controls[-1])
    if start is not None:
        points.insert(0, start)
    if end is not None:
        points.append(end)
    return points


def _first_pass(graph: ProcessGraph, lanes: dict[str, str], order: list[str],
                loops: set[int]) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """`dot`'s positions (points, y up) of every node and the (bottom, top) of every lane's cluster."""
    out = ["digraph bpmn {", '  graph [rankdir=LR, newrank=true, nodesep=0.4, ranksep=0.5];']
    for lane in order:
        members = [node.id for node in graph.definition.nodes if lanes[node.id] == lane]
        if members:
            out.append(f"  subgraph {_q('cluster_' + lane)} {{")
            out.append('    graph [label="", margin=8];')
            out += ["    " + _node_stmt(graph, node_id, None) for node_id in members]
            out.append("  }")
    out += _edge_stmts(graph, loops)
    out.append("}")
    data = _graphviz_json("\n".join(out) + "\n", "dot")
    centres: dict[str, tuple[float, float]] = {}
    clusters: dict[str, tuple[float, float]] = {}
    for obj in data.get("objects", []):
        name = str(obj.get("name", ""))
        if name.startswith("cluster_") and "bb" in obj:
            _, bottom, _, top = (float(v) for v in str(obj["bb"]).split(","))
            clusters[name[len("cluster_"):]] = (bottom, top)
        elif name in graph.nodes and "pos" in obj:
            x, y = (float(v) for v in str(obj["pos"]).split(","))
            centres[name] = (x, y)
    return centres, clusters


def layout(graph: ProcessGraph) -> Layout:
    """Shapes, lane bands and flow waypoints of a process, top-left origin, in points."""
    lanes = drawn_lanes(graph)
    order = lane_order(graph, lanes)
    loops = back_edges(graph)
    centres, clusters = _first_pass(graph, lanes, order, loops)
    left = min((x - shape_size(graph.kind(n))[0] / 2 for n, (x, _) in centres.items()), default=0.0)
    right = max((x + shape_size(graph.kind(n))[0] / 2 for n, (x, _) in centres.items()), default=0.0)
    shift_x = LANE_LABEL_WIDTH * 2 + LANE_PAD - left
    width = LANE_LABEL_WIDTH * 2 + LANE_PAD * 2 + (right - left)

    result = Layout()
    down: dict[str, tuple[float, float]] = {}  # centres, y growing downwards
    top = 0.0
    for lane in order:
        if lane in clusters:
            bottom_up, top_up = clusters[lane]
            height = (top_up - bottom_up) + 2 * LANE_PAD
            for node_id, (x, y) in centres.items():
                if lanes[node_id] == lane:
                    down[node_id] = (x + shift_x, top + LANE_PAD + (top_up - y))
        else:
            height = EMPTY_LANE_HEIGHT
        result.lanes[lane] = Box(LANE_LABEL_WIDTH, round(top, 1), round(width - LANE_LABEL_WIDTH, 1), round(height, 1))
        top += height
    total = top
    for node_id, (x, y) in down.items():
        w, h = shape_size(graph.kind(node_id))
        result.nodes[node_id] = Box(round(x - w / 2, 1), round(y - h / 2, 1), w, h)

    routed = ["digraph bpmn {", f'  graph [splines=true, bb="0,0,{width:.1f},{total:.1f}"];']
    routed += ["  " + _node_stmt(graph, node_id, (x, total - y)) for node_id, (x, y) in down.items()]
    routed += _edge_stmts(graph, loops)
    routed.append("}")
    data = _graphviz_json("\n".join(routed) + "\n", "neato", no_op=True)
    # neato moves the drawing to the origin: read the shift back off any node it was given
    dx = dy = 0.0
    for obj in data.get("objects", []):
        name = str(obj.get("name", ""))
        if name in down and "pos" in obj:
            x, y = (float(v) for v in str(obj["pos"]).split(","))
            dx, dy = down[name][0] - x, (total - down[name][1]) - y
            break
    for edge in data.get("edges", []):
        ident = str(edge.get("id", ""))
        if ident.startswith("edge-") and "pos" in edge:
            result.edges[int(ident[len("edge-"):])] = [(round(x + dx, 1), round(total - (y + dy), 1))
                                                       for x, y in _points(str(edge["pos"]))]
    result.pool = Box(0, 0, round(width, 1), round(total, 1))
    return result


__all__ = ["Box", "Layout", "SYSTEM_LANE", "drawn_lanes", "lane_order", "layout", "shape_size"]

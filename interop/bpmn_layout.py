"""Positions for the BPMN diagram (bpmndi), taken from the graphviz layout of the flowchart.

The flowchart's DOT (swimlanes as clusters, one node per step, edges with `id="edge-<index>"`) is
laid out once by `dot -Tjson`; graphviz measures from the bottom left, BPMN DI from the top left,
so every y is flipped. Lanes become full-width bands stacked without gaps, as modelers expect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.definition.graph import ProcessGraph
from visualize.flowchart import GRAPHVIZ_HINT, SYSTEM_LANE, RenderError, assign_lanes, flowchart_dot
from visualize.overlay import Overlay

POINT = 72.0  # graphviz sizes are inches, positions points
EVENT_SIZE = 36.0
GATEWAY_SIZE = 50.0
EMPTY_LANE_HEIGHT = 80.0
LANE_LABEL_WIDTH = 30.0  # the pool's and each lane's name stand in a band at the left


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


def _graphviz_json(dot_text: str) -> dict[str, Any]:
    import graphviz

    try:
        raw = graphviz.Source(dot_text, engine="dot").pipe(format="json0", quiet=True)
    except graphviz.ExecutableNotFound:
        raise RenderError("the Graphviz program 'dot' was not found", hint=GRAPHVIZ_HINT) from None
    return json.loads(raw)


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


def layout(graph: ProcessGraph) -> Layout:
    """Lay the process out as its flowchart is drawn (without ladder notes, which are not BPMN)."""
    data = _graphviz_json(flowchart_dot(graph, Overlay(show_ladders=False)))
    x0, y0, x1, y1 = (float(v) for v in str(data["bb"]).split(","))
    height = y1 - y0

    def flip(x: float, y: float) -> tuple[float, float]:
        return round(x - x0 + LANE_LABEL_WIDTH * 2, 1), round(height - (y - y0), 1)

    result = Layout()
    by_gvid: dict[int, str] = {}
    bands: list[tuple[float, float, str]] = []
    for obj in data.get("objects", []):
        name = str(obj.get("name", ""))
        if name.startswith("cluster_") and "bb" in obj:
            bx0, by0, bx1, by1 = (float(v) for v in str(obj["bb"]).split(","))
            lane = SYSTEM_LANE if name == "cluster_system" else name[len("cluster_"):]
            bands.append((flip(bx0, by1)[1], flip(bx0, by0)[1], lane))
        elif name in graph.nodes and "pos" in obj:
            by_gvid[int(obj["_gvid"])] = name
            cx, cy = flip(*(float(v) for v in str(obj["pos"]).split(",")))
            kind = graph.kind(name)
            if kind in ("start", "end", "timer", "message"):
                w = h = EVENT_SIZE
            elif kind in ("exclusive", "parallel", "inclusive"):
                w = h = GATEWAY_SIZE
            else:
                w, h = float(obj["width"]) * POINT, float(obj["height"]) * POINT
            result.nodes[name] = Box(round(cx - w / 2, 1), round(cy - h / 2, 1), round(w, 1), round(h, 1))
    for edge in data.get("edges", []):
        ident = str(edge.get("id", ""))
        if ident.startswith("edge-") and "pos" in edge:
            result.edges[int(ident[len("edge-"):])] = [flip(x, y) for x, y in _points(str(edge["pos"]))]
    width = (x1 - x0) + LANE_LABEL_WIDTH * 3
    bands.sort()
    top = 0.0
    for _band_top, band_bottom, lane in bands:
        bottom = max(band_bottom, top + 10)
        result.lanes[lane] = Box(LANE_LABEL_WIDTH, top, round(width - LANE_LABEL_WIDTH, 1), round(bottom - top, 1))
        top = bottom
    lanes = assign_lanes(graph)
    used = set(lanes.values())
    for lane_def in graph.definition.lanes:
        if lane_def.id not in result.lanes:
            result.lanes[lane_def.id] = Box(LANE_LABEL_WIDTH, top, round(width - LANE_LABEL_WIDTH, 1),
                                            EMPTY_LANE_HEIGHT)
            top += EMPTY_LANE_HEIGHT
    if SYSTEM_LANE in used and SYSTEM_LANE not in result.lanes:
        result.lanes[SYSTEM_LANE] = Box(LANE_LABEL_WIDTH, top, round(width - LANE_LABEL_WIDTH, 1), EMPTY_LANE_HEIGHT)
        top += EMPTY_LANE_HEIGHT
    result.pool = Box(0, 0, round(width, 1), round(top, 1))
    return result

"""Where Graphviz put things: node boxes and edge curves read back from `dot -Tjson`.

Readability is checked on what Graphviz actually drew, not on what we asked for: edge
crossings are counted on the computed splines, positions of nodes are compared across two
versions of a definition (the designer's diff must not reshuffle the chart), and sizes are
read from the same layout the SVG is drawn from.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from engine.errors import SvcflowError

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # left, bottom, right, top in points
BEZIER_STEPS = 12  # points sampled per cubic piece: enough to see two curves cross, cheap to compare


class LayoutError(SvcflowError):
    """Graphviz could not lay the chart out."""


@dataclass(frozen=True)
class NodeBox:
    """A node's centre and size in points (Graphviz's y grows upwards)."""

    name: str
    x: float
    y: float
    width: float
    height: float

    def contains(self, point: Point, slack: float = 2.0) -> bool:
        return (abs(point[0] - self.x) <= self.width / 2 + slack
                and abs(point[1] - self.y) <= self.height / 2 + slack)


@dataclass(frozen=True)
class EdgeCurve:
    """An edge as drawn: its DOT id and class, its end nodes and its curve as a polyline."""

    id: str
    classes: frozenset[str]
    tail: str
    head: str
    points: tuple[Point, ...]
    label: Box | None = None  # the box its label's text was drawn in, if it has a label


@dataclass
class Layout:
    """The computed layout of one chart: its bounding box, nodes by name, visible edges."""

    width: float
    height: float
    nodes: dict[str, NodeBox] = field(default_factory=dict)
    edges: list[EdgeCurve] = field(default_factory=list)
    clusters: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)


def _bezier(points: Sequence[Point]) -> list[Point]:
    """A piecewise cubic Bézier (as in xdot's "b" op) sampled to a polyline."""
    out: list[Point] = [points[0]]
    for start in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[start:start + 4]
        for step in range(1, BEZIER_STEPS + 1):
            t = step / BEZIER_STEPS
            a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
            out.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0],
                        a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return out


def layout_of(dot_text: str, command: Sequence[str] = ("dot",)) -> Layout:
    """Lay a chart out (`dot -Tjson`, or e.g. `neato -n2 -Tjson` for a positioned chart) and read back
    nodes, cluster boxes and the visible edges' curves."""
    return layouts_of([dot_text], command)[0]


def _run(command: Sequence[str], dot_text: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run([*command, "-Tjson"], input=dot_text.encode("utf-8"), capture_output=True,
                              check=False, timeout=120)
    except FileNotFoundError:
        raise LayoutError(f"the Graphviz program '{command[0]}' was not found",
                          hint="install the Debian package graphviz (apt-get install graphviz)") from None
    except subprocess.TimeoutExpired:
        raise LayoutError("Graphviz took more than 120 s to lay the chart out",
                          hint="render the summary view, or split the process") from None


def layouts_of(dot_texts: Sequence[str], command: Sequence[str] = ("dot",)) -> list[Layout]:
    """Several layouts at once: Graphviz runs for all of them side by side (they are independent)."""
    with ThreadPoolExecutor(max_workers=max(1, len(dot_texts))) as pool:
        results = list(pool.map(lambda text: _run(command, text), dot_texts))
    layouts: list[Layout] = []
    for result in results:
        if result.returncode != 0:
            stderr = result.stderr.decode("utf-8", "replace").strip()
            raise LayoutError(f"Graphviz could not lay the chart out: {stderr}", hint="check the DOT text with --format dot")
        layouts.append(_read_json(json.loads(result.stdout)))
    return layouts


def _read_json(data: dict[str, Any]) -> Layout:
    _, _, width, height = (float(v) for v in data["bb"].split(","))
    layout = Layout(width=width, height=height)
    names: dict[int, str] = {}
    for obj in data.get("objects", []):
        if "pos" not in obj:  # clusters have no position, only a bounding box
            if "bb" in obj:
                x1, y1, x2, y2 = (float(v) for v in obj["bb"].split(","))
                layout.clusters[obj["name"]] = (x1, y1, x2, y2)
            continue
        names[obj["_gvid"]] = obj["name"]
        x, y = (float(v) for v in obj["pos"].split(","))
        layout.nodes[obj["name"]] = NodeBox(obj["name"], x, y, float(obj["width"]) * 72, float(obj["height"]) * 72)
    for edge in data.get("edges", []):
        if "invis" in edge.get("style", ""):
            continue
        curve: list[Point] = []
        for op in edge.get("_draw_", []):
            if op.get("op") in ("b", "B"):
                curve.extend(_bezier([(float(x), float(y)) for x, y in op["points"]]))
        if len(curve) < 2:
            continue
        layout.edges.append(EdgeCurve(
            id=str(edge.get("id", "")), classes=frozenset(str(edge.get("class", "")).split()),
            tail=names[edge["tail"]], head=names[edge["head"]], points=tuple(curve),
            label=_text_box([*edge.get("_ldraw_", []), *edge.get("_xldraw_", [])]),
        ))
    return layout


def _text_box(ops: Sequence[dict[str, Any]]) -> Box | None:
    """The box around the text lines of a label as drawn (xdot "T" ops: baseline point, alignment,
    width; the size from the last "F" op): from a descender below the lowest baseline to the
    cap height above the highest."""
    size = 14.0
    box: Box | None = None
    for op in ops:
        if op.get("op") == "F":
            size = float(op["size"])
        elif op.get("op") == "T" and str(op.get("text", "")).strip():
            x, y = (float(v) for v in op["pt"])
            width = float(op["width"])
            left = {"l": x, "r": x - width}.get(op.get("align", "c"), x - width / 2)
            line = (left, y - 0.2 * size, left + width, y + 0.8 * size)
            box = line if box is None else (min(box[0], line[0]), min(box[1], line[1]),
                                            max(box[2], line[2]), max(box[3], line[3]))
    return box


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def node_overlaps(layout: Layout, names: Iterable[str], slack: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of the named nodes (shapes, captions) drawn over each other, boxes shrunk by `slack`.

    A caption is the text under its own shape, so a shape and its caption ("x", "caption:x") never count.
    """
    boxes = [layout.nodes[name] for name in names if name in layout.nodes]
    found: list[tuple[str, str]] = []
    for first, second in combinations(boxes, 2):
        if first.name.removeprefix("caption:") == second.name.removeprefix("caption:"):
            continue
        if (abs(first.x - second.x) < (first.width + second.width) / 2 - slack
                and abs(first.y - second.y) < (first.height + second.height) / 2 - slack):
            found.append((first.name, second.name))
    return found


def label_overlaps(layout: Layout, slack: float = 1.0) -> list[tuple[str, str]]:
    """Edge labels drawn over another edge label or over a node (its shape, caption, a lane name,
    the title or the legend): (edge id, the other edge's id or the node's name).

    Boxes are shrunk by `slack` points on each side, so labels that merely touch do not count.
    """
    labelled = [edge for edge in layout.edges if edge.label is not None]
    found: list[tuple[str, str]] = []

    def shrunk(box: Box) -> Box:
        return box[0] + slack, box[1] + slack, box[2] - slack, box[3] - slack

    for first, second in combinations(labelled, 2):
        assert first.label is not None and second.label is not None
        if _overlap(shrunk(first.label), shrunk(second.label)):
            found.append((first.id, second.id))
    for edge in labelled:
        assert edge.label is not None
        for node in layout.nodes.values():
            box = (node.x - node.width / 2, node.y - node.height / 2, node.x + node.width / 2, node.y + node.height / 2)
            if _overlap(shrunk(edge.label), shrunk(box)):
                found.append((edge.id, node.name))
    return found


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> Point | None:
    """Where segment ab properly crosses segment cd, if it does."""
    rx, ry = b[0] - a[0], b[1] - a[1]
    sx, sy = d[0] - c[0], d[1] - c[1]
    denominator = rx * sy - ry * sx
    if abs(denominator) < 1e-9:
        return None  # parallel or overlapping: running alongside is not a crossing
    qx, qy = c[0] - a[0], c[1] - a[1]
    t = (qx * sy - qy * sx) / denominator
    u = (qx * ry - qy * rx) / denominator
    if 0 < t < 1 and 0 < u < 1:
        return a[0] + t * rx, a[1] + t * ry
    return None


def _crossing_point(first: EdgeCurve, second: EdgeCurve) -> Point | None:
    for i in range(len(first.points) - 1):
        a, b = first.points[i], first.points[i + 1]
        for j in range(len(second.points) - 1):
            c, d = second.points[j], second.points[j + 1]
            if max(a[0], b[0]) < min(c[0], d[0]) or max(c[0], d[0]) < min(a[0], b[0]):
                continue
            if max(a[1], b[1]) < min(c[1], d[1]) or max(c[1], d[1]) < min(a[1], b[1]):
                continue
            found = _segments_cross(a, b, c, d)
            if found is not None:
                return found
    return None


def crossing_pairs(layout: Layout, classes: Iterable[str] = ("flow", "escalation")) -> list[tuple[str, str]]:
    """Pairs of edges (by id) whose curves cross, among the edges of the given classes.

    Two edges that share a node meet at that node; touching there is not a crossing, so points
    inside a shared end node are ignored.
    """
    wanted = set(classes)
    edges = [edge for edge in layout.edges if edge.classes & wanted]
    pairs: list[tuple[str, str]] = []
    for first, second in combinations(edges, 2):
        shared = {first.tail, first.head} & {second.tail, second.head}
        point = _crossing_point(first, second)
        if point is None:
            continue
        if any(layout.nodes[name].contains(point, slack=6) for name in shared if name in layout.nodes):
            continue
        pairs.append((first.id, second.id))
    return pairs


__all__ = ["Box", "EdgeCurve", "Layout", "LayoutError", "NodeBox", "crossing_pairs", "label_overlaps", "layout_of", "node_overlaps"]

"""Flowcharts of process definitions, drawn from the same definition that runs.

The DOT text is written by hand rather than through graphviz.Digraph so that every byte is
under our control: the same definition must give the same text (tests and reviews diff it),
so everything is emitted in definition order and nothing depends on memory or time.
Graphviz is only needed to turn that text into SVG/PNG/PDF (`render`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import networkx as nx

from engine.definition.model import (
    AutoTask, Edge, EndNode, EscalationLevel, HumanTask, MessageWait, NodeBase, ProcessDefinition, SlaSpec,
    SubProcess, Text, TimerWait,
)
from engine.errors import SvcflowError
from engine.definition.graph import ProcessGraph
from visualize.fonts import cjk_font
from visualize.overlay import EdgeMark, NodeMark, Overlay

Format = Literal["svg", "png", "pdf", "dot"]
FORMATS: tuple[str, ...] = ("svg", "png", "pdf", "dot")
GRAPHVIZ_HINT = "install the Debian package graphviz (apt-get install graphviz)"

SYSTEM_LANE = "__system__"
SYSTEM_LANE_NAME = Text(zh="系统", en="System")
LADDER_PREFIX = "ladder:"  # ':' cannot occur in a node id, so ladder notes never collide with steps

GATEWAY_GLYPHS: dict[str, str] = {"exclusive": "×", "parallel": "+", "inclusive": "○"}
TIMER_GLYPH = "◷"
MESSAGE_GLYPH = "✉"
AUTO_GLYPH = "⚙"
SUBPROCESS_GLYPH = "⊞"
ESCALATION_GLYPH = "⚠"

INK = "#374151"
MUTED = "#6b7280"
SLA_INK = "#b45309"
ESCALATION_INK = "#dc2626"
LADDER_INK = "#d97706"
DIM_FILL = "#f3f4f6"
DIM_INK = "#b8bec8"
LANE_FILLS = ("#f8fafc", "#f1f5f9")
KIND_FILLS: dict[str, str] = {
    "human": "#fffbeb", "auto": "#eef2ff", "subprocess": "#f5f3ff", "start": "#ecfdf5", "end": "#fef2f2",
    "exclusive": "#fefce8", "parallel": "#fefce8", "inclusive": "#fefce8", "timer": "#ffffff", "message": "#ffffff",
}
CONDITION_WIDTH = 34
LINE_HEIGHT = 1.2  # Graphviz's HTML line height per point of font size, for sizing captions
# kind -> (shape, size in points, glyph drawn inside, glyph point size)
EVENT_SHAPES: dict[str, tuple[str, int, str, float]] = {
    "start": ("circle", 28, "", 0),
    "end": ("circle", 28, "", 0),
    "exclusive": ("diamond", 36, GATEWAY_GLYPHS["exclusive"], 16),
    "parallel": ("diamond", 36, GATEWAY_GLYPHS["parallel"], 16),
    "inclusive": ("diamond", 36, GATEWAY_GLYPHS["inclusive"], 16),
    "timer": ("doublecircle", 30, TIMER_GLYPH, 15),
    "message": ("doublecircle", 30, MESSAGE_GLYPH, 13),
}
PNG_DPI = 120
_LEFT_BR = '<BR ALIGN="LEFT"/>'


class RenderError(SvcflowError):
    """Graphviz is missing or refused the chart."""


# -- small text helpers ----------------------------------------------------------------------------
def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _h(text: str) -> str:
    """Text inside a Graphviz HTML label (only these four need escaping there)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _num(value: float) -> str:
    return f"{value:g}"


def _small(text: str, color: str = MUTED, size: float = 8) -> str:
    return f'<FONT POINT-SIZE="{_num(size)}" COLOR="{color}">{_h(text)}</FONT>'


def _attrs(pairs: Iterable[tuple[str, str]]) -> str:
    """Attributes in the order given; values starting with '<' are HTML labels and stay unquoted."""
    parts = [f"{key}={value if value.startswith('<') else _q(value)}" for key, value in pairs]
    return "[" + ", ".join(parts) + "]"


def shorten_condition(text: str, width: int = CONDITION_WIDTH) -> str:
    """A condition as a reader scans it: without the `data.`/`params.` noise, cut to one line."""
    short = " ".join(text.replace("data.", "").replace("params.", "").replace("case.", "").split())
    return short if len(short) <= width else short[: width - 1] + "…"


def _names(node: NodeBase) -> tuple[str, str | None]:
    if node.name is None:
        return node.id, None
    if node.name.zh == node.name.en:
        return node.name.zh, None
    return node.name.zh, node.name.en


def sla_text(sla: SlaSpec) -> str:
    """The targets a step can get, e.g. "SLA 2h/8h" (first matching policy wins at run time)."""
    targets: list[str] = []
    for policy in sla.effective_policies():
        if policy.target not in targets:
            targets.append(policy.target)
    return "SLA " + "/".join(t.replace(" ", "") for t in targets)


def ladder_lines(definition: ProcessDefinition, levels: Sequence[EscalationLevel]) -> list[str]:
    """One line per rung: "50% → complaint_handler", "100% 超时 breach → team_supervisor ↑high", ..."""
    lines: list[str] = []
    for level in sorted(levels, key=lambda lv: lv.at):
        text = f"{level.at}%"
        if level.at == 100:
            text += " 超时 breach"
        if level.notify:
            text += " → " + ", ".join(level.notify)
        if level.reassign:
            text += " ⇢ reassign" if level.reassign in level.notify else f" ⇢ reassign {level.reassign}"
        if level.raise_priority:
            text += f" ↑{level.raise_priority}"
        if level.route:
            edge = next((e for e in definition.edges if e.id == level.route), None)
            text += f" ⇢ route → {edge.target if edge else level.route}"
        lines.append(text)
    return lines


# -- lanes -------------------------------------------------------------------------------------------
def assign_lanes(graph: ProcessGraph) -> dict[str, str]:
    """Every node's lane: its own, else its neighbours' (gateways and events sit with the role that
    decides or waits), else the System lane. Automatic steps without a lane are the system's work."""
    definition = graph.definition
    lanes: dict[str, str] = {}
    for node in definition.nodes:
        lane = getattr(node, "lane", None)
        if lane:
            lanes[node.id] = lane
        elif node.kind == "auto":
            lanes[node.id] = SYSTEM_LANE
    lane_order = {lane.id: i for i, lane in enumerate(definition.lanes)}
    lane_order[SYSTEM_LANE] = len(lane_order)
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
    for node in definition.nodes:
        lanes.setdefault(node.id, SYSTEM_LANE)
    return lanes


def back_edges(graph: ProcessGraph) -> set[int]:
    """Indexes (in definition.edges) of edges that close a loop.

    They are drawn without ranking constraint so rework loops run back across the chart instead
    of bending it out of left-to-right. Which edge of a cycle is "the way back" is taken from the
    definition's node order, because designers write steps in the order they happen: an edge is a
    loop edge when it points to an earlier (or the same) node of its own strongly connected part.
    Every cycle has such an edge, so what remains is acyclic.
    """
    definition = graph.definition
    order = {node.id: i for i, node in enumerate(definition.nodes)}
    flow = nx.DiGraph()
    flow.add_nodes_from(order)
    for edge in definition.edges:
        if edge.kind != "escalation" and edge.source in order and edge.target in order:
            flow.add_edge(edge.source, edge.target)
    component: dict[str, int] = {}
    for number, members in enumerate(nx.strongly_connected_components(flow)):
        for member in members:
            component[member] = number
    found: set[int] = set()
    for index, edge in enumerate(definition.edges):
        if edge.kind == "escalation" or edge.source not in order or edge.target not in order:
            continue
        if order[edge.target] <= order[edge.source] and component[edge.target] == component[edge.source]:
            found.add(index)
    return found


# -- nodes ---------------------------------------------------------------------------------------------
@dataclass
class _Style:
    dim: bool
    mark: NodeMark | None


def _node_label(node: NodeBase, extra: list[str], ink: str) -> str:
    """The HTML label of a box-shaped node: kind header, zh name, en name, SLA and overlay lines."""
    kind = node.kind  # type: ignore[attr-defined]
    zh, en = _names(node)
    rows: list[str] = []
    if kind == "human":
        rows.append(_small("人工 / Human"))
    elif kind == "auto":
        rows.append(_small(f"{AUTO_GLYPH} 自动 / Auto"))
    elif kind == "subprocess":
        rows.append(_small("子流程 / Sub-process"))
    rows.append(f'<FONT POINT-SIZE="11" COLOR="{ink}"><B>{_h(zh)}</B></FONT>')
    if en:
        rows.append(f'<FONT POINT-SIZE="9" COLOR="{ink}">{_h(en)}</FONT>')
    accent = DIM_INK if ink == DIM_INK else SLA_INK
    if isinstance(node, HumanTask):
        details: list[str] = []
        if node.sla is not None:
            details.append(sla_text(node.sla))
        if node.priority and node.priority != "normal":
            details.append(f"优先 {node.priority}")
        if details:
            rows.append(_small(" · ".join(details), accent))
        if node.different_actor_from:
            rows.append(_small("四眼 four-eyes ≠ " + ", ".join(node.different_actor_from)))
    elif isinstance(node, AutoTask):
        rows.append(_small(node.handler))
    elif isinstance(node, SubProcess):
        rows.append(_small(f"{SUBPROCESS_GLYPH} {node.process}", INK, 9))
    rows.extend(_small(line, INK, 8) for line in extra)
    return "<" + "<BR/>".join(rows) + ">"


def _event_rows(node: NodeBase, extra: list[str], ink: str) -> list[tuple[str, float]]:
    """The caption lines of a circle or diamond, with their point sizes (to size the label)."""
    zh, en = _names(node)
    rows: list[tuple[str, float]] = []
    if node.name is None:  # unnamed gateways are common; their id only helps find them in the YAML
        rows.append((_small(node.id, DIM_INK if ink == DIM_INK else MUTED, 7.5), 7.5))
    else:
        rows.append((f'<FONT POINT-SIZE="10" COLOR="{ink}"><B>{_h(zh)}</B></FONT>', 10))
    if en:
        rows.append((f'<FONT POINT-SIZE="8" COLOR="{ink}">{_h(en)}</FONT>', 8))
    if isinstance(node, TimerWait):
        text = f"{TIMER_GLYPH} " + (node.duration or f"until {shorten_condition(node.until or '')}")
        rows.append((_small(text, SLA_INK), 8))
    elif isinstance(node, MessageWait):
        rows.append((_small(f"{MESSAGE_GLYPH} {node.message}" + (" · SLA paused" if node.pauses_sla else "")), 8))
    elif isinstance(node, EndNode) and node.outcome:
        rows.append((_small(f"→ {node.outcome}"), 8))
    rows.extend((_small(line, INK, 8), 8) for line in extra)
    return rows


def _captioned(glyph: str, glyph_size: float, shape_points: int, rows: list[tuple[str, float]]) -> str:
    """A label that puts the caption under the shape, the way BPMN names events and gateways.

    With fixedsize=shape the label may be larger than the shape and is centred on it; a spacer as
    tall as the caption above the shape-sized middle row keeps the shape's glyph at the centre and
    the caption below it. Edges still meet the shape itself. (xlabels would be placed after the
    layout, over edges and neighbours; a separate caption node may end up above or below.)
    """
    caption_height = round(sum(size * LINE_HEIGHT for _, size in rows))
    middle = f'<FONT POINT-SIZE="{_num(glyph_size)}">{_h(glyph)}</FONT>' if glyph else ""
    return (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0">'
        f'<TR><TD FIXEDSIZE="TRUE" WIDTH="1" HEIGHT="{caption_height}"></TD></TR>'
        f'<TR><TD FIXEDSIZE="TRUE" WIDTH="{shape_points}" HEIGHT="{shape_points}">{middle}</TD></TR>'
        f'<TR><TD>{"<BR/>".join(row for row, _ in rows)}</TD></TR>'
        "</TABLE>>"
    )


def _node_stmts(node: NodeBase, style: _Style) -> list[str]:
    """The statement declaring a node, with its BPMN-like shape, label and overlay marks."""
    kind = node.kind  # type: ignore[attr-defined]
    mark = style.mark
    ink = DIM_INK if style.dim else INK
    fill = DIM_FILL if style.dim else KIND_FILLS.get(kind, "#ffffff")
    line = DIM_INK if style.dim else INK
    penwidth = 1.2
    extra = list(mark.lines) if mark else []
    attrs: list[tuple[str, str]] = []
    if kind in ("human", "auto", "subprocess"):
        attrs += [("shape", "box"), ("style", "rounded,filled"), ("margin", "0.12,0.06")]
        if kind == "subprocess":
            attrs += [("peripheries", "2")]
        attrs += [("label", _node_label(node, extra, ink))]
    else:
        rows = _event_rows(node, extra, ink)
        shape, size, glyph, glyph_size = EVENT_SHAPES[kind]
        if kind == "end":
            penwidth = 3.5
        attrs += [("shape", shape), ("width", _num(size / 72)), ("height", _num(size / 72)),
                  ("fixedsize", "shape"), ("style", "filled"), ("label", _captioned(glyph, glyph_size, size, rows))]
    if mark is not None:
        fill = mark.fill or fill
        line = mark.color or line
        penwidth = max(penwidth, mark.penwidth) if mark.penwidth is not None else penwidth
    attrs += [("fillcolor", fill), ("color", line), ("penwidth", _num(penwidth))]
    if mark is not None and mark.font_color:
        attrs += [("fontcolor", mark.font_color)]
    tooltip = mark.tooltip if mark and mark.tooltip else f"{node.id} ({kind})"
    attrs += [("tooltip", tooltip), ("id", f"node-{node.id}")]
    return [f"{_q(node.id)} {_attrs(attrs)};"]


def _ladder_for(definition: ProcessDefinition, node: NodeBase) -> tuple[str, list[EscalationLevel]] | None:
    if not isinstance(node, HumanTask) or node.sla is None:
        return None
    levels = definition.ladder(node.sla.escalation)
    if not levels:
        return None
    name = node.sla.escalation if isinstance(node.sla.escalation, str) else "inline"
    return name, levels


def _ladder_stmts(definition: ProcessDefinition, node: NodeBase, dim: bool) -> tuple[list[str], str] | None:
    """A small note with the task's escalation ladder, and the dashed edge to it.

    Returns (statements inside the lane, edge statement). The note shares the task's rank, so it
    sits right above its step instead of pushing the flow to the right.
    """
    found = _ladder_for(definition, node)
    if found is None:
        return None
    name, levels = found
    ink = DIM_INK if dim else LADDER_INK
    rows = [_small(f"{ESCALATION_GLYPH} 升级 escalation · {name}", ink, 8)]
    rows += [_small(line, DIM_INK if dim else INK, 7.5) for line in ladder_lines(definition, levels)]
    note_id = LADDER_PREFIX + node.id
    note = _attrs([
        ("shape", "note"), ("style", "filled"), ("fillcolor", DIM_FILL if dim else "#fff7ed"), ("color", ink),
        ("penwidth", "0.8"), ("margin", "0.08,0.03"), ("label", "<" + _LEFT_BR.join(rows) + _LEFT_BR + ">"),
        ("tooltip", f"escalation ladder of {node.id}"), ("id", f"ladder-{node.id}"),
    ])
    stmts = [f"{_q(note_id)} {note};", f"{{ rank=same; {_q(node.id)}; {_q(note_id)}; }}"]
    edge = _attrs([
        ("style", "dashed"), ("color", ink), ("arrowhead", "vee"), ("arrowsize", "0.6"), ("penwidth", "1"),
        ("class", "ladder"), ("id", f"ladder-edge-{node.id}"),
    ])
    return stmts, f"{_q(node.id)} -> {_q(note_id)} {edge};"


# -- edges ---------------------------------------------------------------------------------------------
def _edge_stmt(edge: Edge, index: int, is_back: bool, cross_lane: bool, mark: EdgeMark | None, dim: bool) -> str:
    """One sequence flow: label (bilingual), shortened condition, default marker, overlay marks.

    The `id` is the edge's position in the definition, not its key, so two edges between the
    same nodes still get distinct, stable SVG ids.
    """
    escalation = edge.kind == "escalation"
    rows: list[str] = []
    ink = DIM_INK if dim else (ESCALATION_INK if escalation else INK)
    if escalation:
        rows.append(_small(f"{ESCALATION_GLYPH} 升级 escalation", ink, 8))
    if edge.label is not None:
        text = f'<FONT POINT-SIZE="9" COLOR="{ink}">{_h(edge.label.zh)}</FONT>'
        if edge.label.en != edge.label.zh:
            text += f' <FONT POINT-SIZE="8" COLOR="{ink}">{_h(edge.label.en)}</FONT>'
        rows.append(text)
    if edge.when:
        rows.append(_small(f"[{shorten_condition(edge.when)}]", DIM_INK if dim else MUTED, 7.5))
    if edge.default:
        rows.append(_small("默认 / default", DIM_INK if dim else MUTED, 7.5))
    if mark is not None:
        rows.extend(f'<FONT POINT-SIZE="9" COLOR="{mark.color or INK}"><B>{_h(line)}</B></FONT>'
                    for line in mark.lines)
    attrs: list[tuple[str, str]] = []
    color = ink
    style = "dashed" if escalation else "solid"
    penwidth = 2.0 if escalation else 1.2
    if mark is not None:
        color = mark.color or color
        style = mark.style or style
        penwidth = mark.penwidth if mark.penwidth is not None else penwidth
    if rows:
        # Labels of loops and of edges between lanes are placed after the layout (xlabel): as
        # ordinary labels they become nodes that Graphviz squeezes, overlapping, between lanes
        placement = "xlabel" if (is_back or cross_lane) and not escalation else "label"
        attrs.append((placement, "<" + "<BR/>".join(rows) + ">"))
    attrs += [("color", color), ("style", style), ("penwidth", _num(penwidth))]
    if edge.default:
        attrs += [("dir", "both"), ("arrowtail", "tee")]
    if escalation or is_back:
        attrs.append(("constraint", "false"))
    tooltip = edge.key + (f": {edge.when}" if edge.when else "") + (" (default)" if edge.default else "")
    classes = ["escalation" if escalation else "flow"] + (["loop"] if is_back else [])
    attrs += [("tooltip", tooltip), ("class", " ".join(classes)), ("id", f"edge-{index}")]
    return f"{_q(edge.source)} -> {_q(edge.target)} {_attrs(attrs)};"


# -- the chart -----------------------------------------------------------------------------------------
def _title(graph: ProcessGraph, overlay: Overlay | None) -> str:
    """The chart's heading: names and version, the case-level SLA clocks, then the overlay's title."""
    definition = graph.definition
    rows = [f'<FONT POINT-SIZE="16"><B>{_h(definition.name.zh)}</B></FONT>'
            f'<FONT POINT-SIZE="13">  {_h(definition.name.en)}</FONT>'
            f'<FONT POINT-SIZE="9" COLOR="{MUTED}">   {_h(definition.id)} v{definition.version}</FONT>']
    for clock in definition.clocks:
        name = clock.name.both() if clock.name else clock.id
        targets = "/".join(p.target for p in clock.policies)
        span = f"{clock.start_on or 'start'} → {', '.join(clock.stop_on) or 'end'}"
        ladder = clock.escalation if isinstance(clock.escalation, str) else ("inline" if clock.escalation else "")
        text = f"{TIMER_GLYPH} 时限 clock · {name}: SLA {targets} ({span})"
        rows.append(_small(text + (f" · {ESCALATION_GLYPH} {ladder}" if ladder else ""), SLA_INK, 9))
    if overlay is not None:
        if overlay.title:
            rows.append(f'<FONT POINT-SIZE="13" COLOR="{INK}"><B>{_h(overlay.title)}</B></FONT>')
        rows.extend(_small(line, INK, 9) for line in overlay.subtitle)
    text = _LEFT_BR.join(rows) + _LEFT_BR
    if overlay is not None and overlay.legend:
        cells = "".join(f'<TD BGCOLOR="{colour}" WIDTH="14" HEIGHT="10" BORDER="1" COLOR="{MUTED}"></TD>'
                        f'<TD ALIGN="LEFT">{_small(label, INK, 9)}  </TD>' for colour, label in overlay.legend)
        table = f'<TABLE BORDER="0" CELLSPACING="3" CELLPADDING="1"><TR>{cells}</TR></TABLE>'
        return (f'<<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="0"><TR><TD ALIGN="LEFT" BALIGN="LEFT">{text}'
                f'</TD></TR><TR><TD ALIGN="LEFT">{table}</TD></TR></TABLE>>')
    return f"<{text}>"


def flowchart_dot(graph: ProcessGraph, overlay: Overlay | None = None) -> str:
    """The DOT text of a process (optionally painted with an overlay); byte-identical for equal input."""
    definition = graph.definition
    font = cjk_font()
    lanes = assign_lanes(graph)
    loops = back_edges(graph)
    dim_unmarked = overlay is not None and overlay.dim_unmarked
    show_ladders = overlay is None or overlay.show_ladders

    def node_style(node_id: str) -> _Style:
        mark = overlay.nodes.get(node_id) if overlay is not None else None
        return _Style(dim=dim_unmarked and mark is None, mark=mark)

    out: list[str] = [
        f"digraph {_q(definition.id)} {{",
        "  " + "graph " + _attrs([
            ("rankdir", "LR"), ("charset", "UTF-8"), ("fontname", font), ("fontsize", "11"), ("newrank", "true"),
            ("nodesep", "0.3"), ("ranksep", "0.45"), ("forcelabels", "true"), ("labelloc", "t"),
            ("labeljust", "l"), ("pad", "0.3"), ("bgcolor", "white"), ("outputorder", "edgesfirst"),
            ("label", _title(graph, overlay)), ("id", f"process-{definition.id}"),
        ]) + ";",
        "  node " + _attrs([("fontname", font), ("fontsize", "10"), ("fontcolor", INK)]) + ";",
        "  edge " + _attrs([("fontname", font), ("fontsize", "8"), ("arrowsize", "0.7")]) + ";",
    ]
    lane_defs = [(lane.id, lane.name) for lane in definition.lanes] + [(SYSTEM_LANE, SYSTEM_LANE_NAME)]
    ladder_edges: list[str] = []
    anchors: list[str] = []
    for lane_index, (lane_id, lane_name) in enumerate(lane_defs):
        members = [node for node in definition.nodes if lanes.get(node.id) == lane_id]
        if not members:
            continue
        cluster = "cluster_system" if lane_id == SYSTEM_LANE else f"cluster_{lane_id}"
        label = (f'<<FONT POINT-SIZE="12"><B>{_h(lane_name.zh)}</B></FONT>'
                 f'<FONT POINT-SIZE="10" COLOR="{MUTED}">  {_h(lane_name.en)}</FONT>>'
                 if lane_name.en != lane_name.zh else f'<<B>{_h(lane_name.zh)}</B>>')
        out.append(f"  subgraph {_q(cluster)} {{")
        anchors.append(_q(f"lane:{lane_id}"))
        out.append("    graph " + _attrs([
            ("label", label), ("style", "rounded,filled"), ("fillcolor", LANE_FILLS[lane_index % 2]),
            ("color", "#cbd5e1"), ("penwidth", "1"), ("labeljust", "l"), ("labelloc", "t"), ("margin", "12"),
            ("id", f"lane-{lane_id}"),
        ]) + ";")
        for node in members:
            style = node_style(node.id)
            out.extend("    " + stmt for stmt in _node_stmts(node, style))
            if show_ladders:
                ladder = _ladder_stmts(definition, node, style.dim)
                if ladder is not None:
                    out.extend("    " + stmt for stmt in ladder[0])
                    ladder_edges.append(ladder[1])
        out.append(f"    {anchors[-1]} [shape=point, style=invis, width=0, height=0];")
        out.append("  }")
    if len(anchors) > 1:
        # invisible anchors in the first column, chained: every lane starts at the left edge, so lanes
        # stack as horizontal bands (swimlanes), roughly in definition order (Graphviz may swap two
        # lanes to save crossings)
        out.append("  { rank=min; " + "; ".join(anchors) + "; }")
        out.append("  " + " -> ".join(anchors) + " [style=invis, weight=100];")
    for index, edge in enumerate(definition.edges):
        if edge.source not in graph.nodes or edge.target not in graph.nodes:
            continue
        mark = overlay.edges.get(edge.key) if overlay is not None else None
        dim = dim_unmarked and mark is None
        cross_lane = lanes[edge.source] != lanes[edge.target]
        out.append("  " + _edge_stmt(edge, index, index in loops, cross_lane, mark, dim))
    out.extend("  " + stmt for stmt in ladder_edges)
    out.append("}")
    return "\n".join(out) + "\n"


def render(dot_text: str, fmt: Format, *, png_dpi: int = PNG_DPI) -> bytes:
    """DOT text to svg/png/pdf bytes through Graphviz's `dot`; "dot" returns the text itself.

    PNG is rasterised at `png_dpi` (Graphviz's 96 makes the 8 pt ladder lines hard to read);
    vector formats do not need it.
    """
    if fmt not in FORMATS:
        raise RenderError(f"unknown format '{fmt}'", hint="use one of " + ", ".join(FORMATS))
    if fmt == "dot":
        return dot_text.encode("utf-8")
    if fmt == "png":
        body, brace, _ = dot_text.rstrip().rpartition("}")
        if brace:
            dot_text = f"{body}  graph [dpi={int(png_dpi)}];\n}}\n"
    import graphviz  # only rendering needs it; DOT text generation stays dependency-free

    try:
        data = graphviz.Source(dot_text, engine="dot").pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise RenderError("the Graphviz program 'dot' was not found", hint=GRAPHVIZ_HINT) from None
    except graphviz.CalledProcessError as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        raise RenderError(f"Graphviz could not render the chart: {stderr.strip() or exc}",
                          hint="check the DOT text with --format dot") from None
    return bytes(data)


__all__ = ["flowchart_dot", "render", "RenderError", "Format", "FORMATS", "assign_lanes", "back_edges",
           "shorten_condition", "sla_text", "ladder_lines", "SYSTEM_LANE", "LADDER_PREFIX"]

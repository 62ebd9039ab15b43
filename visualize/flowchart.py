"""Flowcharts of process definitions, drawn from the same definition that runs.

The DOT text is written by hand rather than through graphviz.Digraph so that every byte is
under our control: the same definition must give the same text (tests and reviews diff it),
so everything is emitted in definition order and nothing depends on memory or time.

A chart is meant to be read on one A3 page or a 1920 px screen in a review meeting: compact
boxes with wrapped names, one text size (≥ 10 pt before fitting), lanes as full-width bands in
the definition's order (see visualize.layout), every escalation ladder printed once in the
legend and referenced by letter, SLA targets per policy, conditions in full (a long one in the
condition key under the chart, tagged on its edge). A chart too big for A3 as `dot` lays it out
is laid out again denser: tall boxes wrapped wider, columns compacted lane by lane
(visualize.layout.compact_columns). The `summary` view collapses hand-off branches into one box
and leaves the escalation ladders out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from engine.definition.graph import ProcessGraph
from engine.definition.model import (
    AutoTask, Edge, EndNode, HumanTask, MessageWait, NodeBase, ProcessDefinition, SubProcess, Text, TimerWait,
)
from engine.errors import SvcflowError
from visualize.fonts import cjk_font
from visualize.geometry import Layout, crossing_pairs, label_overlaps, layout_of, layouts_of
from visualize.layout import Placement, assign_lanes, back_edges, loop_route, place
from visualize.notation import (
    EDITABLE_MARK, ESCALATION_GLYPH, LadderRef, clock_text, condition_text, escalation_roles, ladder_lines,
    ladder_ref_of, ladder_refs, sla_text, text_width, wrap,
)
from visualize.overlay import NodeMark, Overlay

Format = Literal["svg", "png", "pdf", "dot"]
FORMATS: tuple[str, ...] = ("svg", "png", "pdf", "dot")
View = Literal["detail", "summary"]
VIEWS: tuple[str, ...] = ("detail", "summary")
GRAPHVIZ_HINT = "install the Debian package graphviz (apt-get install graphviz)"
POSITIONED = 'layout="neato"'  # marks DOT text whose nodes are placed: render routes it with neato -n2

GATEWAY_GLYPHS: dict[str, str] = {"exclusive": "×", "parallel": "+", "inclusive": "○"}
TIMER_GLYPH = "◷"
MESSAGE_GLYPH = "✉"
AUTO_GLYPH = "⚙"
SUBPROCESS_GLYPH = "⊞"
BLOCK_GLYPH = "≡"
BRANCH_NUMBERS = "①②③④⑤⑥⑦⑧⑨⑩"

INK = "#374151"
MUTED = "#6b7280"
SLA_INK = "#b45309"
ESCALATION_INK = "#dc2626"
LADDER_INK = "#d97706"
DIM_FILL = "#f3f4f6"
DIM_INK = "#b8bec8"
LANE_FILLS = ("#f8fafc", "#eef2f7")
LANE_LINE = "#cbd5e1"
KIND_FILLS: dict[str, str] = {
    "human": "#fffbeb", "auto": "#eef2ff", "subprocess": "#f5f3ff", "start": "#ecfdf5", "end": "#fef2f2",
    "exclusive": "#fefce8", "parallel": "#fefce8", "inclusive": "#fefce8", "timer": "#ffffff", "message": "#ffffff",
}
TITLE_PT = 16
NAME_PT = 10  # a step's Chinese name, bold: the same size as all other text, so the chart fits A3 at ≥ 9 pt
TEXT_PT = 10  # everything else: the smallest text on a chart
NAME_COLUMNS = 10  # wrap widths in half-em columns (a Chinese character counts 2)
TEXT_COLUMNS = 14
# (name, text) wrap widths tried in turn for a box, until it is at most BOX_LINES lines tall
WRAPS: tuple[tuple[int, int], ...] = ((NAME_COLUMNS, TEXT_COLUMNS), (12, 18), (14, 22), (16, 26), (18, 30))
BOX_LINES = 5
CAPTION_LINES = 4
CONDITION_COLUMNS = 22
LABEL_COLUMNS = 18  # an edge label's name: a little narrower than a condition, so a label stays a tag
ARROW_ROOM = 8.0  # points kept clear on both sides of an edge label between two steps
KEY_COLUMNS = 64
OVERLAY_COLUMNS = 30
CAPTION_EXTRA = 4  # columns more for a caption's English and detail lines than for its Chinese name
CAPTION_OVERHANG = 12  # points a caption may reach past its column into the gap between columns
LEGEND_COLUMNS = 150
DENSE_LADDER_COLUMNS = 196  # the compacted chart is wide: a ladder takes one line and the legend is lower
LEGEND_CELLS = 6  # legend entries per row
LINE_HEIGHT = 1.2  # Graphviz's HTML line height per point of font size, for sizing captions
RANKSEP = "0.14"  # inches between columns on the first pass: the gap is also where captions overhang
A3_FIT = "16.53,11.69"  # inches: an A3 landscape page (420 × 297 mm)
A3_POINTS = (16.53 * 72, 11.69 * 72)
A3_MIN_PT = 9.0  # the smallest text that reads on a printed page in a meeting
PAD_INCHES = 0.15  # Graphviz's pad around the drawing
# kind -> (shape, size in points, glyph drawn inside, glyph point size)
EVENT_SHAPES: dict[str, tuple[str, int, str, float]] = {
    "start": ("circle", 24, "", 0),
    "end": ("circle", 24, "", 0),
    "exclusive": ("diamond", 32, GATEWAY_GLYPHS["exclusive"], 15),
    "parallel": ("diamond", 32, GATEWAY_GLYPHS["parallel"], 15),
    "inclusive": ("diamond", 32, GATEWAY_GLYPHS["inclusive"], 15),
    "timer": ("doublecircle", 26, TIMER_GLYPH, 13),
    "message": ("doublecircle", 26, MESSAGE_GLYPH, 12),
}
PNG_DPI = 120
_LEFT_BR = '<BR ALIGN="LEFT"/>'
TITLE_NODE = "chart:title"
LEGEND_NODE = "chart:legend"
KEY_NODE = "chart:conditions"
LANE_HEADER = "lane:"  # ':' cannot occur in a node id, so drawing-only nodes never collide with steps
LANE_NOTE = "lane-note:"
CAPTION = "caption:"


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


def _font(text: str, color: str = MUTED, size: float = TEXT_PT, bold: bool = False) -> str:
    body = f"<B>{_h(text)}</B>" if bold else _h(text)
    return f'<FONT POINT-SIZE="{_num(size)}" COLOR="{color}">{body}</FONT>'


def _wrapped(text: str, columns: int, color: str = MUTED, size: float = TEXT_PT, bold: bool = False) -> list[str]:
    return [_font(line, color, size, bold) for line in wrap(text, columns)]


def _attrs(pairs: Iterable[tuple[str, str]]) -> str:
    """Attributes in the order given; values starting with '<' are HTML labels and stay unquoted."""
    parts = [f"{key}={value if value.startswith('<') else _q(value)}" for key, value in pairs]
    return "[" + ", ".join(parts) + "]"


def _names(node: NodeBase) -> tuple[str, str | None]:
    if node.name is None:
        return node.id, None
    if node.name.zh == node.name.en:
        return node.name.zh, None
    return node.name.zh, node.name.en


# -- what is drawn ------------------------------------------------------------------------------------
@dataclass
class _Chart:
    """Everything one drawing needs, worked out once: lanes, loops, ladder letters, the view."""

    graph: ProcessGraph
    overlay: Overlay | None
    view: View
    blocks: dict[str, list[str]]  # summary: collapsed split -> names of the branch steps it stands for
    lanes: dict[str, str]
    loops: set[int]
    ladders: dict[str, LadderRef]
    keys: dict[int, str] = field(default_factory=dict)  # edges whose condition is printed in the key
    wraps: tuple[tuple[int, int], ...] = WRAPS[:1]  # (name, text) wrap widths a box may use, narrowest first
    compact: bool = False  # columns compacted (see visualize.layout.compact_columns)
    corner_headers: bool = False  # lane names on one line in their band's corner, not in a column (compacted only)
    ladder_columns: int = LEGEND_COLUMNS  # the legend's ladder lines: wider on a compacted chart, one line each

    @property
    def definition(self) -> ProcessDefinition:
        return self.graph.definition

    @property
    def show_ladders(self) -> bool:
        return self.view == "detail" and (self.overlay is None or self.overlay.show_ladders)

    def is_event(self, node_id: str) -> bool:
        """Drawn as a small shape with its caption under it (events, gateways), not as a box."""
        return node_id not in self.blocks and self.graph.kind(node_id) in EVENT_SHAPES

    def dim(self, node_id: str) -> bool:
        return self.overlay is not None and self.overlay.dim_unmarked and node_id not in self.overlay.nodes

    def mark(self, node_id: str) -> NodeMark | None:
        return self.overlay.nodes.get(node_id) if self.overlay is not None else None


def _sla_line(chart: _Chart, node: HumanTask) -> str | None:
    if node.sla is None:
        return None
    text = sla_text(node.sla, chart.definition.parameters)
    if chart.show_ladders:
        ref = ladder_ref_of(chart.definition, node.id, node.sla.escalation, chart.ladders)
        if ref is not None:
            text += f" {ESCALATION_GLYPH}{ref.letter}"
    return text


def _box_label(chart: _Chart, node: NodeBase, extra: list[str], ink: str) -> str:
    """A task's label: kind glyph and Chinese name (bold), English name, SLA and overlay lines, wrapped.

    Wrapped as narrow as keeps the box at most BOX_LINES lines (before overlay lines): a tall box
    makes its whole lane tall, a wide one only its own column, which compacted columns absorb.
    On a compacted chart a step alone in its lane takes the wrap with the fewest lines: no step
    beside it needs the room, and its height is the lane's.
    """
    if chart.compact and node.id in chart.lanes and list(chart.lanes.values()).count(chart.lanes[node.id]) == 1:
        # alone in its lane: its width crowds no other step, and its height is the lane's, so fewest lines
        rows = min((_box_rows(chart, node, ink, *wrap_) for wrap_ in chart.wraps), key=len)
    else:
        for name_columns, text_columns in chart.wraps:
            rows = _box_rows(chart, node, ink, name_columns, text_columns)
            if len(rows) <= BOX_LINES:
                break
    for line in extra:  # overlay lines (times, visits) are read as a whole: wrapped wider
        rows += _wrapped(line, OVERLAY_COLUMNS, INK)
    return "<" + "<BR/>".join(rows) + ">"


def _box_rows(chart: _Chart, node: NodeBase, ink: str, name_columns: int, text_columns: int) -> list[str]:
    zh, en = _names(node)
    rows: list[str] = []
    glyph = {"auto": AUTO_GLYPH + " ", "subprocess": SUBPROCESS_GLYPH + " "}.get(node.kind, "")  # type: ignore[attr-defined]
    if node.id in chart.blocks:
        glyph = BLOCK_GLYPH + " "
    names = wrap(zh, name_columns)
    rows += [_font(glyph + line if i == 0 else line, ink, NAME_PT, bold=True) for i, line in enumerate(names)]
    if en and chart.view == "detail":  # the summary is in Chinese only; the legend and tooltips keep English
        rows += _wrapped(en, text_columns, ink)
    accent = DIM_INK if ink == DIM_INK else SLA_INK
    muted = DIM_INK if ink == DIM_INK else MUTED
    if isinstance(node, HumanTask):
        details = [d for d in (_sla_line(chart, node),) if d]
        if node.priority and node.priority != "normal":
            details.append(f"优先 {node.priority}")
        for detail in details:
            rows += _wrapped(detail, text_columns, accent)
        if node.different_actor_from:
            rows += _wrapped("四眼 four-eyes ≠ " + ", ".join(node.different_actor_from), text_columns, muted)
    elif isinstance(node, SubProcess) and chart.view == "detail":
        rows += _wrapped(f"{SUBPROCESS_GLYPH} {node.process}", text_columns, muted)
    if node.id in chart.blocks:
        rows += _wrapped("分支 branches: " + " · ".join(chart.blocks[node.id]), text_columns, muted)
    return rows


def _caption_lines(chart: _Chart, node: NodeBase, extra: list[str], ink: str) -> list[tuple[str, str, bool]]:
    """The caption of a circle or diamond as wrapped lines: (text, colour, bold), as narrow as keeps it
    at most CAPTION_LINES lines (before overlay lines)."""
    for name_columns, _ in chart.wraps:
        lines = _caption_rows(chart, node, ink, name_columns - 2)
        if len(lines) <= CAPTION_LINES:
            break
    return lines + [(line, INK, False) for text in extra for line in wrap(text, OVERLAY_COLUMNS)]


def _caption_rows(chart: _Chart, node: NodeBase, ink: str, columns: int) -> list[tuple[str, str, bool]]:
    zh, en = _names(node)
    muted = DIM_INK if ink == DIM_INK else MUTED
    lines: list[tuple[str, str, bool]] = []
    if node.name is None:  # unnamed gateways (joins, splits) are common: their id is in the tooltip
        pass
    else:
        lines += [(line, ink, True) for line in wrap(zh, columns)]
    texts: list[tuple[str, str]] = []
    if en and chart.view == "detail":
        texts.append((en, ink))
    if isinstance(node, TimerWait):
        until = condition_text(node.until or "", chart.definition.parameters)
        texts.append((f"{TIMER_GLYPH} " + (node.duration or f"until {until}"), SLA_INK))
    elif isinstance(node, MessageWait) and chart.view == "detail":
        texts.append((f"{MESSAGE_GLYPH} {node.message}" + (" · SLA paused" if node.pauses_sla else ""), muted))
    elif isinstance(node, EndNode) and node.outcome and chart.view == "detail":
        texts.append((f"→{node.outcome}", muted))  # no space: the arrow never stands on a line alone
    for text, color in texts:
        lines += [(line, color, False) for line in _wrap_identifier(text, columns + CAPTION_EXTRA)]
    return lines


def _wrap_identifier(text: str, columns: int) -> list[str]:
    """Like wrap, but an identifier such as an outcome may also break after an underscore: one
    unbreakable `→closed_dissatisfied` would otherwise set the width of its whole caption."""
    if " " in text:  # prose, not an identifier
        return wrap(text, columns)
    return [line.replace("_ ", "_") for line in wrap(text.replace("_", "_ "), columns)]


def caption_height(lines: list[tuple[str, str, bool]]) -> float:
    """Points a caption needs below its shape (Graphviz's HTML line height is 1.2 × the font size)."""
    return round(len(lines) * TEXT_PT * LINE_HEIGHT + 4)


def caption_width(lines: list[tuple[str, str, bool]]) -> float:
    """About how wide a caption is drawn: half an em per column, a little more in bold."""
    return max((text_width(text) * TEXT_PT * (0.56 if bold else 0.52) for text, _, bold in lines), default=0.0)


def _caption_stmt(chart: _Chart, node: NodeBase, pos: tuple[float, float] | None) -> str | None:
    """The caption of an event or gateway: a node of its own, placed right under the shape.

    Being placed rather than ranked, it may overhang the gaps between columns, so a wide name
    does not widen its column (the way BPMN names events and gateways, under the shape).
    """
    mark = chart.mark(node.id)
    lines = _caption_lines(chart, node, list(mark.lines) if mark else [], DIM_INK if chart.dim(node.id) else INK)
    if not lines:
        return None
    label = "<BR/>".join(_font(text, color, TEXT_PT, bold) for text, color, bold in lines)
    attrs = [("shape", "plaintext"), ("margin", "0,0"), ("label", "<" + label + ">"),
             ("id", f"caption-{node.id}"), ("tooltip", f"{node.id} ({node.kind})")]  # type: ignore[attr-defined]
    if pos is not None:
        attrs.append(("pos", f"{_num(pos[0])},{_num(pos[1])}!"))
    return f"{_q(CAPTION + node.id)} {_attrs(attrs)};"


def _node_stmt(chart: _Chart, node: NodeBase, pos: tuple[float, float] | None) -> str:
    """The statement declaring a node, with its BPMN-like shape, label and overlay marks."""
    kind = "block" if node.id in chart.blocks else node.kind  # type: ignore[attr-defined]
    mark = chart.mark(node.id)
    dim = chart.dim(node.id)
    ink = DIM_INK if dim else INK
    fill = DIM_FILL if dim else KIND_FILLS.get(kind, "#ffffff")
    line = DIM_INK if dim else INK
    penwidth = 1.2
    extra = list(mark.lines) if mark else []
    attrs: list[tuple[str, str]] = []
    if kind in ("human", "auto", "subprocess", "block"):
        attrs += [("shape", "box"), ("style", "rounded,filled"), ("margin", "0.05,0.03")]
        if kind in ("subprocess", "block"):
            attrs += [("peripheries", "2")]
        attrs += [("label", _box_label(chart, node, extra, ink))]
    else:
        shape, size, glyph, glyph_size = EVENT_SHAPES[kind]
        if kind == "end":
            penwidth = 3.5
        label = f'<<FONT POINT-SIZE="{_num(glyph_size)}">{_h(glyph)}</FONT>>' if glyph else ""
        if pos is None:
            # first pass: as tall as the shape with its caption under it; as wide as the shape, or as
            # the caption where it would reach more than CAPTION_OVERHANG into the gap beside it
            lines = _caption_lines(chart, node, extra, ink)
            tall = size + caption_height(lines)
            wide = max(size, caption_width(lines) - 2 * CAPTION_OVERHANG)
            attrs += [("shape", "box"), ("width", _num(round(wide) / 72)), ("height", _num(tall / 72)),
                      ("fixedsize", "true"), ("label", "")]
        else:
            attrs += [("shape", shape), ("width", _num(size / 72)), ("height", _num(size / 72)),
                      ("fixedsize", "true"), ("style", "filled"), ("label", label)]
    if mark is not None:
        fill = mark.fill or fill
        line = mark.color or line
        penwidth = max(penwidth, mark.penwidth) if mark.penwidth is not None else penwidth
    attrs += [("fillcolor", fill), ("color", line), ("penwidth", _num(penwidth))]
    if mark is not None and mark.font_color:
        attrs += [("fontcolor", mark.font_color)]
    if pos is not None:
        attrs += [("pos", f"{_num(pos[0])},{_num(pos[1])}!")]
    tooltip = mark.tooltip if mark and mark.tooltip else f"{node.id} ({node.kind})"  # type: ignore[attr-defined]
    if isinstance(node, AutoTask):
        tooltip += f" handler {node.handler}"
    attrs += [("tooltip", tooltip), ("id", f"node-{node.id}")]
    return f"{_q(node.id)} {_attrs(attrs)};"


# -- edges ---------------------------------------------------------------------------------------------
def branch_numbers(graph: ProcessGraph) -> dict[str, int]:
    """Evaluation order of the branches of exclusive gateways, by edge key (first match wins, default last).

    Only gateways with two or more conditional branches get numbers: there the order decides.
    """
    numbers: dict[str, int] = {}
    for node_id, edges in graph.outgoing.items():
        if graph.kind(node_id) != "exclusive" or sum(1 for e in edges if e.when) < 2:
            continue
        for position, edge in enumerate(edges, start=1):
            numbers[edge.key] = position
    return numbers


def _loop_routes(chart: _Chart, placement: Placement) -> dict[int, str]:
    """Edge `pos` of every rework loop that is drawn around the chart rather than across it."""
    shapes = {node_id: float(EVENT_SHAPES[chart.graph.kind(node_id)][1])
              for node_id in chart.graph.nodes if chart.is_event(node_id)}
    routes: dict[int, str] = {}
    sharing: dict[str, int] = {}
    for index in sorted(chart.loops):
        edge = chart.definition.edges[index]
        target_lane = chart.lanes[edge.target]
        route = loop_route(placement, edge.source, edge.target, chart.lanes[edge.source], target_lane, shapes,
                           sharing.get(target_lane, 0))
        if route is not None:
            routes[index] = route
            sharing[target_lane] = sharing.get(target_lane, 0) + 1
    return routes


def _shown_condition(chart: _Chart, edge: Edge) -> str | None:
    """The condition printed for an edge (full text, parameters marked), or None where it is not shown."""
    if edge.when and (chart.view == "detail" or edge.label is None):
        return condition_text(edge.when, chart.definition.parameters)
    return None


def condition_keys(chart: _Chart) -> dict[int, str]:
    """Edges whose condition is too long for one line of an edge label, by index: their key tag ("c1"...).

    A long condition drawn on the edge makes a label several lines tall that covers steps and other
    labels; its edge shows the tag and the condition key under the chart prints it whole.
    """
    keys: dict[int, str] = {}
    for index, edge in enumerate(chart.definition.edges):
        condition = _shown_condition(chart, edge)
        if condition is not None and text_width(f"[{condition}]") > CONDITION_COLUMNS:
            keys[index] = f"c{len(keys) + 1}"
    return keys


def _edge_lines(chart: _Chart, edge: Edge, index: int, number: int | None) -> list[tuple[str, str, bool]]:
    """An edge label's wrapped lines (text, colour, bold): branch number, label, condition or its key tag,
    default marker, overlay lines."""
    escalation = edge.kind == "escalation"
    mark = chart.overlay.edges.get(edge.key) if chart.overlay is not None else None
    dim = chart.overlay is not None and chart.overlay.dim_unmarked and mark is None
    ink = DIM_INK if dim else (ESCALATION_INK if escalation else INK)
    muted = DIM_INK if dim else MUTED
    lines: list[tuple[str, str, bool]] = []
    prefix = BRANCH_NUMBERS[number - 1] + " " if number is not None and number <= len(BRANCH_NUMBERS) else ""
    if escalation:
        prefix += f"{ESCALATION_GLYPH} 升级 "
    if edge.label is not None:
        text = edge.label.zh + (f" {edge.label.en}" if edge.label.en != edge.label.zh and chart.view == "detail" else "")
        lines += [(line, ink, False) for line in wrap(prefix + text, LABEL_COLUMNS)]
    elif prefix:
        lines += [(line, ink, False) for line in wrap(prefix.strip(), LABEL_COLUMNS)]
    condition = _shown_condition(chart, edge)
    if condition is not None:
        shown = f"[{chart.keys[index]}]" if index in chart.keys else f"[{condition}]"
        lines += [(line, muted, False) for line in wrap(shown, CONDITION_COLUMNS)]
    if edge.default:
        lines += [(line, muted, False) for line in wrap("默认 default", CONDITION_COLUMNS)]
    if mark is not None:
        lines += [(line, mark.color or INK, True) for line in mark.lines]
    return lines


def label_room(lines: list[tuple[str, str, bool]]) -> float:
    """Points of edge length a label needs between two steps in one lane, so it does not cover them."""
    return caption_width(lines) + 2 * ARROW_ROOM if lines else 0.0


def _edge_stmt(chart: _Chart, edge: Edge, index: int, number: int | None, positioned: bool,
               route: str | None = None) -> str:
    """One sequence flow: branch number, label (bilingual), condition (or its key tag), default marker,
    overlay marks.

    The `id` is the edge's position in the definition, not its key, so two edges between the
    same nodes still get distinct, stable SVG ids.
    """
    escalation = edge.kind == "escalation"
    is_back = index in chart.loops
    mark = chart.overlay.edges.get(edge.key) if chart.overlay is not None else None
    dim = chart.overlay is not None and chart.overlay.dim_unmarked and mark is None
    ink = DIM_INK if dim else (ESCALATION_INK if escalation else INK)
    rows = [_font(text, color, TEXT_PT, bold) for text, color, bold in _edge_lines(chart, edge, index, number)]
    attrs: list[tuple[str, str]] = []
    color = ink
    style = "dashed" if escalation else "solid"
    penwidth = 1.8 if escalation else 1.2
    if mark is not None:
        color = mark.color or color
        style = mark.style or style
        penwidth = mark.penwidth if mark.penwidth is not None else penwidth
    if rows:
        # on the positioned chart the label sits at the middle of its own edge; the first pass
        # leaves labels out of the ranking (as labels they would double the number of columns)
        attrs.append(("label" if positioned else "xlabel", "<" + "<BR/>".join(rows) + ">"))
    attrs += [("color", color), ("style", style), ("penwidth", _num(penwidth))]
    if edge.default:
        attrs += [("dir", "both"), ("arrowtail", "tee")]
    if escalation or is_back:
        attrs.append(("constraint", "false"))
    if route is not None:
        attrs.append(("pos", route))
    tooltip = edge.key + (f": {edge.when}" if edge.when else "") + (" (default)" if edge.default else "")
    classes = ["escalation" if escalation else "flow"] + (["loop"] if is_back else [])
    attrs += [("tooltip", tooltip), ("class", " ".join(classes)), ("id", f"edge-{index}")]
    return f"{_q(edge.source)} -> {_q(edge.target)} {_attrs(attrs)};"


# -- title, legend, lanes -------------------------------------------------------------------------------
def _title_label(chart: _Chart) -> str:
    """The chart's heading: names and version, the case-level SLA clocks, then the overlay's title."""
    definition = chart.definition
    rows = [f'<FONT POINT-SIZE="{TITLE_PT}"><B>{_h(definition.name.zh)}</B></FONT>'
            f'<FONT POINT-SIZE="{TITLE_PT - 3}">  {_h(definition.name.en)}</FONT>'
            + _font(f"   {definition.id} v{definition.version}"
                    + ("   摘要 summary view" if chart.view == "summary" else ""))]
    for clock in definition.clocks:
        text = f"{TIMER_GLYPH} 时限 clock · {clock_text(definition, clock)}"
        ref = ladder_ref_of(definition, clock.id, clock.escalation, chart.ladders) if chart.show_ladders else None
        rows += _wrapped(text + (f" {ESCALATION_GLYPH}{ref.letter}" if ref else ""), LEGEND_COLUMNS, SLA_INK)
    overlay = chart.overlay
    if overlay is not None:
        if overlay.title:
            rows.append(_font(overlay.title, INK, TITLE_PT - 3, bold=True))
        for line in overlay.subtitle:
            rows += _wrapped(line, LEGEND_COLUMNS, INK)
    return "<" + _LEFT_BR.join(rows) + _LEFT_BR + ">"


def _swatch(fill: str, text: str, line: str = MUTED, shape: str = "") -> str:
    return (f'<TD BGCOLOR="{fill}" WIDTH="14" HEIGHT="10" BORDER="1" COLOR="{line}">{_h(shape)}</TD>'
            f'<TD ALIGN="LEFT">{_font(text, INK)}  </TD>')


def _legend_label(chart: _Chart) -> str:
    """The legend: shapes and marks in use, overlay colours, and every escalation ladder once."""
    definition = chart.definition
    kinds = {node.kind for node in definition.nodes}
    cells: list[str] = []
    named = [("human", "人工步骤 human step"), ("auto", f"{AUTO_GLYPH} 自动 automatic"),
             ("subprocess", f"{SUBPROCESS_GLYPH} 子流程 sub-process")]
    cells += [_swatch(KIND_FILLS[kind], text) for kind, text in named if kind in kinds]
    if chart.blocks:
        cells.append(_swatch(KIND_FILLS["auto"], f"{BLOCK_GLYPH} 收起的并行分支 collapsed branches"))
    marks = [("×", "排他 exclusive", "exclusive"), ("+", "并行 parallel", "parallel"),
             ("○", "包容 inclusive", "inclusive"), (TIMER_GLYPH, "定时 timer", "timer"),
             (MESSAGE_GLYPH, "等待消息 message", "message")]
    cells += [f'<TD ALIGN="LEFT">{_font(f"{glyph} {text}", INK)}  </TD>' for glyph, text, kind in marks if kind in kinds]
    texts = ["① 分支顺序 branch order (first match wins)", "⊣ 默认 default",
             f"{EDITABLE_MARK} 可调默认值 editable default (parameters)"]
    if any(e.kind == "escalation" for e in definition.edges):
        texts.append("- - → 升级路径 escalation")
    cells += [f'<TD ALIGN="LEFT">{_font(text, INK)}  </TD>' for text in texts]
    overlay = chart.overlay
    if overlay is not None:
        cells += [_swatch(colour, label) for colour, label in overlay.legend]
    lines = ["".join(cells[i:i + LEGEND_CELLS]) for i in range(0, len(cells), LEGEND_CELLS)]
    rows = [f'<TR><TD ALIGN="LEFT" BALIGN="LEFT"><TABLE BORDER="0" CELLSPACING="2" CELLPADDING="1"><TR>'
            f'{line}</TR></TABLE></TD></TR>' for line in lines]
    if chart.show_ladders and chart.ladders:
        for ref in chart.ladders.values():
            text = f"{ESCALATION_GLYPH}{ref.letter} {ref.name}: " + " · ".join(ladder_lines(definition, ref.levels))
            lines = wrap(text, chart.ladder_columns)
            body = _LEFT_BR.join(_font(line, LADDER_INK if i == 0 else INK) for i, line in enumerate(lines))
            rows.append(f'<TR><TD ALIGN="LEFT" BALIGN="LEFT">{body}{_LEFT_BR}</TD></TR>')
    return f'<<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="1">{"".join(rows)}</TABLE>>'


def _key_label(chart: _Chart) -> str:
    """The condition key: every condition too long for its edge, whole (wrapped), under its tag and the
    edge's name, in the order of the edges in the definition."""
    rows = [_font("条件 conditions (✎ 可调默认值 editable default)", INK, bold=True)]
    for index, tag in chart.keys.items():
        edge = chart.definition.edges[index]
        condition = _shown_condition(chart, edge) or ""
        name = edge.label.zh if edge.label is not None else f"{edge.source} → {edge.target}"
        lines = wrap(f"[{tag}] {name}: {condition}", KEY_COLUMNS)
        rows += [_font(line, INK if i == 0 else MUTED) for i, line in enumerate(lines)]
    return "<" + _LEFT_BR.join(rows) + _LEFT_BR + ">"


def _lane_header_label(name: Text, one_line: bool) -> str:
    if one_line:
        return "<" + _font(name.zh, INK, NAME_PT, bold=True) + (
            _font("  " + name.en) if name.en != name.zh else "") + ">"
    rows = _wrapped(name.zh, 10, INK, NAME_PT, bold=True)
    if name.en != name.zh:
        rows += _wrapped(name.en, 14, MUTED)
    return "<" + "<BR/>".join(rows) + ">"


def _shown_lanes(chart: _Chart) -> list[tuple[str, Text, list[str], list[str]]]:
    """Lanes drawn, in definition order: (id, name, member nodes, escalations received).

    A lane no step sits in is still drawn when escalations reach it: it is where a late case goes.
    """
    reached = escalation_roles(chart.definition) if chart.show_ladders else {}
    shown = []
    for lane in chart.definition.lanes:
        members = [node.id for node in chart.definition.nodes if chart.lanes.get(node.id) == lane.id]
        received = reached.get(lane.id, [])
        if members or lane.id in reached:
            shown.append((lane.id, lane.name, members, received))
    return shown


def _lane_note_label(received: list[str]) -> str:
    text = f"{ESCALATION_GLYPH} 仅接收升级 escalations only: " + ", ".join(received)
    return "<" + "<BR/>".join(_wrapped(text, 40, LADDER_INK)) + ">"


# -- the chart -----------------------------------------------------------------------------------------
def _free_nodes(chart: _Chart, placement: Placement | None) -> list[str]:
    """Title, legend, lane names and lane notes: placed by us, never ranked among the steps."""
    def free(name: str, label: str, element_id: str) -> str:
        attrs = [("shape", "plaintext"), ("margin", "0.05,0.03"), ("label", label), ("id", element_id)]
        if chart.corner_headers and name.startswith(LANE_HEADER):  # one line in a band's corner: as low as its text
            attrs.append(("height", "0"))
        where = placement.nodes.get(name) if placement is not None else None
        if where is not None:
            attrs.append(("pos", f"{_num(where[0])},{_num(where[1])}!"))
        return f"{_q(name)} {_attrs(attrs)};"

    stmts = [free(TITLE_NODE, _title_label(chart), "chart-title"),
             free(LEGEND_NODE, _legend_label(chart), "chart-legend")]
    if chart.keys:
        stmts.append(free(KEY_NODE, _key_label(chart), "chart-conditions"))
    for lane_id, name, members, received in _shown_lanes(chart):
        stmts.append(free(LANE_HEADER + lane_id, _lane_header_label(name, chart.view == "summary" or chart.corner_headers), f"lane-name-{lane_id}"))
        if not members:
            stmts.append(free(LANE_NOTE + lane_id, _lane_note_label(received), f"lane-note-{lane_id}"))
    return stmts


def _header(chart: _Chart, graph_attrs: list[tuple[str, str]]) -> list[str]:
    font = cjk_font()
    return [
        f"digraph {_q(chart.definition.id)} {{",
        "  graph " + _attrs(graph_attrs) + ";",
        "  node " + _attrs([("fontname", font), ("fontsize", str(TEXT_PT)), ("fontcolor", INK)]) + ";",
        "  edge " + _attrs([("fontname", font), ("fontsize", str(TEXT_PT)), ("arrowsize", "0.7")]) + ";",
    ]


def _dot(chart: _Chart, placement: Placement | None, routes: dict[int, str] | None = None) -> str:
    """DOT text of the chart; with a placement, every node is pinned and lanes are full-width bands.

    Without one it is the first pass for `dot`: steps only, one cluster per lane.
    """
    definition = chart.definition
    numbers = branch_numbers(chart.graph)

    def pos(name: str) -> tuple[float, float] | None:
        return placement.nodes.get(name) if placement is not None else None

    graph_attrs: list[tuple[str, str]] = [
        ("charset", "UTF-8"), ("fontname", cjk_font()), ("fontsize", str(TEXT_PT)), ("bgcolor", "white"),
        ("outputorder", "edgesfirst"), ("forcelabels", "true"), ("size", A3_FIT), ("pad", _num(PAD_INCHES)),
        ("id", f"process-{definition.id}"),
    ]
    if placement is None:
        graph_attrs = [("rankdir", "LR"), ("newrank", "true"), ("nodesep", "0.15"), ("ranksep", RANKSEP),
                       *graph_attrs]
    else:
        graph_attrs = [("layout", "neato"), ("splines", "true"), ("sep", "+4"), ("esep", "+2"),
                       ("bb", f"0,0,{_num(placement.width)},{_num(placement.height)}"), *graph_attrs]
    out = _header(chart, graph_attrs)
    if placement is not None:
        out += ["  " + stmt for stmt in _free_nodes(chart, placement)]
    for lane_index, (lane_id, _, members, _) in enumerate(_shown_lanes(chart)):
        if not members and placement is None:
            continue
        out.append(f"  subgraph {_q('cluster_' + lane_id)} {{")
        cluster = [("label", ""), ("style", "filled"), ("fillcolor", LANE_FILLS[lane_index % 2]),
                   ("color", LANE_LINE), ("penwidth", "0.8"), ("margin", "10"), ("id", f"lane-{lane_id}")]
        if placement is not None:
            x1, y1, x2, y2 = placement.bands[lane_id]
            cluster.append(("bb", f"{_num(x1)},{_num(y1)},{_num(x2)},{_num(y2)}"))
        out.append("    graph " + _attrs(cluster) + ";")
        for node_id in members:
            node = chart.graph.nodes[node_id]
            out.append("    " + _node_stmt(chart, node, pos(node_id)))
            if placement is not None and chart.is_event(node_id):
                caption = _caption_stmt(chart, node, pos(CAPTION + node_id))
                if caption is not None:
                    out.append("    " + caption)
        out.append("  }")
    routes = routes or {}
    for index, edge in enumerate(definition.edges):
        if edge.source not in chart.graph.nodes or edge.target not in chart.graph.nodes:
            continue
        out.append("  " + _edge_stmt(chart, edge, index, numbers.get(edge.key), placement is not None,
                                     routes.get(index)))
    out.append("}")
    return "\n".join(out) + "\n"


def _placements(chart: _Chart, first_pass: str) -> list[Placement]:
    """Lay the steps out with `dot`, size the free-standing blocks separately, and stack the bands:
    as `dot` stacked each lane's steps, and packed into as few rows as possible."""
    captions: dict[str, tuple[str, float]] = {}
    free = _free_nodes(chart, None)
    for node_id, node in chart.graph.nodes.items():
        if chart.is_event(node_id):
            caption = _caption_stmt(chart, node, None)
            if caption is not None:
                free.append(caption)
                captions[CAPTION + node_id] = (node_id, EVENT_SHAPES[node.kind][1])
    sizes = "\n".join([*_header(chart, [("charset", "UTF-8")]), *("  " + stmt for stmt in free), "}"]) + "\n"
    steps, blocks = layouts_of([first_pass, sizes])
    steps.nodes.update(blocks.nodes)
    lanes = [(lane_id, LANE_HEADER + lane_id, members or [LANE_NOTE + lane_id])
             for lane_id, _, members, _ in _shown_lanes(chart)]
    loop_lanes = [chart.lanes[chart.definition.edges[i].target] for i in sorted(chart.loops)]
    numbers = branch_numbers(chart.graph)
    flows = [(edge.source, edge.target, label_room(_edge_lines(chart, edge, index, numbers.get(edge.key))))
             for index, edge in enumerate(chart.definition.edges)
             if edge.kind != "escalation" and index not in chart.loops]
    below = [LEGEND_NODE, *([KEY_NODE] if chart.keys else [])]
    stacked, packed = (place(steps, lanes, above=[TITLE_NODE], below=below, captions=captions,
                             headers_on_top=chart.view == "summary", loop_lanes=loop_lanes, packed=packed,
                             flows=flows if chart.compact else None, corner_headers=chart.corner_headers)
                       for packed in (False, True))
    return [stacked, packed] if packed.height < stacked.height - 1 else [stacked]  # packing gained nothing


def flowchart_dot(graph: ProcessGraph, overlay: Overlay | None = None, *, view: View = "detail") -> str:
    """The DOT text of a process (optionally painted with an overlay); byte-identical for equal input.

    The text is positioned (a first `dot` pass runs here), so it needs Graphviz installed; `render`
    then only routes the edges. `view="summary"` collapses hand-off branches and leaves out ladders.
    """
    if view not in VIEWS:
        raise RenderError(f"unknown view '{view}'", hint="use one of " + ", ".join(VIEWS))
    blocks: dict[str, list[str]] = {}
    if view == "summary":
        from visualize.summary import collapse_branches

        graph, blocks = collapse_branches(graph)
    chart = _Chart(graph=graph, overlay=overlay, view=view, blocks=blocks, lanes=assign_lanes(graph),
                   loops=back_edges(graph), ladders=ladder_refs(graph.definition))
    chart.keys = condition_keys(chart)
    try:
        placements = [(chart, placement) for placement in _placements(chart, _dot(chart, None))]
        if max(_placed_text_pt(p) for _, p in placements) < A3_MIN_PT:
            # too big for A3 as `dot` lays it out: wrap tall boxes wider and compact the columns, with
            # the lane names in a column or in each band's corner
            dense = replace(chart, wraps=WRAPS, compact=True, ladder_columns=DENSE_LADDER_COLUMNS)
            first_pass = _dot(dense, None)
            dense_placements = [(variant, placement) for variant in (dense, replace(dense, corner_headers=True))
                                for placement in _placements(variant, first_pass)]
            if max(_placed_text_pt(p) for _, p in dense_placements) > max(_placed_text_pt(p) for _, p in placements):
                placements += dense_placements  # the denser layout may still cross more edges
        return _fewest_crossings(placements)
    except SvcflowError as exc:
        raise RenderError(exc.message, hint=exc.hint) from None


def _fewest_crossings(placements: list[tuple[_Chart, Placement]]) -> str:
    """The positioned chart that prints at 9 pt or more on A3 (beyond that all read), then the one that
    crosses the fewest edges, then the one whose text prints largest, then the one with the fewest edge
    labels on other labels or on nodes, then the lowest, then the first. Crossings come before a
    larger text below 9 pt: a denser layout that tangles the edges is no gain in a meeting.

    The candidates are each (chart, placement) given (lanes as `dot` stacked them, lanes packed into rows;
    on a chart too big for A3 also compacted, with lane names in a column or in the bands' corners) with
    the rework loops left to the router and, where there are loops to route, drawn around the
    bands. Around the chart a loop crosses nothing on a chart with many lanes between its ends;
    on a small chart the router's direct curve is often clear already, and the detour would cut
    through an edge the direct curve misses. Packed lanes make a lower chart but can bring steps
    of different lanes into each other's way. All candidates are routed side by side and counted.
    """
    candidates: list[tuple[str, float]] = []
    for chart, placement in placements:
        candidates.append((_dot(chart, placement), placement.height))
        routes = _loop_routes(chart, placement)
        if routes:
            candidates.append((_dot(chart, placement, routes), placement.height))
    layouts = layouts_of([dot for dot, _ in candidates], ("neato", "-n2"))
    ranked = sorted(range(len(candidates)),
                    key=lambda i: (not prints_on_a3(layouts[i]), len(crossing_pairs(layouts[i])),
                                   -min(round(a3_text_pt(layouts[i]), 1), A3_MIN_PT),
                                   len(label_overlaps(layouts[i])), round(candidates[i][1]), i))
    return candidates[ranked[0]][0]


def _placed_text_pt(placement: Placement) -> float:
    """The point size a placed chart's text would print at on A3 (before its edges are routed)."""
    return a3_text_pt(Layout(width=placement.width, height=placement.height))


def a3_text_pt(layout: Layout) -> float:
    """The point size the chart's text prints at when the chart is scaled to an A3 landscape page."""
    pad = 2 * PAD_INCHES * 72
    scale = min(1.0, A3_POINTS[0] / (layout.width + pad), A3_POINTS[1] / (layout.height + pad))
    return TEXT_PT * scale


def prints_on_a3(layout: Layout) -> bool:
    """Readable on one A3 landscape page: text at 9 pt or more once the chart is scaled to it."""
    return a3_text_pt(layout) >= A3_MIN_PT


def render(dot_text: str, fmt: Format, *, png_dpi: int = PNG_DPI) -> bytes:
    """DOT text to svg/png/pdf bytes through Graphviz; "dot" returns the text itself.

    Positioned charts (from `flowchart_dot`) are drawn with `neato -n2`, which keeps every node
    where it was placed and routes the edges around them. PNG is rasterised at `png_dpi`.
    """
    if fmt not in FORMATS:
        raise RenderError(f"unknown format '{fmt}'", hint="use one of " + ", ".join(FORMATS))
    if fmt == "dot":
        return dot_text.encode("utf-8")
    if fmt == "png":
        body, brace, _ = dot_text.rstrip().rpartition("}")
        if brace:
            dot_text = f"{body}  graph [dpi={int(png_dpi)}];\n}}\n"
    import graphviz  # only rendering needs it

    positioned = POSITIONED in dot_text.split("\n", 2)[1] if dot_text.count("\n") >= 2 else False
    try:
        source = graphviz.Source(dot_text, engine="neato" if positioned else "dot")
        data = source.pipe(format=fmt, quiet=True, neato_no_op=2 if positioned else None)
    except graphviz.ExecutableNotFound:
        raise RenderError("the Graphviz program 'dot' was not found", hint=GRAPHVIZ_HINT) from None
    except graphviz.CalledProcessError as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        raise RenderError(f"Graphviz could not render the chart: {stderr.strip() or exc}",
                          hint="check the DOT text with --format dot") from None
    return bytes(data)


def chart_layout(dot_text: str) -> Layout:
    """The computed layout of a chart from `flowchart_dot` (positions, edge curves), for checks."""
    positioned = POSITIONED in dot_text.split("\n", 2)[1]
    return layout_of(dot_text, ("neato", "-n2") if positioned else ("dot",))


__all__ = ["flowchart_dot", "render", "RenderError", "Format", "FORMATS", "View", "VIEWS", "branch_numbers",
           "chart_layout", "assign_lanes", "back_edges"]

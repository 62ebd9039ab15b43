"""What changed between two versions of a process, drawn on one chart.

A designer who edits a definition wants to see the edit, not two charts to compare by eye.
The diff chart is the new version with what the old one had and the new one dropped put back
in (so a removed step is still where it was), painted: added steps and edges green, removed
ones red and dashed, changed ones amber with a line saying what changed. Case-level SLA clocks
that changed are listed under the title. Everything is computed from the two definitions; the
drawing is the ordinary flowchart with an Overlay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.definition.graph import ProcessGraph, compile_graph
from engine.definition.loader import LoadedDefinition
from engine.definition.model import Edge, NodeBase, ProcessDefinition
from visualize.notation import clock_text, sla_text
from visualize.overlay import EdgeMark, NodeMark, Overlay

ADDED_FILL = "#dcfce7"
ADDED_LINE = "#15803d"
REMOVED_FILL = "#fee2e2"
REMOVED_LINE = "#dc2626"
CHANGED_FILL = "#fef3c7"
CHANGED_LINE = "#b45309"


@dataclass
class DefinitionDiff:
    """Ids of steps and keys of edges added, removed and changed (with what changed), in file order."""

    added_nodes: list[str] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    changed_nodes: dict[str, list[str]] = field(default_factory=dict)
    added_edges: list[str] = field(default_factory=list)
    removed_edges: list[str] = field(default_factory=list)
    changed_edges: dict[str, list[str]] = field(default_factory=dict)
    changed_clocks: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added_nodes or self.removed_nodes or self.changed_nodes or self.added_edges
                    or self.removed_edges or self.changed_edges or self.changed_clocks)

    def summary(self) -> str:
        """One line for the terminal: how many of each."""
        parts = [f"{len(self.added_nodes)} step(s) added", f"{len(self.removed_nodes)} removed",
                 f"{len(self.changed_nodes)} changed", f"{len(self.added_edges)} edge(s) added",
                 f"{len(self.removed_edges)} removed", f"{len(self.changed_edges)} changed",
                 f"{len(self.changed_clocks)} clock(s) changed"]
        return ", ".join(parts)


def _fields(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(mode="json", exclude_none=True, by_alias=True))


def _node_changes(old: ProcessDefinition, new: ProcessDefinition, before: NodeBase, after: NodeBase) -> list[str]:
    """Readable lines for what changed on one step: the SLA as targets, other fields by name."""
    was, now = _fields(before), _fields(after)
    lines: list[str] = []
    for name in sorted(set(was) | set(now)):
        if was.get(name) == now.get(name):
            continue
        if name == "sla":
            old_sla = getattr(before, "sla", None)
            new_sla = getattr(after, "sla", None)
            old_text = sla_text(old_sla, old.parameters) if old_sla is not None else "no SLA"
            new_text = sla_text(new_sla, new.parameters) if new_sla is not None else "no SLA"
            lines.append(f"{old_text} → {new_text}")
        else:
            lines.append(f"{name} changed")
    return lines


def _edge_changes(before: Edge, after: Edge) -> list[str]:
    lines: list[str] = []
    if before.when != after.when:
        lines.append(f"[{before.when or '—'}] → [{after.when or '—'}]")
    if before.default != after.default:
        lines.append("default " + ("added" if after.default else "removed"))
    if before.label != after.label or before.kind != after.kind:
        lines.append("label/kind changed")
    return lines


def diff_definitions(old: ProcessDefinition, new: ProcessDefinition) -> DefinitionDiff:
    """Compare two versions step by step (by id) and edge by edge (by key)."""
    diff = DefinitionDiff()
    old_nodes = {node.id: node for node in old.nodes}
    new_nodes = {node.id: node for node in new.nodes}
    diff.added_nodes = [node_id for node_id in new_nodes if node_id not in old_nodes]
    diff.removed_nodes = [node_id for node_id in old_nodes if node_id not in new_nodes]
    for node_id, after in new_nodes.items():
        before = old_nodes.get(node_id)
        if before is not None and _fields(before) != _fields(after):
            diff.changed_nodes[node_id] = _node_changes(old, new, before, after)
    old_edges = {edge.key: edge for edge in old.edges}
    new_edges = {edge.key: edge for edge in new.edges}
    diff.added_edges = [key for key in new_edges if key not in old_edges]
    diff.removed_edges = [key for key in old_edges if key not in new_edges]
    for key, after_edge in new_edges.items():
        before_edge = old_edges.get(key)
        if before_edge is not None and _fields(before_edge) != _fields(after_edge):
            diff.changed_edges[key] = _edge_changes(before_edge, after_edge) or ["changed"]
    old_clocks = {clock.id: clock for clock in old.clocks}
    new_clocks = {clock.id: clock for clock in new.clocks}
    for clock_id in [*old_clocks, *(c for c in new_clocks if c not in old_clocks)]:
        before_clock, after_clock = old_clocks.get(clock_id), new_clocks.get(clock_id)
        if before_clock is not None and after_clock is not None:
            if _fields(before_clock) != _fields(after_clock):
                diff.changed_clocks.append(f"{clock_text(old, before_clock)}  →  {clock_text(new, after_clock)}")
        elif before_clock is not None:
            diff.changed_clocks.append(f"removed: {clock_text(old, before_clock)}")
        elif after_clock is not None:
            diff.changed_clocks.append(f"added: {clock_text(new, after_clock)}")
    return diff


def _merged(old: ProcessDefinition, new: ProcessDefinition, diff: DefinitionDiff) -> ProcessDefinition:
    """The new definition with the removed steps, edges and lanes put back where they were.

    A removed step goes right after the step that preceded it in the old file, so the drawing
    keeps the designer's order (and with it the layout) around the edit.
    """
    removed = set(diff.removed_nodes)
    nodes = list(new.nodes)
    for position, node in enumerate(old.nodes):
        if node.id not in removed:
            continue
        before = [n.id for n in old.nodes[:position]]
        ids = [n.id for n in nodes]
        anchor = max((ids.index(b) for b in before if b in ids), default=-1)
        nodes.insert(anchor + 1, node)
    lane_ids = {lane.id for lane in new.lanes}
    lanes = list(new.lanes) + [lane for lane in old.lanes if lane.id not in lane_ids]
    removed_edges = set(diff.removed_edges)
    edges = list(new.edges) + [edge for edge in old.edges if edge.key in removed_edges]
    ladders = {**old.ladders, **new.ladders}
    parameters = {**old.parameters, **new.parameters}
    return new.model_copy(update={"nodes": nodes, "edges": edges, "lanes": lanes, "ladders": ladders,
                                  "parameters": parameters})


def diff_chart(old: ProcessGraph, new: ProcessGraph) -> tuple[ProcessGraph, Overlay, DefinitionDiff]:
    """The graph to draw (new plus what was removed), the overlay painting the changes, and the diff."""
    diff = diff_definitions(old.definition, new.definition)
    merged = _merged(old.definition, new.definition, diff)
    loaded = LoadedDefinition(definition=merged, source=new.loaded.source, hash=new.hash + "-diff-" + old.hash)
    graph = compile_graph(loaded)
    overlay = Overlay(
        title=f"变更 diff: v{old.definition.version} → v{new.definition.version}",
        subtitle=[diff.summary(), *(f"时限 clock · {line}" for line in diff.changed_clocks)],
        legend=[(ADDED_FILL, "新增 added"), (REMOVED_FILL, "删除 removed"), (CHANGED_FILL, "修改 changed")],
    )
    for node_id in diff.added_nodes:
        overlay.nodes[node_id] = NodeMark(fill=ADDED_FILL, color=ADDED_LINE, penwidth=2.5, lines=["+ 新增 added"])
    for node_id in diff.removed_nodes:
        overlay.nodes[node_id] = NodeMark(fill=REMOVED_FILL, color=REMOVED_LINE, penwidth=2.5,
                                          font_color=REMOVED_LINE, lines=["− 删除 removed"])
    for node_id, lines in diff.changed_nodes.items():
        overlay.nodes[node_id] = NodeMark(fill=CHANGED_FILL, color=CHANGED_LINE, penwidth=2.5,
                                          lines=["~ 修改 changed", *lines])
    for key in diff.added_edges:
        overlay.edges[key] = EdgeMark(color=ADDED_LINE, penwidth=2.5, lines=["+ added"])
    for key in diff.removed_edges:
        overlay.edges[key] = EdgeMark(color=REMOVED_LINE, penwidth=2.0, style="dashed", lines=["− removed"])
    for key, lines in diff.changed_edges.items():
        overlay.edges[key] = EdgeMark(color=CHANGED_LINE, penwidth=2.5, lines=["~ changed", *lines])
    return graph, overlay, diff


__all__ = ["DefinitionDiff", "diff_chart", "diff_definitions", "ADDED_FILL", "REMOVED_FILL", "CHANGED_FILL"]

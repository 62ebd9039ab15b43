"""The summary view of a process: hand-off branches collapsed into one box.

A review meeting first needs the shape of a process: who does what in which order. Four
departments answering a hand-off in parallel are one stage of that shape, so a parallel or
inclusive split whose branches are single steps meeting again at the split's join is drawn as
one box naming the branches. The drawing-only graph is compiled from a copy of the definition;
the definition itself is never changed.
"""

from __future__ import annotations

from engine.definition.graph import ProcessGraph, compile_graph
from engine.definition.loader import LoadedDefinition


def _branch_steps(graph: ProcessGraph, split: str, join: str) -> list[str] | None:
    """The single steps between split and join, or None when a branch is longer than one step."""
    steps: list[str] = []
    for edge in graph.outgoing.get(split, []):
        if edge.target == join:
            continue
        after = graph.outgoing.get(edge.target, [])
        if len(after) != 1 or after[0].target != join or len(graph.incoming.get(edge.target, [])) != 1:
            return None
        steps.append(edge.target)
    return steps if len(steps) >= 2 else None


def collapse_branches(graph: ProcessGraph) -> tuple[ProcessGraph, dict[str, list[str]]]:
    """A graph to draw with each collapsible split standing for its branches, and split -> branch names."""
    blocks: dict[str, list[str]] = {}
    joins: dict[str, str] = {}
    for split, join in graph.split_joins.items():
        if join is None:
            continue
        steps = _branch_steps(graph, split, join)
        if steps is not None:
            blocks[split] = steps
            joins[join] = split
    if not blocks:
        return graph, {}
    names = {split: [_branch_name(graph, split, step) for step in steps] for split, steps in blocks.items()}
    hidden = {step for steps in blocks.values() for step in steps} | set(joins)
    definition = graph.definition
    nodes = [node for node in definition.nodes if node.id not in hidden]
    edges = []
    for edge in definition.edges:
        if edge.source in blocks and (edge.target in hidden):
            continue  # split -> branch step, or split -> join (the "no hand-off" branch)
        if edge.source in hidden and edge.source not in joins:
            continue  # branch step -> join, or an escalation leaving a hidden step
        if edge.target in hidden:
            continue
        if edge.source in joins:
            edge = edge.model_copy(update={"source": joins[edge.source]})
        edges.append(edge)
    summary = definition.model_copy(update={"nodes": nodes, "edges": edges})
    loaded = LoadedDefinition(definition=summary, source=graph.loaded.source, hash=graph.hash + "-summary")
    return compile_graph(loaded), names


def _branch_name(graph: ProcessGraph, split: str, node_id: str) -> str:
    """The branch's label where the designer gave one (short: 技术, 计费), else the step's name."""
    edge = next(e for e in graph.outgoing[split] if e.target == node_id)
    if edge.label is not None:
        return edge.label.zh
    node = graph.nodes[node_id]
    return node.name.zh if node.name else node_id


__all__ = ["collapse_branches"]

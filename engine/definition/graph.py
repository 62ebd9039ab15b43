"""The compiled form of a definition: a networkx graph plus the lookups the interpreter needs.

Compiling once per definition version keeps the interpreter's hot path to dict lookups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

import networkx as nx

from engine.time.calendar import BusinessCalendar
from engine.definition.model import (
    AutoTask, CaseClock, Edge, EscalationLevel, FieldSpec, HumanTask, MessageWait, Node, NodeBase, Policy,
    ProcessDefinition, SubProcess,
)
from engine.expressions.cel import ExpressionError, compile_expression
from engine.time.sla import BREACH_PCT, thresholds
from engine.definition.loader import LoadedDefinition

SPLIT_KINDS = frozenset({"parallel", "inclusive"})
_SINK = "__sink__"
_N = TypeVar("_N", bound=NodeBase)


def nodes_of_kind(nodes: dict[str, Node], cls: type[_N]) -> dict[str, _N]:
    """The nodes of one class by id, in definition order: a typed view for code that needs one kind."""
    return {node_id: node for node_id, node in nodes.items() if isinstance(node, cls)}


@dataclass
class ProcessGraph:
    """A definition ready to run: nodes by id, edges by source, split/join pairs.

    `nodes` holds every node as the union of the node classes, so code that matches on the class
    (`match node: case HumanTask(): ...`) is checked for every kind. Code that needs one kind reads the
    typed maps (`human_tasks`, `auto_tasks`, `message_waits`, `subprocesses`): a node of another kind is
    simply not there, so no caller needs an `isinstance` assert.
    """

    loaded: LoadedDefinition
    nodes: dict[str, Node]
    outgoing: dict[str, list[Edge]]
    incoming: dict[str, list[Edge]]
    escalation_edges: dict[str, Edge]
    digraph: nx.DiGraph
    start_id: str | None
    calendar: BusinessCalendar = field(repr=False)

    @property
    def definition(self) -> ProcessDefinition:
        return self.loaded.definition

    @property
    def hash(self) -> str:
        return self.loaded.hash

    @property
    def process_id(self) -> str:
        return self.definition.id

    def kind(self, node_id: str) -> str:
        return self.nodes[node_id].kind

    @cached_property
    def human_tasks(self) -> dict[str, HumanTask]:
        return nodes_of_kind(self.nodes, HumanTask)

    @cached_property
    def auto_tasks(self) -> dict[str, AutoTask]:
        return nodes_of_kind(self.nodes, AutoTask)

    @cached_property
    def message_waits(self) -> dict[str, MessageWait]:
        return nodes_of_kind(self.nodes, MessageWait)

    @cached_property
    def subprocesses(self) -> dict[str, SubProcess]:
        return nodes_of_kind(self.nodes, SubProcess)

    def is_join(self, node_id: str) -> bool:
        return self.kind(node_id) in SPLIT_KINDS and len(self.incoming.get(node_id, [])) > 1

    def is_split(self, node_id: str) -> bool:
        return self.kind(node_id) in SPLIT_KINDS and len(self.outgoing.get(node_id, [])) > 1

    @cached_property
    def split_joins(self) -> dict[str, str | None]:
        """Each split gateway's matching join: its immediate post-dominator of the same kind.

        Found on the reversed graph from a virtual sink behind all ends; None when the
        nearest post-dominator is not a join of the same kind (the validator reports it).
        """
        reverse = nx.DiGraph()
        reverse.add_nodes_from(self.digraph.nodes)
        reverse.add_node(_SINK)
        for source, target, escalation in self.digraph.edges(data="escalation"):
            if not escalation:
                reverse.add_edge(target, source)
        for node_id in self.nodes:
            if self.kind(node_id) == "end" or self.digraph.out_degree(node_id) == 0:
                reverse.add_edge(_SINK, node_id)
        try:
            idom = nx.immediate_dominators(reverse, _SINK)
        except (nx.NetworkXError, KeyError):
            return {}
        pairs: dict[str, str | None] = {}
        for node_id in self.nodes:
            if not self.is_split(node_id):
                continue
            candidate = idom.get(node_id)
            while candidate is not None and candidate != _SINK:
                if candidate in self.nodes and self.is_join(candidate):
                    break
                nxt = idom.get(candidate)
                candidate = nxt if nxt != candidate else None
            if candidate is None or candidate == _SINK or self.kind(candidate) != self.kind(node_id):
                pairs[node_id] = None
            else:
                pairs[node_id] = candidate
        return pairs

    @cached_property
    def join_split(self) -> dict[str, str]:
        return {join: split for split, join in self.split_joins.items() if join is not None}

    @cached_property
    def form_specs(self) -> dict[str, dict[str, FieldSpec]]:
        """Each human step's form fields by id; every completion checks its output against them."""
        return {node_id: {spec.id: spec for spec in node.form} for node_id, node in self.human_tasks.items()}

    @cached_property
    def clocks_started_at(self) -> dict[str, list[CaseClock]]:
        """Case clocks by the node whose activation starts them (clocks started with the case: key None)."""
        starts: dict[str, list[CaseClock]] = {}
        for clock in self.definition.clocks:
            if clock.start_on is not None:
                starts.setdefault(clock.start_on, []).append(clock)
        return starts

    @cached_property
    def clocks_stopped_at(self) -> dict[str, list[CaseClock]]:
        """Case clocks by the nodes whose completion meets them."""
        stops: dict[str, list[CaseClock]] = {}
        for clock in self.definition.clocks:
            for node_id in clock.stop_on:
                stops.setdefault(node_id, []).append(clock)
        return stops

    @cached_property
    def priority_inputs(self) -> frozenset[str] | None:
        """The data fields `case_priority` reads (empty without one); None if it does not compile,
        so that every change re-derives it and the incident is reported."""
        text = self.definition.case_priority
        if not text:
            return frozenset()
        try:
            references = compile_expression(text).references
        except ExpressionError:
            return None
        return frozenset(path[1] for path in references if len(path) > 1 and path[0] == "data")

    @cached_property
    def clock_policy_inputs(self) -> frozenset[str] | None:
        """The data fields the case clocks' policies read; None if one does not compile (then every
        change re-chooses the targets and the incident is reported)."""
        fields: set[str] = set()
        for clock in self.definition.clocks:
            for policy in clock.policies:
                if policy.when:
                    try:
                        references = compile_expression(policy.when).references
                    except ExpressionError:
                        return None
                    fields.update(path[1] for path in references if len(path) > 1 and path[0] == "data")
        return frozenset(fields)

    @cached_property
    def sla_policies(self) -> dict[str, list[Policy]]:
        """Each SLA'd human step's policies (a fixed target as the one policy); every task opened reads them."""
        return {node_id: node.sla.effective_policies() for node_id, node in self.human_tasks.items()
                if node.sla is not None}

    @cached_property
    def _ladders(self) -> dict[str, tuple[list[EscalationLevel], tuple[int, ...]]]:
        ladders: dict[str, tuple[list[EscalationLevel], tuple[int, ...]]] = {}
        definition = self.definition
        for clock in definition.clocks:
            levels = sorted(definition.ladder(clock.escalation), key=lambda level: level.at)
            ladders[f"clock:{clock.id}"] = (levels, thresholds(levels))
        for node_id, node in self.human_tasks.items():
            if node.sla is not None:
                levels = sorted(definition.ladder(node.sla.escalation), key=lambda level: level.at)
                ladders[f"node:{node_id}"] = (levels, thresholds(levels))
        return ladders

    def ladder(self, key: str) -> list[EscalationLevel]:
        """The escalation levels of a clock's ladder (`clock:<id>` or `node:<id>`), lowest first."""
        entry = self._ladders.get(key)
        return entry[0] if entry is not None else []

    def thresholds(self, key: str) -> tuple[int, ...]:
        """The percentages at which that ladder acts, the breach at 100 % included."""
        entry = self._ladders.get(key)
        return entry[1] if entry is not None else (BREACH_PCT,)


def compile_graph(loaded: LoadedDefinition) -> ProcessGraph:
    """Index a loaded definition. Structural errors are the validator's job; this never raises on them."""
    definition = loaded.definition
    nodes: dict[str, Node] = {node.id: node for node in definition.nodes}
    outgoing: dict[str, list[Edge]] = {node_id: [] for node_id in nodes}
    incoming: dict[str, list[Edge]] = {node_id: [] for node_id in nodes}
    escalation_edges: dict[str, Edge] = {}
    digraph = nx.DiGraph()
    digraph.add_nodes_from(nodes)
    for edge in definition.edges:
        if edge.kind == "escalation":
            escalation_edges[edge.key] = edge
            if edge.source in nodes and edge.target in nodes:
                digraph.add_edge(edge.source, edge.target, escalation=True)
            continue
        outgoing.setdefault(edge.source, []).append(edge)
        incoming.setdefault(edge.target, []).append(edge)
        if edge.source in nodes and edge.target in nodes:
            digraph.add_edge(edge.source, edge.target, escalation=False)
    # default edges last, so "first match wins" reads in file order with the default as fallback
    for edges in outgoing.values():
        edges.sort(key=lambda e: e.default)
    starts = [node.id for node in definition.nodes if node.kind == "start"]
    return ProcessGraph(
        loaded=loaded,
        nodes=nodes,
        outgoing=outgoing,
        incoming=incoming,
        escalation_edges=escalation_edges,
        digraph=digraph,
        start_id=starts[0] if starts else None,
        calendar=BusinessCalendar(definition.calendar),
    )

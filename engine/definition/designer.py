"""Designer warnings: definitions that run, but probably not the way their designer meant.

None of these stops a case (they are `Problem`s of severity warning, never refused at load);
each is a pattern that made a real review go wrong:

* **overlapping_conditions** - two conditions of an exclusive gateway both hold for some
  value, so the file order silently decides (a VIP who asks in writing gets only the first
  branch). Proven only where it can be: tests of one field by value (`==`, `in`, `!`) or
  by range against a number or a parameter (`data.amount > 1000`), or the same text twice.
* **sla_exceeds_clock** - a step's SLA target is longer than the case clock running over it:
  the case clock is breached before the step's own target is even reached.
* **tier_order** - policies that give a higher customer tier a longer target than a lower
  tier. Tiers are the choices of the enum field `tier`, listed highest first.
* **escalates_to_own_lane** - an escalation level of a step that reassigns the task to the
  lane it is already in, or past the target only notifies that lane: nobody new is told.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import networkx as nx

from engine.definition.graph import ProcessGraph
from engine.definition.model import CaseClock, EscalationLevel, FieldSpec, HumanTask, Policy
from engine.definition.yaml_source import PathKey
from engine.expressions.cel import ExpressionError, compile_expression
from engine.expressions.static import Atom, Interval, Value, condition_atoms, condition_interval
from engine.time.durations import BusinessDuration, DurationError, parse_duration

__all__ = ["DESIGNER_CODES", "DesignNote", "designer_notes", "field_domain"]

DESIGNER_CODES: dict[str, str] = {
    "overlapping_conditions": "two conditions of an exclusive gateway hold together for some value: file order "
    "decides (warning)",
    "sla_exceeds_clock": "a step's SLA target is longer than the case clock running over the step (warning)",
    "tier_order": "SLA policies give a higher tier a longer target than a lower one (warning)",
    "escalates_to_own_lane": "an escalation level moves a task to, or only tells, the lane it is already in "
    "(warning)",
}
TIER_FIELD = "tier"


@dataclass(frozen=True)
class DesignNote:
    """One warning, located by its path in the definition; the validator adds file and line."""

    code: str
    message: str
    path: PathKey | None
    node: str | None
    hint: str


def designer_notes(graph: ProcessGraph, fields: dict[str, FieldSpec | None]) -> list[DesignNote]:
    """Every designer warning of one compiled definition, in definition order."""
    return [
        *_overlapping_conditions(graph, fields),
        *_sla_exceeds_clock(graph),
        *_tier_order(graph, fields),
        *_own_lane(graph),
    ]


# -- overlapping conditions -----------------------------------------------------------------------


def field_domain(spec: FieldSpec | None) -> frozenset[Value] | None:
    """Every value an enum or boolean field can hold; None for fields with open values."""
    if spec is not None and spec.type == "enum" and spec.choices:
        return frozenset(("str", choice) for choice in spec.choices)
    if spec is not None and spec.type == "boolean":
        return frozenset({("bool", True), ("bool", False)})
    return None


def _value_set(atoms: list[Atom], fields: dict[str, FieldSpec | None]) -> tuple[str, frozenset[Value]] | None:
    """The one field a condition tests and the values it holds for, when that can be known."""
    names = {atom.field for atom in atoms}
    if len(names) != 1:
        return None
    name = names.pop()
    domain = field_domain(fields.get(name))
    values: set[Value] = set()
    for atom in atoms:
        if atom.negated:
            if domain is None:
                return None
            values |= domain - atom.values
        else:
            values |= atom.values if domain is None else atom.values & domain
    return name, frozenset(values)


def _shown(value: Value) -> str:
    kind, raw = value
    if kind == "str":
        return f'"{raw}"'
    if kind == "bool":
        return str(raw).lower()
    return f"{raw:g}"


@dataclass(frozen=True)
class _Condition:
    text: str
    values: tuple[str, frozenset[Value]] | None
    interval: Interval | None


def _read_condition(text: str, graph: ProcessGraph, fields: dict[str, FieldSpec | None]) -> _Condition | None:
    try:
        expression = compile_expression(text)
    except ExpressionError:
        return None  # bad_expression reports it
    atoms = condition_atoms(expression)
    values = _value_set(atoms, fields) if atoms is not None else None
    return _Condition(" ".join(text.split()), values, condition_interval(expression, graph.definition.parameters))


def _overlap(first: _Condition, second: _Condition) -> str | None:
    """The case both conditions hold for, in words, or None when they provably (or maybe) do not."""
    if first.text == second.text:
        return "always (the conditions are the same)"
    if first.values is not None and second.values is not None and first.values[0] == second.values[0]:
        common = first.values[1] & second.values[1]
        if common:
            return f"data.{first.values[0]} is {_shown(min(common, key=repr))}"
    if first.interval is not None and second.interval is not None and first.interval.meets(second.interval):
        return f"data.{first.interval.field} is {first.interval.example(second.interval):g}"
    return None


def _overlapping_conditions(graph: ProcessGraph, fields: dict[str, FieldSpec | None]) -> Iterator[DesignNote]:
    edge_index = {id(edge): index for index, edge in enumerate(graph.definition.edges)}
    for node in graph.definition.nodes:
        if getattr(node, "kind", None) != "exclusive":
            continue
        branches = [(edge, _read_condition(edge.when, graph, fields)) for edge in graph.outgoing.get(node.id, [])
                    if edge.when is not None and not edge.default]
        for j, (later, later_condition) in enumerate(branches):
            for earlier, earlier_condition in branches[:j]:
                if earlier_condition is None or later_condition is None:
                    continue
                case = _overlap(earlier_condition, later_condition)
                if case is None:
                    continue
                yield DesignNote(
                    "overlapping_conditions",
                    f"when {case}, the conditions of {earlier.key} and {later.key} both hold: the gateway takes "
                    f"the first in file order ({earlier.key}), so {later.key} is never taken then",
                    ("edges", edge_index.get(id(later), -1), "when"), node.id,
                    "make the conditions exclude each other, or use an inclusive gateway if both branches "
                    "should run")
                break  # one warning per later edge


# -- SLA targets ----------------------------------------------------------------------------------


def _seconds(text: str, graph: ProcessGraph) -> int | None:
    try:
        duration: BusinessDuration = parse_duration(text)
    except (DurationError, ValueError):
        return None
    return duration.total_seconds(graph.calendar.day_seconds)


def _clock_span(graph: ProcessGraph, clock: CaseClock) -> set[str]:
    """The nodes that can be active while the clock runs: reachable from where it starts without
    passing a node whose completion stops it (a stopped clock stays stopped). One graph search per
    clock, so a definition with thousands of steps stays linear."""
    origin = clock.start_on or graph.start_id
    digraph = graph.digraph
    if origin is None or origin not in digraph:
        return set()
    stops = set(clock.stop_on)
    running = nx.DiGraph()
    running.add_nodes_from(digraph.nodes)
    running.add_edges_from((u, v) for u, v in digraph.edges if u not in stops)
    return nx.descendants(running, origin) | {origin}


def _sla_exceeds_clock(graph: ProcessGraph) -> Iterator[DesignNote]:
    definition = graph.definition
    spans = {clock.id: _clock_span(graph, clock) for clock in definition.clocks}
    for index, node in enumerate(definition.nodes):
        if not isinstance(node, HumanTask) or node.sla is None:
            continue
        step_policies = node.sla.effective_policies()
        for clock in definition.clocks:
            if node.id not in spans[clock.id]:
                continue
            for step_policy, clock_policy in _paired(step_policies, clock.policies, graph):
                step_seconds = _seconds(step_policy.target, graph)
                clock_seconds = _seconds(clock_policy.target, graph)
                if step_seconds is None or clock_seconds is None or step_seconds <= clock_seconds:
                    continue
                when = f" when {step_policy.when}" if step_policy.when else ""
                path: PathKey = (("nodes", index, "sla", "target") if node.sla.target is not None
                                 else ("nodes", index, "sla", "policies", step_policies.index(step_policy), "target"))
                yield DesignNote(
                    "sla_exceeds_clock",
                    f"the SLA of '{node.id}' ({step_policy.target}{when}) is longer than the case clock "
                    f"'{clock.id}' ({clock_policy.target}) that runs over it: the case clock is breached first",
                    path, node.id,
                    f"shorten the step's target to at most {clock_policy.target}, or stop '{clock.id}' before "
                    f"'{node.id}'")
                break


def _paired(step: list[Policy], clock: list[Policy], graph: ProcessGraph) -> list[tuple[Policy, Policy]]:
    """Policies with the same condition (both unconditional included); without any, the
    step's shortest target against the clock's longest, which holds whatever the case."""
    by_when = {policy.when: policy for policy in clock}
    pairs = [(policy, by_when[policy.when]) for policy in step if policy.when in by_when]
    if pairs or not step or not clock:
        return pairs

    def length(policy: Policy) -> int:
        return _seconds(policy.target, graph) or 0

    return [(min(step, key=length), max(clock, key=length))]


# -- tiers ----------------------------------------------------------------------------------------


def _policy_lists(graph: ProcessGraph) -> Iterator[tuple[list[Policy], PathKey, str | None, str]]:
    for index, node in enumerate(graph.definition.nodes):
        if isinstance(node, HumanTask) and node.sla is not None and node.sla.policies:
            yield node.sla.policies, ("nodes", index, "sla", "policies"), node.id, f"the SLA of '{node.id}'"
    for index, clock in enumerate(graph.definition.clocks):
        yield clock.policies, ("clocks", index, "policies"), None, f"the case clock '{clock.id}'"


def _targets_by_tier(policies: list[Policy], tiers: list[str]) -> dict[str, tuple[int, Policy]] | None:
    """The policy each tier gets (first match wins), when every condition is a test of the tier."""
    chosen: dict[str, tuple[int, Policy]] = {}
    for p, policy in enumerate(policies):
        if policy.when is None:
            matched = set(tiers)
        else:
            try:
                atoms = condition_atoms(compile_expression(policy.when))
            except ExpressionError:
                return None
            if atoms is None or any(atom.field != TIER_FIELD for atom in atoms):
                return None
            matched = set()
            for atom in atoms:
                named = {value[1] for value in atom.values if value[0] == "str"}
                matched |= (set(tiers) - named) if atom.negated else named
        for tier in tiers:
            if tier in matched and tier not in chosen:
                chosen[tier] = (p, policy)
    return chosen


def _tier_order(graph: ProcessGraph, fields: dict[str, FieldSpec | None]) -> Iterator[DesignNote]:
    spec = fields.get(TIER_FIELD)
    if spec is None or spec.type != "enum" or not spec.choices:
        return
    tiers = list(spec.choices)
    for policies, path, node_id, label in _policy_lists(graph):
        chosen = _targets_by_tier(policies, tiers)
        if not chosen:
            continue
        found = _inversion(chosen, tiers, graph)
        if found is None:
            continue
        higher, lower = found
        (p, policy), (_, other) = chosen[higher], chosen[lower]
        yield DesignNote(
            "tier_order",
            f"{label} gives {higher} {policy.target} but the lower tier {lower} {other.target}: a higher tier "
            "waits longer", (*path, p, "target"), node_id,
            f"tiers are the choices of data.{TIER_FIELD}, highest first: give {higher} a target of at most "
            f"{other.target}, or reorder the choices")


def _inversion(chosen: dict[str, tuple[int, Policy]], tiers: list[str],
               graph: ProcessGraph) -> tuple[str, str] | None:
    ranked = [tier for tier in tiers if tier in chosen]
    for i, higher in enumerate(ranked):
        for lower in ranked[i + 1:]:
            high_seconds = _seconds(chosen[higher][1].target, graph)
            low_seconds = _seconds(chosen[lower][1].target, graph)
            if high_seconds is not None and low_seconds is not None and high_seconds > low_seconds:
                return higher, lower
    return None


# -- escalation to the own lane -------------------------------------------------------------------


def _levels(graph: ProcessGraph, node: HumanTask, index: int) -> Iterator[tuple[int, EscalationLevel, PathKey]]:
    assert node.sla is not None
    escalation = node.sla.escalation
    if isinstance(escalation, str):
        for j, level in enumerate(graph.definition.ladders.get(escalation, [])):
            yield j, level, ("ladders", escalation, j)
    else:
        for j, level in enumerate(escalation):
            yield j, level, ("nodes", index, "sla", "escalation", j)


def _own_lane(graph: ProcessGraph) -> Iterator[DesignNote]:
    for index, node in enumerate(graph.definition.nodes):
        if not isinstance(node, HumanTask) or node.sla is None:
            continue
        for _, level, path in _levels(graph, node, index):
            if level.reassign == node.lane:
                yield DesignNote(
                    "escalates_to_own_lane",
                    f"the escalation at {level.at}% reassigns '{node.id}' to '{node.lane}', the lane it is "
                    "already in", (*path, "reassign"), node.id,
                    "reassign to the lane that should take over (e.g. a supervisor), or remove `reassign`")
            elif (level.at >= 100 and level.notify and set(level.notify) == {node.lane}
                  and level.reassign is None and level.route is None):
                yield DesignNote(
                    "escalates_to_own_lane",
                    f"past the target ({level.at}%) the escalation only tells '{node.lane}', the lane that "
                    f"holds '{node.id}' and missed it", (*path, "notify"), node.id,
                    "notify the lane that should act on a breach (e.g. a supervisor) as well")

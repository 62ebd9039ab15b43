"""Static checks of process definitions, run before anything is allowed to execute.

The schema (pydantic) only knows the shape of one file; a definition can be well-formed and
still unable to run: an edge pointing at a node that does not exist, a gateway whose
conditions can all be false, a sub-process that calls its caller, a condition naming a field
nobody writes. Those mistakes would otherwise surface weeks later in a running case, so the
validator finds them up front and reports *all* of them at once, each with the file, the
line, the node and a hint, so a designer can fix a definition in one pass.

Every problem carries a stable ``code`` (see :data:`CODES`); tests, the CLI and editors key
on it, never on the wording of the message.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import networkx as nx

from engine.time import durations
from engine.definition.model import (
    AutoTask,
    Edge,
    EscalationLevel,
    FieldSpec,
    HumanTask,
    MessageWait,
    PRIORITIES,
    NodeBase,
    Policy,
    ProcessDefinition,
    SubProcess,
    TimerWait,
)
from engine.errors import Problem
from engine.expressions.cel import ExpressionError, compile_expression
from engine.expressions.static import (
    DYN,
    Atom,
    Finding,
    StaticType,
    Value,
    check_types,
    condition_atoms,
    field_type,
    params_resolver,
)
from engine.definition.cron import cron_problem
from engine.definition.designer import DESIGNER_CODES, designer_notes, field_domain
from engine.definition.graph import ProcessGraph
from engine.run.forms import coerce
from engine.run.limits import Limits
from engine.run.handlers import HandlerRegistry
from engine.definition.library import DEFAULT_DIR, ProcessLibrary, definition_files
from engine.definition.loader import LoadedDefinition
from engine.definition.yaml_source import PathKey

__all__ = ["CASE_FIELDS", "CODES", "fields_of", "validate_graph", "validate_library", "validate_paths"]

CODES: Final[dict[str, str]] = {
    "duplicate_id": "two nodes, edges, lanes, clocks, schedules or form fields share an id",
    "unknown_node": "an edge or a case clock names a node that does not exist",
    "start_count": "the process does not have exactly one start node",
    "end_count": "the process has no end node",
    "start_incoming": "an edge leads into the start node",
    "end_outgoing": "a normal edge leaves an end node",
    "outgoing_count": "a task, timer, message, sub-process or start node without exactly one outgoing edge",
    "unreachable": "a node the start cannot reach",
    "dead_end": "a node (or loop) from which no end can be reached",
    "gateway_degree": "a gateway with the wrong number of incoming/outgoing edges (or a pointless one)",
    "missing_condition": "an edge out of a branching exclusive/inclusive gateway without `when` or `default`",
    "multiple_defaults": "more than one default edge out of a gateway",
    "no_default": "a branching gateway whose conditions may all be false and which has no default edge",
    "misplaced_condition": "`when` on an edge where it is never evaluated",
    "misplaced_default": "`default` on an edge where it means nothing",
    "unknown_choice": "an expression compares an enum/boolean field with a value it can never have (or writes "
    "such a value into it)",
    "type_mismatch": "an expression whose operand types can never fit: a number compared with a string, a "
    "non-boolean where true/false is needed, a value of the wrong type written into a declared field",
    "split_join_mismatch": "a parallel/inclusive split without its matching join, or a join without a split",
    "unknown_role": "a lane, notify or reassign role that is not a lane of the definition",
    "unknown_handler": "an automatic step names a handler that is not registered",
    "unknown_process": "a sub-process names a process that is not in the library",
    "call_cycle": "processes that call each other as sub-processes in a cycle",
    "bad_expression": "a CEL expression that does not parse",
    "unknown_field": "an expression (or input, or schedule data) names a field, step, parameter or case "
    "property that does not exist",
    "missing_input": "a sub-process call or schedule that does not give a field the started case requires",
    "bad_field": "a typed field whose default does not fit its type, bounds on a non-number, min above max, "
    "or repeated choices",
    "bad_cron": "a schedule's cron text that is not a five-field cron expression",
    "undeliverable_message": "a message wait whose name senders are refused for (longer than SVCFLOW_MAX_ID_CHARS)",
    "message_conflict": "two waits for the same message name that expect different payload fields",
    "unknown_edge": "an escalation route that is not an escalation edge leaving the SLA's node",
    "unknown_ladder": "an SLA names an escalation ladder that is not under `ladders`",
    "bad_ladder": "escalation levels whose `at` percentages do not strictly increase",
    "edge_needs_id": "an escalation edge without an id (routes name edges by id)",
    "unused_escalation_edge": "an escalation edge that no escalation level routes along",
    "bad_duration": "a duration that does not parse, or a zero SLA target / schedule interval",
    "bad_calendar": "the calendar settings cannot be compiled",
    "bad_policy": "SLA policies that can never apply (an unconditional policy before others, or none)",
    "id_mismatch": "the definition id differs from the file name",
    "internal_error": "a check crashed; reported instead of a traceback (a bug in svcflow)",
}

CODES.update(DESIGNER_CODES)

# Problems that do not stop a case from running correctly: reported, never refused at load.
WARNING_CODES: Final[frozenset[str]] = frozenset({"id_mismatch", "unused_escalation_edge", *DESIGNER_CODES})

CASE_FIELDS: Final[frozenset[str]] = frozenset({"id", "process_id", "priority", "tier", "started_at", "status"})
GATEWAY_KINDS: Final[frozenset[str]] = frozenset({"exclusive", "parallel", "inclusive"})
CONDITIONAL_GATEWAYS: Final[frozenset[str]] = frozenset({"exclusive", "inclusive"})
SPLIT_JOIN_KINDS: Final[frozenset[str]] = frozenset({"parallel", "inclusive"})
_ROOTS: Final[tuple[str, ...]] = ("data", "steps", "params", "case")
_YAML_SUFFIXES: Final[frozenset[str]] = frozenset({".yaml", ".yml"})


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def validate_graph(
    graph: ProcessGraph, library: ProcessLibrary | None, handlers: HandlerRegistry | None
) -> list[Problem]:
    """Every problem of one definition; sub-process checks need `library`, handler checks `handlers`.

    Without a library (or handlers) those checks are skipped rather than failed, so a single
    definition can be checked in isolation, e.g. in an editor.
    """
    return _sorted(_Checker(graph, library, handlers).run())


def validate_library(library: ProcessLibrary, handlers: HandlerRegistry | None) -> list[Problem]:
    """Every definition of the library, plus what only the whole library shows: call cycles."""
    return _validate(list(library.latest.values()), library, handlers)


def validate_paths(paths: Sequence[Path], handlers: HandlerRegistry | None) -> list[Problem]:
    """What `svcflow validate PATH...` reports: load problems and validation problems together.

    A designer validating one file of a library expects its sub-process references to
    resolve, so for paths that name files, references are also looked up next to those files
    and in the default library (process_defs/) — only to resolve them; the problems of the
    definitions found there are not reported.
    """
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        key = Path(path).resolve()
        if key not in seen:
            seen.add(key)
            unique.append(Path(path))
    library, problems = ProcessLibrary.load(unique)
    targets = list(library.latest.values())
    files = [path for path in unique if not path.is_dir()]
    resolver = library
    if files:
        directories: list[Path] = []
        for directory in [*(path.parent for path in files), DEFAULT_DIR]:
            if directory.is_dir() and directory.resolve() not in {d.resolve() for d in directories}:
                directories.append(directory)
        resolver = _resolve_references(targets, directories)
    return _sorted([*problems, *_validate(targets, resolver, handlers)])


def _unresolved(library: ProcessLibrary, loaded: LoadedDefinition) -> set[str]:
    return {node.process for node in loaded.definition.nodes
            if isinstance(node, SubProcess) and node.process not in library.latest}


_NEIGHBOURS: dict[tuple[Path, int, int], LoadedDefinition | None] = {}
_NEIGHBOURS_KEPT: Final = 64


def _load_quietly(path: Path) -> LoadedDefinition | None:
    """A neighbour that does not load only fails to resolve; its own problems are not ours to report.

    Neighbours are kept by path, size and modification time: an editor validating one draft on
    every save (or the fuzz test, thousands of times) should not re-read the library each time.
    """
    try:
        status = path.stat()
        key = (path.resolve(), status.st_size, status.st_mtime_ns)
    except OSError:
        return None
    if key in _NEIGHBOURS:
        return _NEIGHBOURS[key]
    try:
        found, _problems = ProcessLibrary.load([path])
        loaded = next(iter(found.latest.values()), None)
    except Exception:
        loaded = None
    if len(_NEIGHBOURS) >= _NEIGHBOURS_KEPT:
        _NEIGHBOURS.pop(next(iter(_NEIGHBOURS)))
    _NEIGHBOURS[key] = loaded
    return loaded


def _resolve_references(targets: list[LoadedDefinition], directories: list[Path]) -> ProcessLibrary:
    """The targets plus every process they (transitively) call that `directories` can supply.

    Files are named after their process id, so a reference is first looked up as
    `<dir>/<id>.yaml`; only when that fails are whole directories read (earlier ones win).
    Loading just what is referenced keeps validating one file as fast as the file is small.
    """
    resolver = ProcessLibrary()
    for loaded in targets:
        resolver.add(loaded)
    pending: set[str] = set()
    for loaded in targets:
        pending |= _unresolved(resolver, loaded)
    tried: set[str] = set()
    scanned = False
    while pending:
        process_id = pending.pop()
        if process_id in tried or process_id in resolver.latest:
            continue
        tried.add(process_id)
        found: LoadedDefinition | None = None
        for directory in directories:
            for suffix in (".yaml", ".yml"):
                candidate = directory / f"{process_id}{suffix}"
                named = _load_quietly(candidate) if candidate.is_file() else None
                if named is not None and named.definition.id == process_id:
                    found = named
                    break
            if found is not None:
                break
        if found is None and not scanned:
            scanned = True
            for directory in directories:
                for path in definition_files([directory]):
                    neighbour = _load_quietly(path)
                    if neighbour is not None and neighbour.definition.id not in resolver.latest:
                        resolver.add(neighbour)
                        pending |= _unresolved(resolver, neighbour)
            continue
        if found is not None:
            resolver.add(found)
            pending |= _unresolved(resolver, found)
    return resolver


# ----------------------------------------------------------------------------------------------
# Library level
# ----------------------------------------------------------------------------------------------


def _validate(
    targets: list[LoadedDefinition], library: ProcessLibrary, handlers: HandlerRegistry | None
) -> list[Problem]:
    problems: list[Problem] = []
    for loaded in targets:
        try:
            graph = library.graph_of(loaded)
        except Exception as exc:
            problems.append(Problem(
                f"the definition cannot be compiled: {exc}", file=loaded.source.file,
                line=loaded.source.line_of(("calendar",)), hint="check the calendar settings", code="bad_calendar",
            ))
            continue
        problems.extend(_Checker(graph, library, handlers).run())
    problems.extend(_call_cycles(targets, library))
    return _sorted(problems)


def _call_cycles(targets: list[LoadedDefinition], library: ProcessLibrary) -> list[Problem]:
    """Processes calling each other would start child cases forever; report each cycle once."""
    calls = nx.DiGraph()
    sites: dict[tuple[str, str], tuple[LoadedDefinition, int, str]] = {}
    for process_id, loaded in library.latest.items():
        calls.add_node(process_id)
        for index, node in enumerate(loaded.definition.nodes):
            if isinstance(node, SubProcess) and node.process in library.latest:
                calls.add_edge(process_id, node.process)
                sites.setdefault((process_id, node.process), (loaded, index, node.id))
    target_ids = {loaded.definition.id for loaded in targets}
    problems: list[Problem] = []
    for cycle in nx.simple_cycles(calls):
        if not target_ids.intersection(cycle):
            continue
        # start at the smallest validated id, so the report is stable and lands in a validated file
        first = cycle.index(min(pid for pid in cycle if pid in target_ids))
        ordered = cycle[first:] + cycle[:first]
        caller, callee = ordered[0], ordered[1 % len(ordered)]
        loaded, index, node_id = sites[(caller, callee)]
        chain = " → ".join([*ordered, ordered[0]])
        problems.append(Problem(
            f"sub-process call cycle: {chain}; a case would start child cases without end",
            file=loaded.source.file,
            line=loaded.source.line_of(("nodes", index, "process")),
            node=node_id,
            hint=("a process cannot run itself as a sub-process: loop back with an edge instead"
                  if len(ordered) == 1 else
                  f"break the cycle: one of {', '.join(sorted(ordered))} must not call the next"),
            code="call_cycle",
        ))
    return problems


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file or "", p.line or 0))


# ----------------------------------------------------------------------------------------------
# Conditions that can be proven to cover every case
# ----------------------------------------------------------------------------------------------


def _atoms(condition: str) -> list[Atom] | None:
    """The disjuncts of a condition if each is a simple test of one data field, else None.

    Read from the expression's one parsed tree (engine.expressions.static), never from its text.
    """
    try:
        return condition_atoms(compile_expression(condition))
    except ExpressionError:
        return None


def _conditions_complete(conditions: list[str], fields: Mapping[str, FieldSpec | None]) -> bool:
    """True when the conditions test one enum/boolean field and together cover all its values.

    Deliberately narrow: anything beyond `==`, `!=`, `in` and `||` over one field is not
    proven, and the designer is asked for a default edge instead.
    """
    field_name: str | None = None
    covered: set[Value] = set()
    atoms: list[Atom] = []
    for condition in conditions:
        parsed = _atoms(condition)
        if parsed is None:
            return False
        atoms.extend(parsed)
    for atom in atoms:
        if field_name is None:
            field_name = atom.field
        elif atom.field != field_name:
            return False
    if field_name is None:
        return False
    domain = field_domain(fields.get(field_name))
    if domain is None:
        return False
    for atom in atoms:
        covered |= (domain - atom.values) if atom.negated else (atom.values & domain)
    return covered >= domain


_DIFFLIB_CANDIDATES: Final = 300  # beyond this, difflib's pairwise ratio would take minutes
_LISTED: Final = 10  # a hint names at most this many ids
_PER_CODE: Final = 50  # problems of one kind reported per definition


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    """The most similar candidate, in time bounded by the candidates' count, not its square."""
    ordered = _unique(tuple(candidates))
    if len(ordered) <= _DIFFLIB_CANDIDATES:
        matches = difflib.get_close_matches(name, ordered, n=1, cutoff=0.6)
        return matches[0] if matches else None
    index = _deletion_index(ordered)
    for variant in (name, *_deletions(name)):
        found = index.get(variant)
        if found is not None and found != name:
            return found
    return None


@functools.lru_cache(maxsize=32)
def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    """Sorted distinct names; cached, as every problem of one kind offers the same candidates."""
    return tuple(sorted(set(names)))


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


@functools.lru_cache(maxsize=8)
def _deletion_index(candidates: tuple[str, ...]) -> dict[str, str]:
    """Each candidate and its one-character deletions -> the candidate: two names one typo apart
    (substitution, insertion, deletion, swapped neighbours) share an entry (symmetric deletion)."""
    index: dict[str, str] = {}
    for candidate in candidates:
        index.setdefault(candidate, candidate)
        for variant in _deletions(candidate):
            index.setdefault(variant, candidate)
    return index


def _did_you_mean(name: str, candidates: Iterable[str], otherwise: str) -> str:
    closest = _closest(name, candidates)
    return f"did you mean '{closest}'?" if closest else otherwise


def _listing(names: Iterable[str]) -> str:
    """Names for a hint, at most a handful: a hint listing 14,000 node ids helps nobody."""
    ordered = _unique(tuple(names))
    if not ordered:
        return "none"
    if len(ordered) > _LISTED:
        return ", ".join(ordered[:_LISTED]) + f", ... ({len(ordered) - _LISTED} more)"
    return ", ".join(ordered)


# ----------------------------------------------------------------------------------------------
# One definition
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """What an expression may name where it is evaluated; None = not known, so not checked.

    Most expressions see their own case (`case_scope` in the interpreter). Sub-process
    outputs are the exception: they see the finished child's data and `case.outcome` only.
    """

    where: str
    data: Mapping[str, FieldSpec | None] | None
    steps: frozenset[str]
    params: frozenset[str]
    case: frozenset[str] = CASE_FIELDS
    note: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


def fields_of(definition: ProcessDefinition) -> dict[str, FieldSpec | None]:
    """Every case-data field a definition declares or writes, with its spec when it has one.

    Declared case data wins over form fields and outputs of the same name, because the
    declaration is what the designer states the field to be.
    """
    fields: dict[str, FieldSpec | None] = dict(definition.data)
    for node in definition.nodes:
        if isinstance(node, HumanTask):
            for form_field in node.form:
                fields.setdefault(form_field.id, form_field)
        elif isinstance(node, AutoTask):
            for name, spec in node.outputs.items():
                fields.setdefault(name, spec)
        elif isinstance(node, MessageWait):
            for name, spec in node.fields.items():
                fields.setdefault(name, spec)
        elif isinstance(node, SubProcess):
            for name in node.outputs:
                fields.setdefault(name, None)
        for name in node.compute:
            fields.setdefault(name, None)
    return fields


def _id_chars() -> int | None:
    """The id limit the CLI and HTTP API enforce on message names; None when the settings are
    unreadable (the settings' own check reports that, not the definition's)."""
    try:
        return Limits.from_settings().id_chars
    except Exception:
        return None


def _required_without_default(fields: Mapping[str, FieldSpec]) -> list[str]:
    """Fields a case cannot start without: required, with no default to fill them."""
    return [name for name, spec in fields.items() if spec.required and spec.default is None]


def _value_problem(spec: FieldSpec, value: Any) -> str | None:
    """Why `value` does not fit `spec` (as every entry point would refuse it), or None."""
    try:
        coerce("value", spec, value)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _scope_of(definition: ProcessDefinition) -> _Scope:
    return _Scope(
        where=f"'{definition.id}'",
        data=fields_of(definition),
        steps=frozenset(node.id for node in definition.nodes),
        params=frozenset(definition.parameters),
        parameters=definition.parameters,
    )


def _resolver(scope: _Scope) -> Callable[[tuple[str, ...]], StaticType]:
    """The static type of each field path an expression in `scope` may read."""
    params = params_resolver(scope.parameters)

    def resolve(path: tuple[str, ...]) -> StaticType:
        if path[0] == "data" and len(path) == 2 and scope.data is not None:
            spec = scope.data.get(path[1])
            if spec is not None:
                return field_type(spec.type, spec.choices, shown=f"data.{path[1]}")
        if path[0] == "params" and len(path) >= 2:
            return params(path)
        return DYN

    return resolve


def _child_output_scope(process_id: str, child: ProcessDefinition | None) -> _Scope:
    """Mirrors the interpreter's child scope: the child's data, no steps, no params, case.outcome."""
    return _Scope(
        where=f"the sub-process '{process_id}'",
        data=fields_of(child) if child is not None else None,
        steps=frozenset(),
        params=frozenset(),
        case=frozenset({"outcome"}),
        note="sub-process outputs are read from the finished child: its data and case.outcome only",
    )


def _kind(node: NodeBase) -> str:
    """Every concrete node model has a `kind` literal; NodeBase itself does not declare it."""
    return str(getattr(node, "kind", ""))


@dataclass(frozen=True)
class _LadderUse:
    """An escalation spec attached to a human task's SLA (owner = node) or a case clock."""

    escalation: str | list[EscalationLevel]
    path: PathKey
    owner: str | None
    node: str | None
    label: str


class _Checker:
    """All checks of one compiled definition; each appends to `problems` and never raises."""

    def __init__(
        self, graph: ProcessGraph, library: ProcessLibrary | None, handlers: HandlerRegistry | None
    ) -> None:
        self.graph = graph
        self.library = library
        self.handlers = handlers
        self.loaded = graph.loaded
        self.definition = graph.definition
        self.file = self.loaded.source.file
        self.problems: list[Problem] = []
        self.node_index = {id(node): index for index, node in enumerate(self.definition.nodes)}
        self.edge_index = {id(edge): index for index, edge in enumerate(self.definition.edges)}
        self.fields = fields_of(self.definition)
        self.scope = _scope_of(self.definition)
        self.bad_degree: set[str] = set()
        self.reached: set[str] | None = None
        self.stuck: set[str] = set()

    # -- plumbing -------------------------------------------------------------------------------

    def run(self) -> list[Problem]:
        checks = [
            self.check_file_name, self.check_duplicate_ids, self.check_edge_endpoints, self.check_start_end,
            self.check_outgoing, self.check_gateways, self.check_edge_flags, self.check_reachability,
            self.check_split_joins, self.check_roles, self.check_handlers, self.check_subprocesses,
            self.check_escalations, self.check_policies_and_durations, self.check_clocks,
            self.check_expressions, self.check_schedules, self.check_separation_of_duties,
            self.check_declarations, self.check_messages, self.check_design,
        ]
        for check in checks:
            try:
                check()
            except Exception as exc:
                self.add("internal_error", f"the check {check.__name__} failed: {exc!r}", None,
                         hint="this is a bug in svcflow; please report it with the definition")
        return self._capped()

    def _capped(self) -> list[Problem]:
        """At most _PER_CODE problems of one kind, then one line counting the rest: a designer
        fixes the first ones and re-runs; ten thousand lines would bury everything else."""
        kept: list[Problem] = []
        dropped: dict[str, int] = {}
        seen: dict[str, int] = {}
        for problem in self.problems:
            seen[problem.code] = seen.get(problem.code, 0) + 1
            if seen[problem.code] <= _PER_CODE:
                kept.append(problem)
            else:
                dropped[problem.code] = dropped.get(problem.code, 0) + 1
        for code, count in dropped.items():
            kept.append(Problem(f"... and {count} more problem(s) like the above ({CODES.get(code, code)})",
                                file=self.file, hint="fix those first, then validate again", code=code,
                                severity="warning" if code in WARNING_CODES else "error"))
        return kept

    def add(self, code: str, message: str, path: PathKey | None, *, node: str | None = None,
            hint: str | None = None) -> None:
        line = self.loaded.source.line_of(path) if path is not None else None
        self.problems.append(Problem(message, file=self.file, line=line, node=node, hint=hint, code=code,
                                     severity="warning" if code in WARNING_CODES else "error"))

    def node_path(self, node_id: str, *rest: str | int) -> PathKey | None:
        node = self.graph.nodes.get(node_id)
        if node is None or id(node) not in self.node_index:
            return None
        return ("nodes", self.node_index[id(node)], *rest)

    def edge_path(self, edge: Edge, *rest: str | int) -> PathKey:
        return ("edges", self.edge_index.get(id(edge), -1), *rest)

    def kind(self, node_id: str) -> str | None:
        node = self.graph.nodes.get(node_id)
        return None if node is None else _kind(node)

    def ordered_ids(self) -> list[str]:
        """Node ids in file order (first occurrence), so reports read top to bottom."""
        return list(dict.fromkeys(node.id for node in self.definition.nodes))

    # -- identity ---------------------------------------------------------------------------

    def check_file_name(self) -> None:
        path = Path(self.file)
        if path.suffix not in _YAML_SUFFIXES or path.stem == self.definition.id:
            return
        if re.fullmatch(r"[a-z][a-z0-9_]*", path.stem):
            hint = f"rename the file to {self.definition.id}{path.suffix} or change the id to '{path.stem}'"
        else:
            hint = f"rename the file to {self.definition.id}{path.suffix}"
        self.add("id_mismatch", f"the id '{self.definition.id}' does not match the file name '{path.name}'",
                 ("id",), hint=hint)

    def check_duplicate_ids(self) -> None:
        self._duplicates("node", [(node.id, ("nodes", i)) for i, node in enumerate(self.definition.nodes)],
                         node_of_item=True)
        self._duplicates("edge", [(edge.id, ("edges", i)) for i, edge in enumerate(self.definition.edges)
                                  if edge.id is not None])
        self._duplicates("lane", [(lane.id, ("lanes", i)) for i, lane in enumerate(self.definition.lanes)])
        self._duplicates("clock", [(clock.id, ("clocks", i)) for i, clock in enumerate(self.definition.clocks)])
        self._duplicates("schedule", [(s.id, ("schedules", i)) for i, s in enumerate(self.definition.schedules)])
        for index, node in enumerate(self.definition.nodes):
            if isinstance(node, HumanTask):
                self._duplicates("form field", [(f.id, ("nodes", index, "form", j)) for j, f in enumerate(node.form)],
                                 owner=node.id)

    def _duplicates(self, what: str, items: list[tuple[str, PathKey]], *, node_of_item: bool = False,
                    owner: str | None = None) -> None:
        first: dict[str, PathKey] = {}
        for item_id, path in items:
            if item_id not in first:
                first[item_id] = path
                continue
            earlier = self.loaded.source.line_of(first[item_id])
            self.add("duplicate_id", f"duplicate {what} id '{item_id}' (first defined at line {earlier})", path,
                     node=item_id if node_of_item else owner,
                     hint=f"give each {what} its own id, e.g. '{item_id}_2'")

    # -- structure --------------------------------------------------------------------------

    def check_edge_endpoints(self) -> None:
        node_ids = list(self.graph.nodes)
        for index, edge in enumerate(self.definition.edges):
            for attribute, key, role in (("source", "from", "comes from"), ("target", "to", "leads to")):
                ref = getattr(edge, attribute)
                if ref in self.graph.nodes:
                    continue
                self.add("unknown_node", f"edge {edge.key} {role} unknown node '{ref}'", ("edges", index, key),
                         node=edge.source,
                         hint=_did_you_mean(ref, node_ids, f"known nodes: {_listing(node_ids)}"))

    def check_start_end(self) -> None:
        starts = [(i, n) for i, n in enumerate(self.definition.nodes) if _kind(n) == "start"]
        if not starts:
            self.add("start_count", "the process has no start node", ("nodes",),
                     hint="add a node with kind: start and an edge from it to the first step")
        for index, node in starts[1:]:
            self.add("start_count",
                     f"the process has {len(starts)} start nodes (first: '{starts[0][1].id}'); exactly one is allowed",
                     ("nodes", index), node=node.id,
                     hint="keep one start; lead the others' steps from it through a gateway")
        if not any(_kind(n) == "end" for n in self.definition.nodes):
            self.add("end_count", "the process has no end node", ("nodes",),
                     hint="add a node with kind: end and lead the last step to it")
        for node_id in self.ordered_ids():
            kind = self.kind(node_id)
            if kind == "start":
                for edge in self.graph.incoming.get(node_id, []):
                    self.add("start_incoming", f"edge {edge.key} leads into the start node '{node_id}'",
                             self.edge_path(edge, "to"), node=node_id,
                             hint="a case starts only once: point the edge at the first step after the start")
            elif kind == "end":
                for edge in self.graph.outgoing.get(node_id, []):
                    self.add("end_outgoing", f"edge {edge.key} leaves the end node '{node_id}'",
                             self.edge_path(edge, "from"), node=node_id,
                             hint="an end finishes the case: remove the edge or make the node a task")

    def check_outgoing(self) -> None:
        for node_id in self.ordered_ids():
            kind = self.kind(node_id)
            if kind in GATEWAY_KINDS or kind == "end":
                continue
            outgoing = self.graph.outgoing.get(node_id, [])
            if len(outgoing) == 1:
                continue
            if not outgoing:
                message = f"this {kind} node has no outgoing edge"
                hint = f"add an edge from {node_id} to the next step (or to an end)"
            else:
                targets = ", ".join(edge.target for edge in outgoing)
                message = f"this {kind} node has {len(outgoing)} outgoing edges ({targets}); only gateways branch"
                hint = (f"lead {node_id} to one exclusive gateway (conditions) or parallel gateway (all branches) "
                        "and branch there")
            self.bad_degree.add(node_id)
            self.add("outgoing_count", message, self.node_path(node_id), node=node_id, hint=hint)

    def check_gateways(self) -> None:
        for node_id in self.ordered_ids():
            kind = self.kind(node_id)
            if kind not in GATEWAY_KINDS:
                continue
            n_in = len(self.graph.incoming.get(node_id, []))
            n_out = len(self.graph.outgoing.get(node_id, []))
            message: str | None = None
            hint: str | None = None
            if n_out == 0:
                message = f"this {kind} gateway has no outgoing edge"
                hint = "add the edges it branches into, or remove the gateway"
            elif n_in == 1 and n_out == 1:
                source = self.graph.incoming[node_id][0].source
                target = self.graph.outgoing[node_id][0].target
                message = f"this {kind} gateway has one incoming and one outgoing edge: it does nothing"
                hint = f"remove it and connect {source} to {target} directly"
            elif kind in SPLIT_JOIN_KINDS and n_in > 0 and not (
                (n_in == 1 and n_out >= 2) or (n_in >= 2 and n_out == 1)
            ):
                message = (f"this {kind} gateway has {n_in} incoming and {n_out} outgoing edges; it must be "
                           "a split (one in, several out) or a join (several in, one out)")
                hint = "use two gateways: a join followed by a split"
            if message is not None:
                self.bad_degree.add(node_id)
                self.add("gateway_degree", message, self.node_path(node_id), node=node_id, hint=hint)

    def check_edge_flags(self) -> None:
        """`when` and `default` mean something only on edges out of a branching exclusive/inclusive gateway."""
        branching: set[str] = set()
        for node_id in self.ordered_ids():
            if self.kind(node_id) in CONDITIONAL_GATEWAYS and len(self.graph.outgoing.get(node_id, [])) >= 2:
                branching.add(node_id)
                self._check_branches(node_id)
        for index, edge in enumerate(self.definition.edges):
            if edge.kind == "normal" and edge.source in branching:
                continue
            kind = self.kind(edge.source)
            if kind is None:
                continue  # unknown_node already reports the edge
            if edge.kind == "escalation":
                where = "an escalation edge (it is taken only by an escalation level's route)"
            elif kind in CONDITIONAL_GATEWAYS:
                where = f"the only edge out of gateway '{edge.source}' (a false condition would stall the case)"
            elif kind == "parallel":
                where = f"an edge out of the parallel gateway '{edge.source}' (every branch is taken)"
            else:
                where = f"an edge out of the {kind} node '{edge.source}' (only gateways branch)"
            if edge.when is not None:
                self.add("misplaced_condition", f"edge {edge.key} has a condition but is {where}",
                         ("edges", index, "when"), node=edge.source,
                         hint="remove `when`, or branch through an exclusive gateway")
            if edge.default:
                self.add("misplaced_default", f"edge {edge.key} is marked default but is {where}",
                         ("edges", index, "default"), node=edge.source,
                         hint="remove `default: true`")

    def _check_branches(self, node_id: str) -> None:
        edges = self.graph.outgoing[node_id]
        defaults = [edge for edge in edges if edge.default]
        for extra in defaults[1:]:
            self.add("multiple_defaults",
                     f"gateway '{node_id}' has {len(defaults)} default edges ({', '.join(e.key for e in defaults)})",
                     self.edge_path(extra, "default"), node=node_id, hint="keep `default: true` on one edge only")
        missing = False
        for edge in edges:
            if edge.default and edge.when is not None:
                self.add("misplaced_condition",
                         f"the default edge {edge.key} of gateway '{node_id}' also has a condition",
                         self.edge_path(edge, "when"), node=node_id,
                         hint="the default is taken when no other condition holds: remove its `when`")
            elif not edge.default and edge.when is None:
                missing = True
                self.add("missing_condition",
                         f"edge {edge.key} out of the {self.kind(node_id)} gateway '{node_id}' has no condition",
                         self.edge_path(edge), node=node_id,
                         hint="add `when: <CEL condition>`, or mark it `default: true`")
        if defaults or missing:
            return
        conditions = [edge.when for edge in edges if edge.when is not None]
        if not _conditions_complete(conditions, self.fields):
            self.add("no_default",
                     "this gateway has no default edge and its conditions may all be false",
                     self.node_path(node_id), node=node_id,
                     hint="mark one outgoing edge `default: true`, or test one enum/boolean field with == / in "
                          "so that every value is covered (e.g. data.accepted == true / data.accepted == false)")

    def check_reachability(self) -> None:
        digraph = self.graph.digraph
        starts = [node_id for node_id in self.graph.nodes if self.kind(node_id) == "start"]
        if starts:
            reached: set[str] = set()
            for start in starts:
                reached |= nx.descendants(digraph, start) | {start}
            self.reached = reached
            for node_id in self.ordered_ids():
                if node_id not in reached:
                    self.add("unreachable", "cannot be reached from the start",
                             self.node_path(node_id), node=node_id,
                             hint=f"add an edge into {node_id} from a step before it, or remove it")
        ends = [node_id for node_id in self.graph.nodes if self.kind(node_id) == "end"]
        if not ends:
            return  # end_count says it
        # an escalation is an exception, not a way out: the normal flow must always be able to finish
        normal = nx.DiGraph()
        normal.add_nodes_from(digraph.nodes)
        normal.add_edges_from((u, v) for u, v, escalation in digraph.edges(data="escalation") if not escalation)
        can_finish: set[str] = set(ends)
        for end in ends:
            can_finish |= nx.ancestors(normal, end)
        stuck = {node_id for node_id in self.graph.nodes if node_id not in can_finish}
        self.stuck = stuck
        relevant = stuck if self.reached is None else stuck & self.reached
        order = {node_id: i for i, node_id in enumerate(self.ordered_ids())}
        condensed = nx.condensation(normal.subgraph(stuck))
        for component in condensed.nodes:
            if condensed.out_degree(component) != 0:
                continue  # it leads into another stuck region; report only where the trap is
            members = sorted(condensed.nodes[component]["members"], key=lambda n: order.get(n, 0))
            if not relevant.intersection(members):
                continue
            outgoing = [edge for member in members for edge in self.graph.outgoing.get(member, [])]
            if any(edge.target not in self.graph.nodes for edge in outgoing):
                continue  # unknown_node already points at the broken edge
            if len(members) == 1 and not outgoing:
                continue  # outgoing_count / gateway_degree already says it has no way out
            first = members[0]
            if len(members) == 1:
                message = "no end can be reached from here: the node loops back to itself"
            else:
                message = (f"no end can be reached from here: the loop {', '.join(members)} "
                           "has no way out")
            self.add("dead_end", message, self.node_path(first), node=first,
                     hint="add an exit from the loop (e.g. a gateway edge to the next step or to an end)")

    def check_split_joins(self) -> None:
        pairs = self.graph.split_joins
        for node_id in self.ordered_ids():
            if node_id in self.bad_degree or node_id in self.stuck:
                continue
            kind = self.kind(node_id)
            if node_id in pairs and pairs[node_id] is None:
                self.add("split_join_mismatch",
                         f"the branches of this {kind} split do not meet again at a {kind} join",
                         self.node_path(node_id), node=node_id,
                         hint=f"lead every branch of {node_id} into one {kind} gateway before the process goes on")
            elif self.graph.is_join(node_id) and node_id not in self.graph.join_split:
                self.add("split_join_mismatch",
                         f"this {kind} join has no matching {kind} split: it would wait for branches "
                         "that never all arrive",
                         self.node_path(node_id), node=node_id,
                         hint=f"start its branches at one {kind} split, or use an exclusive gateway to merge")

    # -- references -------------------------------------------------------------------------

    def check_roles(self) -> None:
        lanes = self.definition.lane_ids()
        for index, node in enumerate(self.definition.nodes):
            lane = getattr(node, "lane", None)
            if lane is not None and lane not in lanes:
                self._unknown_role(lane, ("nodes", index, "lane"), node.id, "lane")
        for levels, path, node_id in self._all_ladders():
            for j, level in enumerate(levels):
                for k, role in enumerate(level.notify):
                    if role not in lanes:
                        self._unknown_role(role, (*path, j, "notify", k), node_id, "notify role")
                if level.reassign is not None and level.reassign not in lanes:
                    self._unknown_role(level.reassign, (*path, j, "reassign"), node_id, "reassign role")

    def check_separation_of_duties(self) -> None:
        """`different_actor_from` must name human tasks: only they have a person who completed them."""
        humans = {n.id for n in self.definition.nodes if n.kind == "human"}
        for index, node in enumerate(self.definition.nodes):
            for k, other in enumerate(getattr(node, "different_actor_from", [])):
                if other not in humans:
                    self.add("unknown_node", f"different_actor_from names '{other}', which is not a human task",
                             ("nodes", index, "different_actor_from", k), node=node.id,
                             hint=_did_you_mean(other, humans, "name a human task of this process"))

    def _unknown_role(self, role: str, path: PathKey, node_id: str | None, what: str) -> None:
        lanes = self.definition.lane_ids()
        self.add("unknown_role", f"{what} '{role}' is not a lane of this process", path, node=node_id,
                 hint=_did_you_mean(role, lanes, f"declare it under lanes: (known: {_listing(lanes)})"))

    def _all_ladders(self) -> Iterator[tuple[list[EscalationLevel], PathKey, str | None]]:
        """Each inline or named ladder once, with the path of its level list."""
        for name, levels in self.definition.ladders.items():
            yield levels, ("ladders", name), None
        for use in self._ladder_uses():
            if not isinstance(use.escalation, str):
                yield use.escalation, use.path, use.node

    def _ladder_uses(self) -> list[_LadderUse]:
        uses: list[_LadderUse] = []
        for index, node in enumerate(self.definition.nodes):
            if isinstance(node, HumanTask) and node.sla is not None:
                uses.append(_LadderUse(node.sla.escalation, ("nodes", index, "sla", "escalation"), node.id, node.id,
                                       f"the SLA of '{node.id}'"))
        for index, clock in enumerate(self.definition.clocks):
            uses.append(_LadderUse(clock.escalation, ("clocks", index, "escalation"), None, None,
                                   f"the case clock '{clock.id}'"))
        return uses

    def check_handlers(self) -> None:
        if self.handlers is None:
            return
        names = self.handlers.names()
        for index, node in enumerate(self.definition.nodes):
            if isinstance(node, AutoTask) and node.handler not in self.handlers:
                self.add("unknown_handler", f"no handler named '{node.handler}' is registered",
                         ("nodes", index, "handler"), node=node.id,
                         hint=_did_you_mean(node.handler, names,
                                            f"register it in engine/builtin_handlers.py (registered: {_listing(names)})"))

    def check_subprocesses(self) -> None:
        if self.library is None:
            return
        known = self.library.process_ids()
        for index, node in enumerate(self.definition.nodes):
            if isinstance(node, SubProcess) and node.process not in self.library.latest:
                self.add("unknown_process", f"sub-process '{node.process}' is not a process of the library",
                         ("nodes", index, "process"), node=node.id,
                         hint=_did_you_mean(node.process, known,
                                            f"add process_defs/{node.process}.yaml (known: {_listing(known)})"))

    # -- SLAs and escalation ----------------------------------------------------------------

    def check_escalations(self) -> None:
        routes: set[str] = set()
        for name, levels in self.definition.ladders.items():
            self._check_order(levels, ("ladders", name), None)
            for j, level in enumerate(levels):
                if level.route is not None:
                    routes.add(level.route)
                    self._check_route(level.route, ("ladders", name, j, "route"), None, None,
                                      f"the ladder '{name}'")
        for use in self._ladder_uses():
            if isinstance(use.escalation, str):
                if use.escalation not in self.definition.ladders:
                    known = list(self.definition.ladders)
                    self.add("unknown_ladder", f"{use.label} uses the escalation ladder '{use.escalation}', "
                             "which is not defined", use.path, node=use.node,
                             hint=_did_you_mean(use.escalation, known,
                                                f"define it under ladders: (known: {_listing(known)})"))
                    continue
                # a named ladder's routes must also fit each SLA that uses it
                for j, level in enumerate(self.definition.ladders[use.escalation]):
                    if level.route is not None and use.owner is not None:
                        self._check_route(level.route, ("ladders", use.escalation, j, "route"), use.owner,
                                          use.node, use.label, existence_checked=True)
                continue
            self._check_order(use.escalation, use.path, use.node)
            for j, level in enumerate(use.escalation):
                if level.route is not None:
                    routes.add(level.route)
                    self._check_route(level.route, (*use.path, j, "route"), use.owner, use.node, use.label)
        for index, edge in enumerate(self.definition.edges):
            if edge.kind != "escalation":
                continue
            if edge.id is None:
                self.add("edge_needs_id", f"the escalation edge {edge.key} has no id", ("edges", index),
                         node=edge.source,
                         hint=f"add `id: escalate_{edge.source}` and name it in an escalation level's `route`")
            elif edge.id not in routes:
                self.add("unused_escalation_edge",
                         f"no escalation level routes along the escalation edge '{edge.id}'; it is never taken",
                         ("edges", index), node=edge.source,
                         hint=f"add `route: {edge.id}` to a level of the SLA's escalation, or remove the edge")

    def _check_order(self, levels: list[EscalationLevel], path: PathKey, node_id: str | None) -> None:
        for j in range(1, len(levels)):
            if levels[j].at <= levels[j - 1].at:
                self.add("bad_ladder", f"escalation level at {levels[j].at}% comes after the level at "
                         f"{levels[j - 1].at}%; levels must strictly increase", (*path, j, "at"), node=node_id,
                         hint="order the levels by `at`, e.g. 50, 75, 100, 150, 200, without repeats")

    def _check_route(self, route: str, path: PathKey, owner: str | None, node_id: str | None, label: str,
                     *, existence_checked: bool = False) -> None:
        edge = self.graph.escalation_edges.get(route)
        if edge is None:
            if existence_checked:
                return
            normal_ids = {e.id for e in self.definition.edges if e.kind == "normal" and e.id}
            escalation_ids = [e.id for e in self.graph.escalation_edges.values() if e.id]
            if route in normal_ids:
                self.add("unknown_edge", f"{label} routes along '{route}', which is a normal edge", path,
                         node=node_id, hint=f"mark edge {route} `kind: escalation`, or route along an escalation edge")
            else:
                self.add("unknown_edge", f"{label} routes along '{route}', which is not an escalation edge", path,
                         node=node_id,
                         hint=_did_you_mean(route, escalation_ids,
                                            "add an edge with this id and `kind: escalation` from the node the SLA "
                                            f"belongs to (escalation edges: {_listing(escalation_ids)})"))
            return
        if owner is not None and edge.source != owner:
            self.add("unknown_edge", f"{label} routes along '{route}', which leaves '{edge.source}', not '{owner}'",
                     path, node=node_id,
                     hint=f"a task's escalation can only move the case away from that task: start '{route}' at {owner}")

    def check_policies_and_durations(self) -> None:
        for index, node in enumerate(self.definition.nodes):
            if isinstance(node, HumanTask) and node.sla is not None:
                base: PathKey = ("nodes", index, "sla")
                if node.sla.target is not None:
                    self._check_duration(node.sla.target, (*base, "target"), node.id)
                self._check_policies(node.sla.policies, (*base, "policies"), node.id)
            elif isinstance(node, TimerWait) and node.duration is not None:
                self._check_duration(node.duration, ("nodes", index, "duration"), node.id, may_be_zero=True)
        for index, clock in enumerate(self.definition.clocks):
            if not clock.policies:
                self.add("bad_policy", f"the case clock '{clock.id}' has no policies, so no target",
                         ("clocks", index), hint="add `policies: [{target: 5d}]`")
            self._check_policies(clock.policies, ("clocks", index, "policies"), None)
        for index, schedule in enumerate(self.definition.schedules):
            if schedule.every is not None:
                self._check_duration(schedule.every, ("schedules", index, "every"), None)

    def _check_policies(self, policies: list[Policy], path: PathKey, node_id: str | None) -> None:
        for p, policy in enumerate(policies):
            self._check_duration(policy.target, (*path, p, "target"), node_id)
            if policy.when is None and p < len(policies) - 1:
                self.add("bad_policy", f"policy {p + 1} has no condition, so the {len(policies) - p - 1} policies "
                         "after it never apply", (*path, p), node=node_id,
                         hint="the first policy whose `when` holds wins: move the unconditional policy last")

    def _check_duration(self, text: str, path: PathKey, node_id: str | None, *, may_be_zero: bool = False) -> None:
        """A zero SLA target is breached on arrival and a zero schedule interval never stops firing."""
        try:
            duration = durations.parse_duration(text)
        except ValueError as exc:
            self.add("bad_duration", f"duration '{text}' does not parse: {exc}", path, node=node_id,
                     hint='write business time like "2h", "30m", "5d" or "1d 4h" (d = one working day)')
            return
        if not may_be_zero and duration.days == 0 and duration.seconds == 0:
            self.add("bad_duration", f"duration '{text}' is zero", path, node=node_id,
                     hint="give a positive duration, e.g. 30m")

    def check_clocks(self) -> None:
        node_ids = list(self.graph.nodes)
        for index, clock in enumerate(self.definition.clocks):
            refs: list[tuple[str, PathKey]] = []
            if clock.start_on is not None:
                refs.append((clock.start_on, ("clocks", index, "start_on")))
            refs.extend((stop, ("clocks", index, "stop_on", k)) for k, stop in enumerate(clock.stop_on))
            for ref, path in refs:
                if ref not in self.graph.nodes:
                    self.add("unknown_node", f"the case clock '{clock.id}' names unknown node '{ref}'", path,
                             hint=_did_you_mean(ref, node_ids, f"known nodes: {_listing(node_ids)}"))

    # -- expressions ------------------------------------------------------------------------

    def check_expressions(self) -> None:
        condition = StaticType("bool")
        for index, edge in enumerate(self.definition.edges):
            if edge.when is not None:
                self._check_expression(edge.when, ("edges", index, "when"), edge.source, self.scope,
                                       expect=condition, expect_what="a condition")
        for index, node in enumerate(self.definition.nodes):
            base: PathKey = ("nodes", index)
            for key, text in node.compute.items():
                self._check_expression(text, (*base, "compute", key), node.id, self.scope,
                                       expect=self._declared(key), expect_what=f"data.{key}")
            if isinstance(node, HumanTask) and node.sla is not None:
                for p, policy in enumerate(node.sla.policies):
                    if policy.when is not None:
                        self._check_expression(policy.when, (*base, "sla", "policies", p, "when"), node.id,
                                               self.scope, expect=condition, expect_what="a policy's `when`")
            elif isinstance(node, TimerWait) and node.until is not None:
                result = self._check_expression(node.until, (*base, "until"), node.id, self.scope)
                if result is not None and result.known and result.kind not in {"string", "timestamp", "null"}:
                    self.add("type_mismatch", f"the timer's `until` gives {result.describe()}, not a date-time",
                             (*base, "until"), node=node.id,
                             hint='give an ISO date-time text or a timestamp, e.g. '
                                  '`timestamp(data.promised_at) + duration("24h")`')
            elif isinstance(node, SubProcess):
                self._check_subprocess_mappings(node, base)
        for index, clock in enumerate(self.definition.clocks):
            for p, policy in enumerate(clock.policies):
                if policy.when is not None:
                    self._check_expression(policy.when, ("clocks", index, "policies", p, "when"), None,
                                           self.scope, expect=condition, expect_what="a policy's `when`")
        if self.definition.case_priority is not None:
            priority = field_type("enum", list(PRIORITIES), shown="the case priority")
            self._check_expression(self.definition.case_priority, ("case_priority",), None, self.scope,
                                   expect=priority, expect_what="the case priority")

    def _declared(self, name: str) -> StaticType | None:
        """The declared type of a field of this case (None when nothing declares its type)."""
        spec = self.fields.get(name)
        return None if spec is None else field_type(spec.type, spec.choices, shown=f"data.{name}")

    def _child(self, node: SubProcess) -> ProcessDefinition | None:
        if self.library is None or node.process not in self.library.latest:
            return None
        return self.library.latest[node.process].definition

    def _check_subprocess_mappings(self, node: SubProcess, base: PathKey) -> None:
        """Inputs read this case and write the child; outputs read the child and write this case."""
        child = self._child(node)
        # a child case starts with its declared data only: anything else is refused at its start
        child_fields = child.data if child is not None else None
        for key, text in node.inputs.items():
            expect: StaticType | None = None
            if child is not None and child_fields is not None and key not in child_fields:
                written = key in fields_of(child)
                self.add("unknown_field",
                         f"input '{key}' is not declared under data: of the sub-process '{node.process}'"
                         + (" (a step of it writes the field, but a case starts with declared data only)"
                            if written else ""),
                         (*base, "inputs", key), node=node.id,
                         hint=_did_you_mean(key, child_fields,
                                            f"declare it under data: in {node.process} "
                                            f"(its fields: {_listing(child_fields)})")
                         if not written else f"declare {key} under data: in {node.process}")
            elif child_fields is not None:
                spec = child_fields[key]
                expect = field_type(spec.type, spec.choices, shown=f"data.{key} of '{node.process}'")
            self._check_expression(text, (*base, "inputs", key), node.id, self.scope,
                                   expect=expect, expect_what=f"the input {key} (data.{key} of '{node.process}')")
        if child is not None:
            for key in _required_without_default(child.data):
                if key not in node.inputs:
                    self.add("missing_input", f"the sub-process '{node.process}' requires data.{key}, which no "
                             "input gives: the child case would be refused at its start",
                             (*base, "inputs") if node.inputs else (*base, "process"), node=node.id,
                             hint=f"add `{key}: <CEL expression>` under inputs:")
        output_scope = _child_output_scope(node.process, child)
        for key, text in node.outputs.items():
            self._check_expression(text, (*base, "outputs", key), node.id, output_scope,
                                   expect=self._declared(key), expect_what=f"data.{key}")

    def _check_expression(self, text: str, path: PathKey, node_id: str | None, scope: _Scope,
                          *, expect: StaticType | None = None, expect_what: str = "") -> StaticType | None:
        """Parse `text`, check every name it reads against what `scope` provides, and check that
        its operands' types can fit (and its result fits `expect`). Returns its type, None when
        it does not parse."""
        try:
            expression = compile_expression(text)
        except ExpressionError as exc:
            where = f" at column {exc.column}" if exc.column is not None else ""
            if exc.line is not None and exc.line > 1:
                where = f" at line {exc.line}, column {exc.column} of the expression"
            self.add("bad_expression", f"expression `{' '.join(text.split())}` does not parse{where}: {exc.message}",
                     path, node=node_id, hint=exc.hint or "CEL syntax: ==, !=, &&, ||, !, in [..], has(data.x)")
            return None
        shown = " ".join(text.split())
        for reference in sorted(expression.references):
            problem = self._reference_problem(reference, scope)
            if problem is not None:
                message, hint = problem
                self.add("unknown_field", f"expression `{shown}` {message}", path, node=node_id, hint=hint)
        result, findings = check_types(expression, _resolver(scope), expect=expect, expect_what=expect_what)
        for finding in findings:
            if finding.code == "unknown_choice" and finding.value is not None:
                self._unknown_choice(finding, path, node_id)
            else:
                self.add(finding.code, f"expression `{shown}`: {finding.message}", path, node=node_id,
                         hint=finding.hint)
        return result

    def _reference_problem(self, reference: tuple[str, ...], scope: _Scope) -> tuple[str, str] | None:
        root = reference[0]
        if root not in _ROOTS:
            return (f"uses unknown name '{root}'",
                    f"expressions start from {', '.join(_ROOTS)}, e.g. data.{root}")
        if len(reference) < 2:
            return None
        name = reference[1]
        if root == "data":
            if scope.data is None or name in scope.data:
                return None
            return (f"reads data.{name}, which is not a field of {scope.where}",
                    _did_you_mean(name, scope.data, scope.note or "declare it under data:, or write it from a form, "
                                  "handler output, message field, compute or sub-process output"))
        known, what = {"steps": (scope.steps, "a node"), "params": (scope.params, "a parameter"),
                       "case": (scope.case, "a case property")}[root]
        if name in known:
            return None  # the common case: no hint to build (a listing costs as much as the names)
        otherwise = {
            "steps": lambda: f"nodes: {_listing(scope.steps)}",
            "params": lambda: f"declare it under parameters: (known: {_listing(scope.params)})",
            "case": lambda: f"case properties: {_listing(scope.case)}",
        }[root]()
        return (f"reads {root}.{name}, which is not {what} of {scope.where}",
                _did_you_mean(name, known, scope.note or otherwise))

    def _unknown_choice(self, finding: Finding, path: PathKey, node_id: str | None) -> None:
        """`data.tier == "golden"` is always false; for enum/boolean fields that is surely a typo."""
        assert finding.value is not None
        kind, value = finding.value
        shown = f'"{value}"' if kind == "str" else str(value).lower() if kind == "bool" else f"{value:g}"
        choices = list(finding.choices or [])
        allowed = _listing(choices) if finding.choices is not None else "true, false"
        hint = (_did_you_mean(str(value), choices, f"allowed: {allowed}")
                if finding.choices is not None and kind == "str" else f"allowed: {allowed}")
        self.add("unknown_choice", f"{finding.field} is never {shown} (allowed: {allowed})", path,
                 node=node_id, hint=hint)

    def check_schedules(self) -> None:
        """A scheduled case starts with the schedule's data, checked like any start: declared fields
        only, each value of its field's type, every required field given."""
        declared = self.definition.data
        for index, schedule in enumerate(self.definition.schedules):
            problem = cron_problem(schedule.cron) if schedule.cron is not None else None
            if problem is not None:
                self.add("bad_cron", f"the schedule '{schedule.id}' has the cron {schedule.cron!r}: {problem}",
                         ("schedules", index, "cron"),
                         hint='write minute hour day-of-month month day-of-week, e.g. "0 9 1 * *" (09:00 on the '
                              "1st of each month), or use `every: 30d`")
            for key, value in schedule.data.items():
                path: PathKey = ("schedules", index, "data", key)
                if key not in declared:
                    written = key in self.fields
                    self.add("unknown_field", f"the schedule '{schedule.id}' sets data.{key}, which is not "
                             "declared under data: of this process"
                             + (" (a step writes it, but a case starts with declared data only)" if written else ""),
                             path, hint=_did_you_mean(key, declared, "declare it under data:")
                             if not written else f"declare {key} under data:")
                    continue
                problem = _value_problem(declared[key], value)
                if problem is not None:
                    self.add("type_mismatch", f"the schedule '{schedule.id}' sets data.{key} to {value!r}: "
                             f"{problem}", path, hint=f"give a value of type {declared[key].type}")
            for key in _required_without_default(declared):
                if key not in schedule.data:
                    self.add("missing_input", f"the schedule '{schedule.id}' does not set data.{key}, which is "
                             "required: every scheduled case would be refused at its start",
                             ("schedules", index), hint=f"add {key} under the schedule's data:")

    def check_design(self) -> None:
        """Designer warnings (engine/definition/designer.py): reported, never refused."""
        for note in designer_notes(self.graph, self.fields):
            self.add(note.code, note.message, note.path, node=note.node, hint=note.hint)

    # -- declared fields --------------------------------------------------------------------

    def check_declarations(self) -> None:
        """Each typed field is coherent (its default fits, bounds only on numbers) and agrees with
        the case data it writes: a form, handler output or message field of another type than
        the declared field would store values that the declared type refuses everywhere else."""
        declared = self.definition.data
        for name, spec in declared.items():
            self._check_spec(spec, ("data", name), None, f"data.{name}")
        for index, node in enumerate(self.definition.nodes):
            places: list[tuple[str, FieldSpec, PathKey, str]] = []
            if isinstance(node, HumanTask):
                places = [(f.id, f, ("nodes", index, "form", j), "form field") for j, f in enumerate(node.form)]
            elif isinstance(node, AutoTask):
                places = [(k, v, ("nodes", index, "outputs", k), "handler output") for k, v in node.outputs.items()]
            elif isinstance(node, MessageWait):
                places = [(k, v, ("nodes", index, "fields", k), "message field") for k, v in node.fields.items()]
            for name, spec, path, what in places:
                self._check_spec(spec, path, node.id, f"the {what} '{name}'")
                target = declared.get(name)
                if target is not None:
                    self._check_agrees(name, spec, target, path, node.id, what)

    def _check_spec(self, spec: FieldSpec, path: PathKey, node_id: str | None, what: str) -> None:
        if spec.type not in {"integer", "number"} and (spec.minimum is not None or spec.maximum is not None):
            self.add("bad_field", f"{what} is of type {spec.type}, which has no minimum or maximum", path,
                     node=node_id, hint="remove minimum/maximum, or make the field integer or number")
        elif spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
            self.add("bad_field", f"{what} has minimum {spec.minimum:g} above its maximum {spec.maximum:g}", path,
                     node=node_id, hint="swap them: no value could be entered")
        if spec.choices is not None and len(set(spec.choices)) != len(spec.choices):
            repeated = sorted({c for c in spec.choices if spec.choices.count(c) > 1})
            self.add("bad_field", f"{what} lists the choice(s) {', '.join(repeated)} more than once", path,
                     node=node_id, hint="list each choice once")
        if spec.default is not None:
            problem = _value_problem(spec, spec.default)
            if problem is not None:
                self.add("bad_field", f"the default {spec.default!r} of {what} does not fit: {problem}",
                         (*path, "default"), node=node_id, hint=f"give a default of type {spec.type}")

    def _check_agrees(self, name: str, spec: FieldSpec, target: FieldSpec, path: PathKey, node_id: str,
                      what: str) -> None:
        if field_type(spec.type).kind != field_type(target.type).kind:
            self.add("type_mismatch", f"the {what} '{name}' is {spec.type}, but data: declares {name} as "
                     f"{target.type}", path, node=node_id,
                     hint=f"give the {what} type {target.type}, or write a field of another name")
        elif spec.type == "enum" and target.type == "enum":
            extra = [c for c in spec.choices or [] if c not in (target.choices or [])]
            if extra:
                self.add("unknown_choice", f"the {what} '{name}' offers {_listing(extra)}, which data.{name} "
                         f"does not allow (allowed: {_listing(target.choices or [])})", path, node=node_id,
                         hint=f"offer only choices of data.{name}, or add them to its choices")

    def check_messages(self) -> None:
        """A message must be deliverable, and mean one thing: the CLI and the HTTP API refuse a
        message name longer than the id limit in force (SVCFLOW_MAX_ID_CHARS), and if two waits of
        one name expect different payloads, the same message is accepted at one step and refused
        at the other."""
        id_chars = _id_chars()
        first: dict[str, tuple[MessageWait, int]] = {}
        for index, node in enumerate(self.definition.nodes):
            if not isinstance(node, MessageWait):
                continue
            if id_chars is not None and len(node.message) > id_chars:
                self.add("undeliverable_message", f"the message name '{node.message}' has {len(node.message)} "
                         f"characters; senders are refused above {id_chars} (SVCFLOW_MAX_ID_CHARS), so the case "
                         "would wait for ever", ("nodes", index, "message"), node=node.id,
                         hint=f"shorten the name to at most {id_chars} characters, or raise SVCFLOW_MAX_ID_CHARS")
            if node.message not in first:
                first[node.message] = (node, index)
                continue
            other, _ = first[node.message]
            mine = {k: v.type for k, v in node.fields.items()}
            theirs = {k: v.type for k, v in other.fields.items()}
            if mine != theirs:
                self.add("message_conflict", f"'{node.id}' and '{other.id}' both wait for the message "
                         f"'{node.message}' but expect different payload fields", ("nodes", index, "fields"),
                         node=node.id, hint=f"give both the same fields, or name one message differently, "
                         f"e.g. '{node.message}_{node.id}'")


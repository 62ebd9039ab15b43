"""What the validator learns from a CEL expression without evaluating it.

There is one CEL reader: :func:`engine.expressions.cel.compile_expression` parses the text
once, and this module walks that same tree (``Expression.tree``) for the two questions the
validator asks before a definition may run:

* :func:`condition_atoms` - is a gateway condition a plain test of one data field
  (``data.f == v``, ``data.f in [..]``, ``data.f``, ``!data.f``, joined by ``||``)? Only then
  can a set of conditions be proven to cover every value of the field.
* :func:`check_types` - can the operands ever fit? ``data.amount == "5000"`` (a number
  compared with a string), ``data.tier == "golden"`` (an enum value that is not a choice),
  ``data.tier && data.accepted`` (a string where true/false is needed) are accepted by the
  parser and fail - or silently never hold - weeks later in a running case. The types come
  from the definition's declared fields (:class:`FieldTypes`) and parameter values.

The analysis is deliberately conservative: whatever it cannot type (a case property, a step
output, a macro variable, a function result it does not know) is ``dyn`` and never reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import lark
from celpy import evaluation as cel_evaluation

from engine.expressions.cel import Expression, Node, field_path, unwrap

__all__ = [
    "DYN",
    "Atom",
    "Finding",
    "Interval",
    "StaticType",
    "Value",
    "check_types",
    "condition_atoms",
    "condition_interval",
    "field_type",
    "params_resolver",
    "value_type",
]

Value = tuple[str, Any]  # ("str", "gold"), ("bool", True), ("num", 3.0): keeps True and 1 apart


# ----------------------------------------------------------------------------------------------
# Conditions as atoms
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    """`data.f == v`, `data.f in [..]`, `data.f`, `!data.f` (negated = the complement)."""

    field: str
    values: frozenset[Value]
    negated: bool


def _literal_value(node: Node) -> Value | None:
    """A string, boolean or number literal as a comparable value; anything else is None."""
    node = unwrap(node)
    if not (isinstance(node, lark.Tree) and node.data == "literal"):
        return None
    token = node.children[0]
    if not isinstance(token, lark.Token):
        return None
    if token.type in {"STRING_LIT", "MLSTRING_LIT"}:
        return ("str", str(cel_evaluation.celstr(token)))
    if token.type == "BOOL_LIT":
        return ("bool", str(token) == "true")
    if token.type in {"INT_LIT", "FLOAT_LIT"}:
        text = str(token)
        try:
            return ("num", float(int(text, 0)) if token.type == "INT_LIT" else float(text))
        except ValueError:
            return None
    return None


def _data_field(node: Node) -> str | None:
    """`f` when `node` reads exactly `data.f`."""
    path = field_path(node, frozenset())
    if path is not None and len(path) == 2 and path[0] == "data":
        return path[1]
    return None


def _operands(node: Node, operator: str) -> tuple[Node, Node] | None:
    """Left and right of a binary relation `node` whose operator rule is `operator`."""
    if not (isinstance(node, lark.Tree) and node.data == "relation" and len(node.children) == 2):
        return None
    op_node = node.children[0]
    if isinstance(op_node, lark.Tree) and op_node.data == operator and len(op_node.children) == 1:
        return op_node.children[0], node.children[1]
    return None


def _disjuncts(node: Node) -> list[Node]:
    """The operands of a chain of `||`, parentheses removed."""
    node = unwrap(node)
    if isinstance(node, lark.Tree) and node.data == "conditionalor" and len(node.children) == 2:
        return [*_disjuncts(node.children[0]), *_disjuncts(node.children[1])]
    return [node]


def _atom(node: Node) -> Atom | None:
    node = unwrap(node)
    name = _data_field(node)
    if name is not None:
        return Atom(name, frozenset({("bool", True)}), negated=False)
    if not isinstance(node, lark.Tree):
        return None
    if node.data == "unary" and len(node.children) == 2:
        op = node.children[0]
        name = _data_field(node.children[1])
        if isinstance(op, lark.Tree) and op.data == "unary_not" and name is not None:
            return Atom(name, frozenset({("bool", True)}), negated=True)
        return None
    for operator in ("relation_eq", "relation_ne"):
        pair = _operands(node, operator)
        if pair is None:
            continue
        left, right = pair
        name, value = _data_field(left), _literal_value(right)
        if name is None:
            name, value = _data_field(right), _literal_value(left)
        if name is None or value is None:
            return None
        return Atom(name, frozenset({value}), negated=operator == "relation_ne")
    pair = _operands(node, "relation_in")
    if pair is not None:
        name = _data_field(pair[0])
        items = unwrap(pair[1])
        if name is None or not (isinstance(items, lark.Tree) and items.data == "list_lit"):
            return None
        values = [_literal_value(item) for item in _list_items(items)]
        if any(value is None for value in values):
            return None
        return Atom(name, frozenset(value for value in values if value is not None), negated=False)
    return None


def _list_items(node: lark.Tree[lark.Token]) -> list[Node]:
    if node.children and isinstance(node.children[0], lark.Tree):
        return list(node.children[0].children)
    return []


def condition_atoms(expression: Expression) -> list[Atom] | None:
    """The disjuncts of a condition if each is a plain test of one data field, else None."""
    atoms: list[Atom] = []
    for disjunct in _disjuncts(expression.tree):
        atom = _atom(disjunct)
        if atom is None:
            return None
        atoms.append(atom)
    return atoms


# ----------------------------------------------------------------------------------------------
# Types
# ----------------------------------------------------------------------------------------------

_KIND_WORDS: Final[dict[str, str]] = {
    "string": "a string", "number": "a number", "bool": "true/false", "null": "null", "list": "a list",
    "map": "a map", "timestamp": "a timestamp", "duration": "a duration", "bytes": "bytes", "type": "a type",
}
_ORDERED: Final[frozenset[str]] = frozenset({"string", "number", "bool", "timestamp", "duration", "bytes"})
# Declared field types (engine.definition.model.FieldType) as CEL sees their values.
_FIELD_KINDS: Final[dict[str, str]] = {
    "string": "string", "text": "string", "date": "string", "datetime": "string", "enum": "string",
    "integer": "number", "number": "number", "boolean": "bool", "list": "list",
}
_FUNCTION_KINDS: Final[dict[str, str]] = {
    "size": "number", "int": "number", "uint": "number", "double": "number", "string": "string",
    "bool": "bool", "bytes": "bytes", "timestamp": "timestamp", "duration": "duration", "type": "type",
    "has": "bool", "matches": "bool", "contains": "bool", "startsWith": "bool", "endsWith": "bool",
    "all": "bool", "exists": "bool", "exists_one": "bool", "map": "list", "filter": "list",
    "getFullYear": "number", "getMonth": "number", "getDayOfYear": "number", "getDayOfMonth": "number",
    "getDate": "number", "getDayOfWeek": "number", "getHours": "number", "getMinutes": "number",
    "getSeconds": "number", "getMilliseconds": "number",
}
_MACROS: Final[frozenset[str]] = frozenset({"all", "exists", "exists_one", "map", "filter"})
_DATES: Final[frozenset[str]] = frozenset({"date", "datetime"})  # a timestamp written there is fine
_TYPE_NAMES: Final[frozenset[str]] = frozenset(
    {"bool", "bytes", "double", "int", "list", "map", "null_type", "string", "type", "uint"}
)


@dataclass(frozen=True)
class StaticType:
    """What can be known before running about the value of a (sub-)expression.

    `kind` is a CEL value family ("string", "number", "bool", ... or "dyn" = unknown); ints,
    uints and doubles are one family because svcflow's CEL compares and mixes them. `shown` is
    how a message names the operand (`data.amount`, `"5000"`); `declared` the field's declared
    type; `choices` an enum's values; `value` a literal's value; `items` a list literal's items.
    """

    kind: str = "dyn"
    shown: str | None = None
    declared: str | None = None
    choices: tuple[str, ...] | None = None
    value: Value | None = None
    items: tuple[StaticType, ...] | None = None
    element: StaticType | None = None

    @property
    def known(self) -> bool:
        return self.kind != "dyn"

    def describe(self) -> str:
        what = _KIND_WORDS.get(self.kind, self.kind)
        if self.shown is None:
            return f"an expression giving {what}"
        if self.declared is not None:
            return f"{self.shown} (declared {self.declared})"
        if self.value is not None or self.kind == "null":
            return f"{self.shown}, {what}"
        return f"{self.shown} ({what})"


DYN: Final = StaticType()


def field_type(declared: str | None, choices: list[str] | None = None, shown: str | None = None) -> StaticType:
    """The static type of a value of a declared field type (None: not declared, so unknown)."""
    if declared is None:
        return replace(DYN, shown=shown)
    return StaticType(kind=_FIELD_KINDS.get(declared, "dyn"), shown=shown, declared=declared,
                      choices=tuple(choices) if declared == "enum" and choices else None)


def value_type(value: Any, shown: str | None = None) -> StaticType:
    """The static type of a known Python value, e.g. a process parameter."""
    if isinstance(value, bool):
        return StaticType("bool", shown, value=("bool", value))
    if isinstance(value, (int, float)):
        return StaticType("number", shown, value=("num", float(value)))
    if isinstance(value, str):
        return StaticType("string", shown, value=("str", value))
    if value is None:
        return StaticType("null", shown)
    if isinstance(value, list):
        kinds = {value_type(item).kind for item in value}
        element = StaticType(kinds.pop()) if len(kinds) == 1 else DYN
        return StaticType("list", shown, items=tuple(value_type(item, repr(item)) for item in value),
                          element=element)
    if isinstance(value, dict):
        return StaticType("map", shown)
    return replace(DYN, shown=shown)


@dataclass(frozen=True)
class Finding:
    """One type mistake in an expression; the validator locates it in the file.

    `code` is "type_mismatch" or "unknown_choice"; for the latter `field`, `value` and
    `choices` let the validator word it (and suggest the closest choice).
    """

    code: str
    message: str
    hint: str
    field: str | None = None
    value: Value | None = None
    choices: tuple[str, ...] | None = None


@dataclass
class _TypeWalk:
    """One walk over a tree: infers each node's type and records findings."""

    resolve: Callable[[tuple[str, ...]], StaticType]
    findings: list[Finding] = field(default_factory=list)

    def report(self, message: str, hint: str) -> None:
        finding = Finding("type_mismatch", message, hint)
        if finding not in self.findings:
            self.findings.append(finding)

    def infer(self, node: Node, bound: frozenset[str]) -> StaticType:
        node = unwrap(node)
        if not isinstance(node, lark.Tree):
            return DYN
        path = field_path(node, bound)
        if path is not None:
            return self._path(path, bound)
        children = node.children
        kind = node.data
        if kind == "literal":
            return self._literal(children[0])
        if kind == "expr" and len(children) == 3:
            return self._ternary(children, bound)
        if kind in {"conditionalor", "conditionaland"} and len(children) == 2:
            operator = "||" if kind == "conditionalor" else "&&"
            for child in children:
                self._needs_bool(self.infer(child, bound), f"`{operator}`")
            return StaticType("bool")
        if kind == "relation" and len(children) == 2 and isinstance(children[0], lark.Tree):
            return self._relation(children[0], children[1], bound)
        if kind in {"addition", "multiplication"} and len(children) == 2 and isinstance(children[0], lark.Tree):
            return self._arithmetic(children[0], children[1], bound)
        if kind == "unary" and len(children) == 2 and isinstance(children[0], lark.Tree):
            operand = self.infer(children[1], bound)
            if children[0].data == "unary_not":
                self._needs_bool(operand, "`!`")
                return StaticType("bool")
            if operand.known and operand.kind not in {"number", "duration"}:
                self.report(f"`-` needs a number, but {operand.describe()} is not one",
                            "negate numbers only")
            return StaticType(operand.kind if operand.known else "dyn")
        if kind == "list_lit":
            items = tuple(self.infer(item, bound) for item in _list_items(node))
            kinds = {item.kind for item in items}
            element = StaticType(kinds.pop()) if len(kinds) == 1 else DYN
            return StaticType("list", items=items, element=element)
        if kind == "map_lit":
            self._visit_all(children, bound)
            return StaticType("map")
        if kind in {"ident_arg", "dot_ident_arg"}:
            arguments = _arguments(children, 1)
            self._visit_all(arguments, bound)
            return StaticType(_FUNCTION_KINDS.get(str(children[0]), "dyn"))
        if kind == "member_dot_arg":
            return self._method(node, bound)
        if kind == "ident" and str(children[0]) in _TYPE_NAMES:
            return StaticType("type")
        self._visit_all(children, bound)
        return DYN

    def _visit_all(self, nodes: list[Node], bound: frozenset[str]) -> None:
        for child in nodes:
            if isinstance(child, lark.Tree):
                self.infer(child, bound)

    def _path(self, path: tuple[str, ...], bound: frozenset[str]) -> StaticType:
        if path[0] in bound:
            return DYN
        return self.resolve(path)

    @staticmethod
    def _literal(token: Node) -> StaticType:
        if not isinstance(token, lark.Token):
            return DYN
        shown = str(token)
        kinds = {"INT_LIT": "number", "UINT_LIT": "number", "FLOAT_LIT": "number", "STRING_LIT": "string",
                 "MLSTRING_LIT": "string", "BOOL_LIT": "bool", "NULL_LIT": "null", "BYTES_LIT": "bytes"}
        kind = kinds.get(token.type, "dyn")
        literal = lark.Tree("literal", [token])
        return StaticType(kind, shown if len(shown) <= 40 else shown[:37] + "...", value=_literal_value(literal))

    def _ternary(self, children: list[Node], bound: frozenset[str]) -> StaticType:
        self._needs_bool(self.infer(children[0], bound), "the condition of `? :`")
        then, otherwise = self.infer(children[1], bound), self.infer(children[2], bound)
        if then.kind == otherwise.kind:
            return StaticType(then.kind)
        if then.kind == "null":
            return StaticType(otherwise.kind)
        if otherwise.kind == "null":
            return StaticType(then.kind)
        return DYN

    def _needs_bool(self, operand: StaticType, where: str) -> None:
        if operand.known and operand.kind != "bool":
            hint = "compare it explicitly, e.g. `data.x == \"value\"` or `size(data.x) > 0`"
            if operand.declared == "enum":
                hint = f"compare it with a choice, e.g. `{operand.shown} == \"{(operand.choices or ('...',))[0]}\"`"
            self.report(f"{where} needs true/false, but {operand.describe()} is not", hint)

    def _relation(self, op_node: lark.Tree[lark.Token], right_node: Node, bound: frozenset[str]) -> StaticType:
        operator = op_node.data
        left = self.infer(op_node.children[0], bound) if op_node.children else DYN
        right = self.infer(right_node, bound)
        if operator in {"relation_eq", "relation_ne"}:
            if not self._choice(left, right) and not self._choice(right, left):
                self._comparable(left, right, "compared with", "they are never equal")
        elif operator == "relation_in":
            self._membership(left, right)
        else:
            if self._comparable(left, right, "ordered against", "CEL cannot order them"):
                for side in (left, right):
                    if side.known and side.kind not in _ORDERED:
                        self.report(f"{side.describe()} cannot be ordered with < <= > >=",
                                    "order numbers, strings, timestamps or durations")
                        break
        return StaticType("bool")

    def _comparable(self, left: StaticType, right: StaticType, verb: str, consequence: str) -> bool:
        if not (left.known and right.known) or "null" in {left.kind, right.kind} or left.kind == right.kind:
            return True
        self.report(f"{left.describe()} is {verb} {right.describe()}: {consequence}",
                    _conversion_hint(left, right))
        return False

    def _choice(self, field_side: StaticType, value_side: StaticType) -> bool:
        """An enum or boolean field compared with a literal it can never hold: unknown_choice."""
        value = value_side.value
        if value is None or field_side.declared not in {"enum", "boolean"} or field_side.shown is None:
            return False
        if field_side.declared == "enum":
            allowed = field_side.choices or ()
            if value[0] == "str" and value[1] in allowed:
                return False
        elif value[0] == "bool":
            return False
        self.findings.append(Finding("unknown_choice", "", "", field=field_side.shown, value=value,
                                     choices=field_side.choices if field_side.declared == "enum" else None))
        return True

    def _membership(self, item: StaticType, container: StaticType) -> None:
        if container.kind == "list":
            if container.items is not None:
                for candidate in container.items:
                    if not self._choice(item, candidate):
                        self._comparable(item, candidate, "looked for among", "it is never in the list")
            elif container.element is not None and container.element.known:
                element = replace(container.element, shown=f"the items of {container.shown or 'the list'}")
                if not self._choice(item, element):
                    self._comparable(item, element, "looked for among", "it is never in the list")
        elif container.known and container.kind != "map":
            self.report(f"`in` needs a list or a map on its right, but {container.describe()} is neither",
                        "test membership in a list, e.g. `data.tier in [\"gold\", \"platinum\"]`; for text "
                        "use .contains()")

    def _arithmetic(self, op_node: lark.Tree[lark.Token], right_node: Node, bound: frozenset[str]) -> StaticType:
        operator = {"addition_add": "+", "addition_sub": "-", "multiplication_mul": "*",
                    "multiplication_div": "/", "multiplication_mod": "%"}.get(op_node.data, "?")
        left = self.infer(op_node.children[0], bound) if op_node.children else DYN
        right = self.infer(right_node, bound)
        if not (left.known and right.known):
            return StaticType(left.kind if left.kind == right.kind or not right.known else "dyn")
        temporal = {"timestamp", "duration"}
        if left.kind in temporal or right.kind in temporal:
            return DYN  # timestamp ± duration and friends: celpy decides
        if operator == "+" and left.kind == right.kind and left.kind in {"number", "string", "list", "bytes"}:
            return StaticType(left.kind)
        if left.kind == right.kind == "number":
            return StaticType("number")
        self.report(f"`{operator}` cannot combine {left.describe()} and {right.describe()}",
                    _conversion_hint(left, right) if left.kind != right.kind
                    else "`-`, `*`, `/` and `%` take numbers")
        return DYN

    def _method(self, node: lark.Tree[lark.Token], bound: frozenset[str]) -> StaticType:
        children = node.children
        name = str(children[1])
        arguments = _arguments(children, 2)
        receiver = self.infer(children[0], bound)
        if name in _MACROS and len(arguments) == 2:
            variable = unwrap(arguments[0])
            local = str(variable.children[0]) if isinstance(variable, lark.Tree) and variable.children else ""
            self.infer(arguments[1], bound | {local})
        else:
            self._visit_all(arguments, bound)
            if name in {"contains", "startsWith", "endsWith", "matches"} and receiver.known \
                    and receiver.kind != "string":
                self.report(f".{name}() works on text, but {receiver.describe()} is not text",
                            "use `in` to test a list, e.g. `\"x\" in data.items`")
        return StaticType(_FUNCTION_KINDS.get(name, "dyn"))


def _arguments(children: list[Node], index: int) -> list[Node]:
    if len(children) > index and isinstance(children[index], lark.Tree):
        return list(children[index].children)  # type: ignore[union-attr]
    return []


def _conversion_hint(left: StaticType, right: StaticType) -> str:
    kinds = {left.kind, right.kind}
    if kinds == {"string", "number"}:
        return "compare like with like: write the number without quotes (or declare the field as text), " \
               "or convert with int(), double() or string()"
    if "bool" in kinds:
        return "write true or false without quotes, or compare the field with a value of its own type"
    return "compare values of the same type; convert with int(), double(), string() or timestamp()"


def check_types(
    expression: Expression,
    resolve: Callable[[tuple[str, ...]], StaticType],
    *,
    expect: StaticType | None = None,
    expect_what: str = "",
) -> tuple[StaticType, list[Finding]]:
    """The type of `expression` and every type mistake in it.

    `resolve` gives the type a field path reads (``("data", "amount")``), DYN when unknown.
    `expect` is what the result must be (true/false for a condition, a field's declared type
    for a value written into it); `expect_what` names that place in the message.
    """
    walk = _TypeWalk(resolve)
    result = walk.infer(expression.tree, frozenset())
    if expect is not None and expect.known and result.known and result.kind != "null":
        shown = " ".join(expression.text.split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        if expect.kind == "bool" and result.kind != "bool":
            walk.report(f"{expect_what} must be true or false, but `{shown}` gives {_KIND_WORDS[result.kind]}",
                        "compare explicitly, e.g. `data.x == \"value\"` or `data.amount > 0`")
        elif result.kind != expect.kind and not (result.kind == "timestamp" and expect.declared in _DATES):
            wanted = f"declared {expect.declared}" if expect.declared else f"{_KIND_WORDS.get(expect.kind)}"
            walk.report(f"{expect_what} is {wanted}, but `{shown}` gives "
                        f"{_KIND_WORDS.get(result.kind, result.kind)}", _conversion_hint(expect, result))
        elif expect.declared == "enum" and result.value is not None and result.value[0] == "str" \
                and result.value[1] not in (expect.choices or ()):
            walk.findings.append(Finding("unknown_choice", "", "", field=expect.shown, value=result.value,
                                         choices=expect.choices))
    return result, walk.findings


def params_resolver(parameters: Mapping[str, Any]) -> Callable[[tuple[str, ...]], StaticType]:
    """Types of `params.x` (and `params.x.y` into a map parameter) from the parameter values."""

    def resolve(path: tuple[str, ...]) -> StaticType:
        value: Any = parameters
        for part in path[1:]:
            if not isinstance(value, Mapping) or part not in value:
                return DYN
            value = value[part]
        # kind only: a parameter is an editable default, its value is not a constant of the definition
        found = value_type(value, ".".join(path))
        return replace(found, value=None, items=None)

    return resolve


# ----------------------------------------------------------------------------------------------
# Numeric ranges
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """The values of one number field a condition `data.f <op> constant` holds for."""

    field: str
    low: float = float("-inf")
    low_closed: bool = False
    high: float = float("inf")
    high_closed: bool = False

    def _overlap(self, other: Interval) -> tuple[float, bool, float, bool]:
        low, low_closed = max((self.low, self.low_closed), (other.low, other.low_closed),
                              key=lambda bound: (bound[0], not bound[1]))
        high, high_closed = min((self.high, self.high_closed), (other.high, other.high_closed),
                                key=lambda bound: (bound[0], bound[1]))
        return low, low_closed, high, high_closed

    def meets(self, other: Interval) -> bool:
        """Both hold for some value of the field."""
        if self.field != other.field:
            return False
        low, low_closed, high, high_closed = self._overlap(other)
        return low < high or (low == high and low_closed and high_closed)

    def example(self, other: Interval) -> float:
        """A value both hold for (when they `meet`), to show in a warning."""
        low, low_closed, high, high_closed = self._overlap(other)
        if low == high:
            return low
        if low == float("-inf"):
            return 0.0 if high == float("inf") else high if high_closed else high - 1
        if high == float("inf"):
            return low if low_closed else low + 1
        return (low + high) / 2


_FLIPPED: Final[dict[str, str]] = {"relation_lt": "relation_gt", "relation_gt": "relation_lt",
                                   "relation_le": "relation_ge", "relation_ge": "relation_le",
                                   "relation_eq": "relation_eq"}


def condition_interval(expression: Expression, parameters: Mapping[str, Any]) -> Interval | None:
    """`data.f > 1000`, `params.x <= data.f`, `data.f == 3`: the range of `f` it holds for, else None.

    Parameters count as their current values: the result feeds designer warnings, which describe
    the definition as written."""
    node = unwrap(expression.tree)
    for operator in _FLIPPED:
        pair = _operands(node, operator)
        if pair is None:
            continue
        left, right = pair
        name, bound = _data_field(left), _constant(right, parameters)
        if name is None:
            name, bound, operator = _data_field(right), _constant(left, parameters), _FLIPPED[operator]
        if name is None or bound is None:
            return None
        if operator == "relation_lt":
            return Interval(name, high=bound)
        if operator == "relation_le":
            return Interval(name, high=bound, high_closed=True)
        if operator == "relation_gt":
            return Interval(name, low=bound)
        if operator == "relation_ge":
            return Interval(name, low=bound, low_closed=True)
        return Interval(name, bound, True, bound, True)
    return None


def _constant(node: Node, parameters: Mapping[str, Any]) -> float | None:
    value = _literal_value(node)
    if value is not None:
        return float(value[1]) if value[0] == "num" else None
    path = field_path(node, frozenset())
    if path is not None and len(path) == 2 and path[0] == "params":
        found = parameters.get(path[1])
        if isinstance(found, (int, float)) and not isinstance(found, bool):
            return float(found)
    return None

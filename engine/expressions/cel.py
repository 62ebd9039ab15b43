"""CEL expressions used by process definitions.

Gateway conditions, SLA policy selectors, computed values and escalation guards are written in
CEL (https://github.com/google/cel-spec), never in Python: CEL cannot reach the interpreter, the
file system or the network, always terminates, and is the same language designers meet in other
tools. This module is the only place that knows which CEL implementation we use (cel-python,
module ``celpy``); the rest of the engine sees :func:`compile_expression`, :class:`Expression`
and :class:`ExpressionError`.

What an expression can see
    Four top-level names (:data:`ROOT_NAMES`): ``data`` (the case data), ``steps`` (node id ->
    that step's output), ``params`` (process parameters) and ``case`` (priority, tier,
    started_at, ...). Anything else is reported: compiling still succeeds, so that the validator
    can list every unknown name from :attr:`Expression.references` at once, but evaluating
    refuses to run.

Optional fields
    Reading a field that is not set raises :class:`ExpressionError` ("field data.x is not set")
    instead of quietly comparing against null. Designers guard optional fields with ``has()``::

        has(data.vip_note) && data.vip_note.contains("lawyer")

    ``&&`` and ``||`` follow CEL: ``false && <error>`` is ``false``, so the guard protects the
    right-hand side.

Numbers
    Case data comes from forms and JSON, where ``7000`` and ``7000.5`` arrive as different types,
    but a designer writing ``data.amount > 5000`` means the number. Standard CEL refuses to mix
    ``int`` and ``double`` in some places, so we choose:

    * comparisons (``== != < <= > >=`` and ``in``) between ``int``, ``uint`` and ``double``
      compare numeric values exactly (this is what the current CEL spec prescribes);
    * arithmetic (``+ - * /``) mixing ``int`` and ``double`` gives a ``double`` (an extension to
      CEL: standard CEL raises "no such overload"); ``int`` with ``int`` stays ``int``, so
      ``data.reply_rounds + 1`` is still an integer and ``7 / 2`` is ``3``.

Dates
    Dates in case data are ISO-8601 strings and stay strings; convert them explicitly, e.g.
    ``timestamp(data.promised_at) < timestamp(case.started_at) + duration("48h")``. Python
    ``datetime``/``timedelta`` values in the scope become CEL timestamps/durations (celpy treats
    naive datetimes as UTC).

Speed
    A simulation evaluates hundreds of thousands of conditions. Most are in the plain subset
    that :mod:`engine.expressions.fastpath` evaluates directly on the case data (about 1 µs);
    it hands anything unusual back, and the general path below decides. On the general path
    three things keep an evaluation cheap: the text is parsed and transpiled to Python code
    once (:func:`compile_expression` is cached); each evaluation converts to CEL values only
    the fields the expression can reach (``data.tier`` converts ``data["tier"]``, not the
    whole case data); and the activation handed to the transpiled code is a small object
    instead of celpy's general ``Activation``. The transpiled code is celpy's own (its
    ``CompiledRunner`` output), so the semantics stay celpy's; we only run it in a private
    namespace, which also makes evaluation thread-safe (celpy's runner stores the activation
    in a module global).
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import keyword
import operator
import re
import textwrap
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, cast

import lark
import lark.exceptions
from celpy import celtypes
from celpy import evaluation as cel_evaluation
from celpy.celparser import CELParser

from engine.expressions.fastpath import Fallback, FastProgram, fast_program
from engine.limits import expression_limits

__all__ = [
    "ROOT_NAMES",
    "Expression",
    "ExpressionError",
    "compile_expression",
]

ROOT_NAMES: Final[frozenset[str]] = frozenset({"data", "steps", "params", "case"})

_OPTIONAL_FIELD_HINT: Final[str] = (
    "guard optional fields with has(), e.g. `has(data.x) && data.x > 0`"
)


class ExpressionError(ValueError):
    """A CEL expression that cannot be compiled or evaluated.

    Carries the expression text and, for syntax errors, the 1-based column (and line, for
    multi-line YAML block scalars) so the definition loader can point at the spot in the file.
    """

    def __init__(
        self,
        expression: str,
        message: str,
        *,
        column: int | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.expression = expression
        self.message = message
        self.column = column
        self.line = line
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        # One line: the CLI prints it under the file/node location without a traceback.
        text = " ".join(str(self.expression).split())
        where = ""
        if self.column is not None:
            where = (
                f" at line {self.line}, column {self.column}"
                if self.line and self.line > 1
                else f" at column {self.column}"
            )
        rendered = f"{self.message}{where} in expression `{text}`"
        if self.hint:
            rendered += f" (hint: {self.hint})"
        return rendered

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default exception pickling, and errors
        # cross process boundaries in Prefect task results.
        return (
            _rebuild_error,
            (self.expression, self.message, self.column, self.line, self.hint),
        )


def _rebuild_error(
    expression: str,
    message: str,
    column: int | None,
    line: int | None,
    hint: str | None,
) -> ExpressionError:
    return ExpressionError(expression, message, column=column, line=line, hint=hint)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@functools.cache
def _parser() -> lark.Lark:
    """Our own instance of celpy's CEL parser, producing trees the transpiler can decorate.

    celpy keeps a single parser in a class attribute, built with the tree class of whoever
    asked first; if another module created an ``Environment()`` before us, transpiling would
    fail. Building ours aside and restoring the attribute keeps both sides working.
    """
    saved = CELParser.CEL_PARSER
    CELParser.CEL_PARSER = None
    try:
        CELParser(tree_class=cel_evaluation.TranspilerTree)
        parser = CELParser.CEL_PARSER
    finally:
        CELParser.CEL_PARSER = saved
    assert parser is not None
    return parser


_PYTHON_WORDS: Final[dict[str, str]] = {
    "and": "CEL writes `and` as &&",
    "or": "CEL writes `or` as ||",
    "not": "CEL writes `not` as !",
    "True": "CEL booleans are lower case: true, false",
    "False": "CEL booleans are lower case: true, false",
    "None": "CEL writes None as null",
    "if": "CEL writes conditionals as `cond ? a : b`",
    "else": "CEL writes conditionals as `cond ? a : b`",
}


def _syntax_error(text: str, error: lark.exceptions.UnexpectedInput) -> ExpressionError:
    column = error.column if isinstance(error.column, int) and error.column > 0 else None
    line = error.line if isinstance(error.line, int) and error.line > 0 else None
    hint: str | None = "check brackets, quotes and operators"
    if isinstance(error, lark.exceptions.UnexpectedToken):
        token = error.token
        if token.type == "$END":
            message = "expression ends unexpectedly"
            hint = "something is missing at the end (an operand or a closing bracket?)"
            lines = text.rstrip().splitlines()
            line = len(lines)
            column = len(lines[-1]) + 1
        else:
            message = f"unexpected {token.value!r}"
            hint = _PYTHON_WORDS.get(str(token.value), hint)
    elif isinstance(error, lark.exceptions.UnexpectedCharacters):
        position = error.pos_in_stream
        char = text[position] if position is not None and 0 <= position < len(text) else "?"
        message = f"unexpected character {char!r}"
        if char == "=":
            hint = "compare with ==, CEL has no assignment"
        elif char in {"&", "|"}:
            hint = "CEL writes logical operators as && and ||"
    else:  # pragma: no cover - lark's other parse errors carry the same position data
        message = "syntax error"
    return ExpressionError(text, f"syntax error: {message}", column=column, line=line, hint=hint)


def _bracket_depth(text: str) -> tuple[int, int]:
    """Deepest nesting of (), [] and {} outside string literals, and the column reaching it.

    Checked before parsing: lark and celpy's transpiler recurse once per level, and Python's
    compiler refuses deep nesting with a raw SyntaxError."""
    depth = deepest = column = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in {'"""', "'''"} else char
            i += len(quote)
            while i < len(text) and not text.startswith(quote, i):
                i += 2 if text[i] == "\\" else 1
            i += len(quote)
            continue
        if char in "([{":
            depth += 1
            if depth > deepest:
                deepest, column = depth, i + 1
        elif char in ")]}":
            depth -= 1
        i += 1
    return deepest, column


def _tree_depth(tree: Tree) -> int:
    """Nesting of operators and calls (precedence-only wrapper nodes do not count), iteratively."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, lark.Tree):
            continue
        if not (node.data in _WRAPPERS and len(node.children) == 1):
            depth += 1
            deepest = max(deepest, depth)
        stack.extend((child, depth) for child in node.children)
    return deepest


def _parse(text: str) -> Tree:
    if not text.strip():
        raise ExpressionError(text, "expression is empty")
    limits = expression_limits()
    if len(text) > limits.max_length:
        raise ExpressionError(
            text[:60] + "...", f"expression is {len(text)} characters long; the limit is {limits.max_length}",
            hint="split it: compute parts into data fields with `compute`, or raise SVCFLOW_CEL_MAX_LENGTH")
    brackets, column = _bracket_depth(text)
    if brackets > limits.max_depth:
        raise ExpressionError(
            text, f"brackets nest {brackets} deep; the limit is {limits.max_depth}", column=column,
            hint="remove redundant parentheses, or raise SVCFLOW_CEL_MAX_DEPTH")
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as error:
        raise _syntax_error(text, error) from None
    except lark.exceptions.LarkError as error:  # pragma: no cover - defensive
        raise ExpressionError(text, f"syntax error: {error}") from None
    except RecursionError:  # pragma: no cover - the bracket limit keeps lark shallow
        raise ExpressionError(text, "expression nests too deeply") from None
    depth = _tree_depth(tree)
    if depth > limits.max_depth:
        raise ExpressionError(
            text, f"operators nest {depth} deep; the limit is {limits.max_depth}",
            hint="a long chain of && / || / + is deep too: test a list with `in [...]` or `.all()`, "
                 "or raise SVCFLOW_CEL_MAX_DEPTH")
    return tree


# --------------------------------------------------------------------------------------------
# Static checks and references
# --------------------------------------------------------------------------------------------

# Macros celpy evaluates; ``reduce``/``min`` appear in its transpiler but have no runtime.
_MACROS: Final[frozenset[str]] = frozenset({"all", "exists", "exists_one", "map", "filter"})
# Function and method names a designer may call: celpy's standard library, minus operators.
_FUNCTIONS: Final[frozenset[str]] = frozenset(
    name
    for name in cel_evaluation.base_functions
    if name.isidentifier() and not name.startswith("_")
) | {"has", "dyn"}
# Single-child rule nodes that only encode operator precedence.
_WRAPPERS: Final[frozenset[str]] = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
        "paren_expr",
    }
)

# Type names usable as values, as in `type(data.amount) == double`; they are not scope roots.
_TYPE_NAMES: Final[frozenset[str]] = frozenset(
    {"bool", "bytes", "double", "int", "list", "map", "null_type", "string", "type", "uint"}
)

Path = tuple[str, ...]
Tree = lark.Tree[lark.Token]
Node = Tree | lark.Token


def _position(node: Node) -> tuple[int | None, int | None]:
    if isinstance(node, lark.Token):
        return node.line, node.column
    meta = node.meta
    if getattr(meta, "empty", True):
        return None, None
    return meta.line, meta.column


def unwrap(node: Node) -> Node:
    while isinstance(node, lark.Tree) and node.data in _WRAPPERS and len(node.children) == 1:
        node = node.children[0]
    return node


def _string_literal(node: Node) -> str | None:
    node = unwrap(node)
    if isinstance(node, lark.Tree) and node.data == "literal":
        token = node.children[0]
        if isinstance(token, lark.Token) and token.type in {"STRING_LIT", "MLSTRING_LIT"}:
            return str(cel_evaluation.celstr(token))
    return None


def field_path(node: Node, bound: frozenset[str]) -> Path | None:
    """The dotted path a pure field selection reads (``data.a["b"].c``), else None.

    Only selections rooted at a top-level name count; a macro's own variable (the ``i`` in
    ``data.items.exists(i, i.amount > 10)``) is local and never a root.
    """
    node = unwrap(node)
    if not isinstance(node, lark.Tree):
        return None
    if node.data in {"ident", "dot_ident"}:
        name = str(node.children[0])
        return None if name in bound else (name,)
    if node.data == "member_dot":
        base = field_path(node.children[0], bound)
        return None if base is None else (*base, str(node.children[1]))
    if node.data == "member_index":
        base = field_path(node.children[0], bound)
        key = _string_literal(node.children[1])
        return None if base is None or key is None else (*base, key)
    return None


@dataclass
class _Analysis:
    """What compilation learns from walking the tree once."""

    text: str
    references: set[Path] = field(default_factory=set)

    def fail(self, node: Node, message: str, hint: str | None = None) -> None:
        line, column = _position(node)
        raise ExpressionError(self.text, message, column=column, line=line, hint=hint)

    def check_name(self, token: Node, name: str) -> None:
        """Refuse names that would reach Python rather than CEL.

        Dunder names are how sandbox escapes start; Python keywords (``class``, ``lambda``)
        are valid CEL identifiers but would break the transpiled Python code.
        """
        if name.startswith("__"):
            self.fail(token, f"name {name!r} is not allowed")
        if keyword.iskeyword(name):
            self.fail(token, f"name {name!r} is reserved", hint="choose another name")

    def visit(self, node: Node, bound: frozenset[str]) -> None:
        if isinstance(node, lark.Token):
            if node.type == "IDENT":
                self.check_name(node, str(node))
            return
        if node.data in {"ident", "dot_ident"}:
            self.check_name(node, str(node.children[0]))
        elif node.data == "member_dot" and str(node.children[1]).startswith("__"):
            self.check_name(node.children[1], str(node.children[1]))
        path = field_path(node, bound)
        if path is not None:
            self._check_path(node)
            self.references.add(path)
            return
        kind = node.data
        if kind == "member_object":
            self.fail(node, "message construction (`Type{field: value}`) is not supported")
        if kind == "member_dot_arg":
            self._method(node, bound)
            return
        if kind in {"ident_arg", "dot_ident_arg"}:
            self._function(node, bound)
            return
        for child in node.children:
            self.visit(child, bound)

    def _check_path(self, node: Node) -> None:
        node = unwrap(node)
        if not isinstance(node, lark.Tree):
            return
        if node.data in {"ident", "dot_ident"}:
            self.check_name(node, str(node.children[0]))
        elif node.data == "member_dot":
            # Field names are passed to Python as strings, so only dunders are refused.
            if str(node.children[1]).startswith("__"):
                self.check_name(node.children[1], str(node.children[1]))
            self._check_path(node.children[0])
        elif node.data == "member_index":
            self._check_path(node.children[0])

    def _arguments(self, node: Tree, index: int) -> list[Node]:
        if len(node.children) > index:
            exprlist = node.children[index]
            assert isinstance(exprlist, lark.Tree)
            return list(exprlist.children)
        return []

    def _method(self, node: Tree, bound: frozenset[str]) -> None:
        receiver, name_token = node.children[0], node.children[1]
        name = str(name_token)
        arguments = self._arguments(node, 2)
        if name in _MACROS:
            variable = unwrap(arguments[0]) if arguments else None
            if (
                len(arguments) != 2
                or not isinstance(variable, lark.Tree)
                or variable.data != "ident"
            ):
                self.fail(
                    name_token,
                    f"{name}() takes a variable name and an expression",
                    hint=f"e.g. `data.items.{name}(item, item.amount > 100)`",
                )
            assert isinstance(variable, lark.Tree)
            variable_name = str(variable.children[0])
            self.check_name(variable, variable_name)
            self.visit(receiver, bound)
            self.visit(arguments[1], bound | {variable_name})
            return
        if name not in _FUNCTIONS or name in {"has", "dyn"}:
            self._unknown_function(name_token, name)
        self.visit(receiver, bound)
        for argument in arguments:
            self.visit(argument, bound)

    def _function(self, node: Tree, bound: frozenset[str]) -> None:
        name_token = node.children[0]
        name = str(name_token)
        arguments = self._arguments(node, 1)
        if name not in _FUNCTIONS:
            self._unknown_function(name_token, name)
        if name == "has":
            selection = unwrap(arguments[0]) if len(arguments) == 1 else None
            if not (
                isinstance(selection, lark.Tree)
                and selection.data in {"member_dot", "member_index"}
            ):
                self.fail(
                    name_token,
                    "has() takes one field selection",
                    hint="e.g. `has(data.refund_amount)`",
                )
        for argument in arguments:
            self.visit(argument, bound)

    def _unknown_function(self, token: Node, name: str) -> None:
        if name.startswith("__"):
            self.fail(token, f"name {name!r} is not allowed")
        known = ", ".join(sorted(_FUNCTIONS - {"dyn"} | _MACROS))
        self.fail(token, f"unknown function {name!r}", hint=f"available: {known}")


# --------------------------------------------------------------------------------------------
# Evaluation: numeric overrides, a light activation, scope conversion
# --------------------------------------------------------------------------------------------

_NUMBER_TYPES: Final = (celtypes.IntType, celtypes.UintType, celtypes.DoubleType)
_INT64_MIN: Final = -(2**63)
_INT64_LIMIT: Final = 2**63


def _int_type(source: Any, *args: Any) -> Any:
    """``celtypes.IntType`` without its per-call decorator cost for plain in-range ints.

    Transpiled code rebuilds every integer literal on every evaluation, and
    ``celtypes.IntType`` wraps a fresh range-checking function each time (~10 µs); that
    was a third of a typical condition's cost.
    """
    if type(source) is int and not args and _INT64_MIN <= source < _INT64_LIMIT:
        return int.__new__(celtypes.IntType, source)
    return celtypes.IntType(source, *args)


def _mixed_numbers(a: Any, b: Any) -> bool:
    return type(a) is not type(b) and isinstance(a, _NUMBER_TYPES) and isinstance(b, _NUMBER_TYPES)


def _plain_number(value: Any) -> int | float:
    return float(value) if isinstance(value, float) else int(value)


def _comparison(
    compare: Callable[[Any, Any], Any], *, equality: bool = False
) -> Callable[[Any, Any], Any]:
    """celpy's ``bool_lt``/``bool_eq``/... with numeric mixing, minus their per-call cost.

    celpy builds a fresh ``functools.wraps`` wrapper on every comparison; otherwise this is
    the same logic: errors pass through, the operator decides, the result becomes a
    ``BoolType``. For ``==``/``!=`` a null on either side compares by identity, as the CEL
    spec says (celpy raises for ``data.count == null`` when count is an int).
    """

    def cel_compare(a: Any, b: Any) -> Any:
        if isinstance(a, cel_evaluation.CELEvalError):
            return a
        if isinstance(b, cel_evaluation.CELEvalError):
            return b
        if equality and (a is None or b is None):
            return celtypes.BoolType(compare(a is None, b is None))
        if _mixed_numbers(a, b):
            # Python compares int with float exactly (no rounding of large ints).
            return celtypes.BoolType(compare(_plain_number(a), _plain_number(b)))
        outcome = compare(a, b)
        if outcome is NotImplemented:
            return outcome
        return celtypes.BoolType(bool(outcome))

    return cel_compare


def _arithmetic(
    combine: Callable[[Any, Any], Any],
) -> Callable[[Any, Any], Any]:
    def numeric_aware(a: Any, b: Any) -> Any:
        if _mixed_numbers(a, b) and (
            isinstance(a, celtypes.DoubleType) or isinstance(b, celtypes.DoubleType)
        ):
            return celtypes.DoubleType(combine(float(a), float(b)))
        return combine(a, b)

    return numeric_aware


def _operator_in(item: Any, container: Any) -> Any:
    """celpy's ``operator_in`` with numeric equality (``2.0 in [1, 2]`` is true).

    Same three outcomes as celpy: true if any member equals the item, an error if none
    does and some comparison had no overload, else false. celpy's version also spends
    ~20 µs per call building a ``typing`` generic for a ``cast``.
    """
    if isinstance(item, cel_evaluation.CELEvalError):
        return item
    if isinstance(container, cel_evaluation.CELEvalError):
        return container
    outcome: Any = celtypes.BoolType(False)
    for candidate in container:
        try:
            if _mixed_numbers(item, candidate):
                equal = _plain_number(item) == _plain_number(candidate)
            else:
                equal = candidate == item
            if equal:
                return celtypes.BoolType(True)
        except TypeError as error:
            outcome = cel_evaluation.CELEvalError("no such overload", error.__class__, error.args)
    return outcome


def _quantifier(
    combine: Callable[[Any, Any], Any], start: bool
) -> Callable[[Any, str, Callable[[Any], Any], Callable[[Any], Any]], Any]:
    """celpy's ``exists()``/``all()`` macros, keeping an item's error as the result.

    celpy folds the items the same way but then wraps the fold in ``BoolType()``, which turns
    "field 'discount' is not set" on an item into a meaningless "no such overload".
    """

    def quantifier(
        activation: Any,
        bind_variable: str,
        cel_expr: Callable[[Any], Any],
        cel_gen: Callable[[Any], Any],
    ) -> Any:
        outcome: Any = celtypes.BoolType(start)
        for value in cel_gen(activation):
            item = activation.nested_activation(vars={bind_variable: value})
            verdict = cel_evaluation.result(item, cel_expr)
            if isinstance(outcome, cel_evaluation.CELEvalError) and isinstance(
                verdict, cel_evaluation.CELEvalError
            ):
                continue  # two errors: report the first (celpy's fold would raise here)
            outcome = combine(outcome, verdict)
        return outcome

    return quantifier


class _TooCostly(Exception):
    """Raised inside a transpiled program when its step budget runs out; deliberately not a
    ValueError/TypeError, which celpy would turn into a CEL error value and carry on."""


# Steps left for the evaluation running in this context (a list, so macros can decrement it).
_STEPS_LEFT: contextvars.ContextVar[list[int]] = contextvars.ContextVar("cel_steps_left")


def _charged(items: Iterable[Any]) -> Iterator[Any]:
    left = _STEPS_LEFT.get(None)
    for item in items:
        if left is not None:
            left[0] -= 1
            if left[0] < 0:
                raise _TooCostly
        yield item


def _budgeted(macro: Callable[..., Any]) -> Callable[..., Any]:
    """A macro (map, filter, all, exists, exists_one) whose every iteration costs one step:
    nested macros over literal lists multiply, e.g. seven nested `.map()` over ten items
    are ten million iterations, seconds or minutes of work from 200 characters."""

    def run(activation: Any, bind_variable: str, cel_expr: Callable[[Any], Any],
            cel_gen: Callable[[Any], Iterable[Any]]) -> Any:
        return macro(activation, bind_variable, cel_expr, lambda inner: _charged(cel_gen(inner)))

    return run


class _Overlay(types.ModuleType):
    """A copy of a module with some attributes replaced, for the transpiled code's globals.

    Attributes are copied rather than looked up through ``__getattr__`` because every
    operator in a transpiled program reads them (``celpy.celtypes.StringType``).
    """

    def __init__(self, base: types.ModuleType, **replacements: Any) -> None:
        super().__init__(base.__name__)
        self.__dict__.update(
            {name: value for name, value in vars(base).items() if not name.startswith("__")}
        )
        self.__dict__.update(replacements)


def _program_namespace() -> dict[str, Any]:
    """Globals for transpiled programs: celpy's own, with the numeric rules swapped in.

    The transpiled code names its helpers by module path (``celpy.evaluation.bool_lt``,
    ``operator.add``), so binding ``celpy`` and ``operator`` to overlays changes those rules
    for our programs only, leaving celpy untouched for anyone else in the process.
    """
    import celpy

    evaluation_overlay = _Overlay(
        cel_evaluation,
        bool_lt=_comparison(operator.lt),
        bool_le=_comparison(operator.le),
        bool_gt=_comparison(operator.gt),
        bool_ge=_comparison(operator.ge),
        bool_eq=_comparison(operator.eq, equality=True),
        bool_ne=_comparison(operator.ne, equality=True),
        operator_in=_operator_in,
        macro_exists=_budgeted(_quantifier(celtypes.logical_or, start=False)),
        macro_all=_budgeted(_quantifier(celtypes.logical_and, start=True)),
        macro_map=_budgeted(cel_evaluation.macro_map),
        macro_filter=_budgeted(cel_evaluation.macro_filter),
        macro_exists_one=_budgeted(cel_evaluation.macro_exists_one),
    )
    namespace = dict(vars(cel_evaluation))
    celtypes_overlay = _Overlay(celtypes, IntType=_int_type)
    namespace["celpy"] = _Overlay(celpy, evaluation=evaluation_overlay, celtypes=celtypes_overlay)
    namespace["operator"] = _Overlay(
        operator,
        add=_arithmetic(operator.add),
        sub=_arithmetic(operator.sub),
        mul=_arithmetic(operator.mul),
        truediv=_arithmetic(operator.truediv),
    )
    # Defence in depth: the generated code needs only isinstance (in has()).
    namespace["__builtins__"] = {"isinstance": isinstance}
    return namespace


_NAMESPACE: Final[dict[str, Any]] = _program_namespace()


class _Activation:
    """The part of celpy's ``Activation`` that transpiled programs use, minus its cost.

    celpy's ``Activation`` clones name containers, resolves package prefixes and logs on
    every variable read; the transpiled code only needs attribute access to variables,
    nested activations for macro variables, and function lookup.
    """

    __slots__ = ("_variables",)

    def __init__(self, variables: dict[str, Any]) -> None:
        self._variables = variables

    def __getattr__(self, name: str) -> Any:
        try:
            return self._variables[name]
        except KeyError:
            if name in _TYPE_NAMES:
                return cel_evaluation.base_functions[name]
            raise NameError(name) from None

    def nested_activation(
        self, annotations: Any = None, vars: Mapping[str, Any] | None = None
    ) -> _Activation:
        return _Activation({**self._variables, **(vars or {})})

    def resolve_variable(self, name: str) -> Any:
        if name in self._variables:
            return self._variables[name]
        return cel_evaluation.base_functions[name]

    def resolve_function(self, name: str) -> Any:
        return cel_evaluation.base_functions[name]


class _Unsupported(Exception):
    """A scope value with no CEL counterpart; carries the path for the message."""

    def __init__(self, path: Path, value: Any) -> None:
        super().__init__(path, value)
        self.path = path
        self.value = value


_CEL_VALUE_TYPES: Final = (
    celtypes.BoolType,
    celtypes.IntType,
    celtypes.UintType,
    celtypes.DoubleType,
    celtypes.StringType,
    celtypes.BytesType,
    celtypes.ListType,
    celtypes.MapType,
    celtypes.TimestampType,
    celtypes.DurationType,
)


def _to_cel(value: Any, path: Path) -> Any:
    """Python scope value -> celpy value (faster than ``celpy.json_to_cel`` on our data)."""
    kind = type(value)
    if kind is str:
        return celtypes.StringType(value)
    if kind is bool:
        return celtypes.BoolType(value)
    if kind is int:
        if not _INT64_MIN <= value < _INT64_LIMIT:
            raise _Unsupported(path, value)
        return int.__new__(celtypes.IntType, value)
    if kind is float:
        return celtypes.DoubleType(value)
    if value is None:
        return None
    if kind is dict:
        return _map_to_cel(value, path)
    if kind is list or kind is tuple:
        return _list_to_cel(value, path)
    # Less common kinds: values already converted, subclasses (str enums), other containers.
    if isinstance(value, _CEL_VALUE_TYPES):
        return value
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, int):
        return _to_cel(int(value), path)
    if isinstance(value, (float, Decimal)):
        return celtypes.DoubleType(float(value))
    if isinstance(value, datetime.datetime):
        return celtypes.TimestampType(value)
    if isinstance(value, datetime.timedelta):
        return celtypes.DurationType(value)
    if isinstance(value, Mapping):
        return _map_to_cel(value, path)
    if isinstance(value, (list, tuple)):
        return _list_to_cel(value, path)
    if isinstance(value, bytes):
        return celtypes.BytesType(value)
    raise _Unsupported(path, value)


def _map_to_cel(value: Mapping[Any, Any], path: Path) -> celtypes.MapType:
    converted = celtypes.MapType()
    for key, item in value.items():
        dict.__setitem__(converted, _to_cel(key, path), _to_cel(item, (*path, str(key))))
    return converted


def _list_to_cel(value: Iterable[Any], path: Path) -> celtypes.ListType:
    return celtypes.ListType([_to_cel(item, path) for item in value])


# A "shape" says how much of a scope value an expression can reach: _WHOLE, or a dict from
# field name to the shape of that field.
_WHOLE: Final = None
Shape = dict[str, Any] | None


def _shape(paths: Iterable[Path]) -> Shape:
    shape: dict[str, Any] = {}
    for path in sorted(paths, key=len):
        if not path:
            return _WHOLE
        node: dict[str, Any] | None = shape
        for part in path[:-1]:
            assert node is not None
            child = node.get(part, {})
            if child is _WHOLE:
                node = None
                break
            node[part] = child
            node = child
        if node is not None:
            node[path[-1]] = _WHOLE
    return shape


def _convert_reachable(value: Any, shape: Shape, path: Path) -> Any:
    """Convert only the fields of ``value`` the expression can read.

    Missing fields stay missing, so ``has()`` and the "not set" error behave exactly as if
    the whole value had been converted.
    """
    if shape is _WHOLE or not isinstance(value, Mapping):
        return _to_cel(value, path)
    converted = celtypes.MapType()
    for name, sub_shape in shape.items():
        if name in value:
            dict.__setitem__(
                converted,
                celtypes.StringType(name),
                _convert_reachable(value[name], sub_shape, (*path, name)),
            )
    return converted


_CEL_TYPE_NAMES: Final[tuple[tuple[type, str], ...]] = (
    (bool, "bool"),
    (celtypes.UintType, "uint"),
    (int, "int"),
    (float, "double"),
    (str, "string"),
    (bytes, "bytes"),
    (datetime.datetime, "timestamp"),
    (datetime.timedelta, "duration"),
    (list, "list"),
    (dict, "map"),
)


def _cel_type_name(value: Any) -> str:
    if value is None:
        return "null"
    for python_type, name in _CEL_TYPE_NAMES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def _from_cel(value: Any) -> Any:
    """celpy value -> plain Python, so callers never see celpy's types."""
    if value is None:
        return None
    if isinstance(value, bool):  # some celpy helpers return plain bools
        return value
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, dict):
        return {_from_cel(key): _from_cel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_cel(item) for item in value]
    if isinstance(value, datetime.datetime):
        return datetime.datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=value.tzinfo,
        )
    if isinstance(value, datetime.timedelta):
        return datetime.timedelta(
            days=value.days, seconds=value.seconds, microseconds=value.microseconds
        )
    if isinstance(value, celtypes.TypeType):
        return str(value)
    return value


# celpy transpiles has() to a plain Python bool, which its own &&, ||, ! and all() reject
# ("has(data.x) && data.x > 1" fails when x is missing). Wrapping it in BoolType fixes that;
# tests cover it, so a celpy release that changes the template shows up at once.
_HAS_LINE: Final = re.compile(
    r"^(ex_\d+ = lambda activation: )"
    r"(not isinstance\(celpy\.evaluation\.result\(activation, ex_\d+_h\), CELEvalError\))$"
)


def _transpile(text: str, tree: Tree) -> Callable[[_Activation], Any]:
    """Turn the tree into a Python function via celpy's transpiler.

    celpy's ``CompiledRunner`` ``exec``s the whole generated module on every evaluation,
    redefining each sub-expression's lambda. The generated code is a run of ``ex_N = lambda
    activation: ...`` definitions followed by one ``CEL = ...`` line that evaluates the top
    node, so we execute the definitions once and keep only that last line as the function
    body.
    """
    try:
        transpiler = cel_evaluation.Transpiler(
            ast=cast(cel_evaluation.TranspilerTree, tree), activation=cel_evaluation.Activation()
        )
        transpiler.transpile()
    except (cel_evaluation.CELSyntaxError, cel_evaluation.CELUnsupportedError) as error:
        raise ExpressionError(
            text,
            f"unsupported expression: {error.args[0]}",
            column=getattr(error, "column", None),
            line=getattr(error, "line", None),
        ) from None
    lines = [
        _HAS_LINE.sub(r"\1celpy.celtypes.BoolType(\2)", line)
        for line in transpiler.source_text.rstrip("\n").split("\n")
    ]
    if lines[-1].startswith("CEL = ") and not any(line.startswith("CEL") for line in lines[:-1]):
        definitions, body = lines[:-1], ["    " + lines[-1]]
    else:  # pragma: no cover - a celpy release that shapes its output differently
        definitions, body = [], [textwrap.indent("\n".join(lines), "    ")]
    source = "\n".join(
        [*definitions, "def cel_program(base_activation):", *body, "    return CEL", ""]
    )
    namespace = dict(_NAMESPACE)
    try:
        code = compile(source, "<cel>", "exec")
    except SyntaxError:  # pragma: no cover - the static checks should make this unreachable
        raise ExpressionError(text, "expression cannot be compiled") from None
    exec(code, namespace)  # our transpiled CEL only; its only builtin is isinstance
    program: Callable[[_Activation], Any] = namespace["cel_program"]
    return program


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A compiled CEL expression; immutable and shared by every instance of a process.

    Build it with :func:`compile_expression`, which caches, rather than calling the class.
    ``tree`` is the parsed syntax tree, the one the validator's static analysis
    (:mod:`engine.expressions.static`) reads. ``references`` lists every dotted field path the expression reads (``("data", "tier")``),
    including paths rooted at unknown names, so the validator can check them against the
    process's data schema without evaluating anything.
    """

    text: str
    references: frozenset[Path] = field(init=False, compare=False)
    tree: Tree = field(init=False, compare=False, repr=False)
    _program: Callable[[_Activation], Any] = field(init=False, compare=False, repr=False)
    _shapes: tuple[tuple[str, Shape], ...] = field(init=False, compare=False, repr=False)
    _fast: FastProgram | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ExpressionError(
                repr(self.text),
                f"expression must be text, got {type(self.text).__name__}",
                hint='quote it in YAML, e.g. condition: "true"',
            )
        tree = _parse(self.text)
        analysis = _Analysis(self.text)
        analysis.visit(tree, _TYPE_NAMES)
        references = frozenset(analysis.references)
        roots = sorted({path[0] for path in references})
        shapes = tuple(
            (root, _shape(path[1:] for path in references if path[0] == root)) for root in roots
        )
        object.__setattr__(self, "references", references)
        object.__setattr__(self, "tree", tree)
        object.__setattr__(self, "_shapes", shapes)
        object.__setattr__(self, "_fast", fast_program(tree, references))
        object.__setattr__(self, "_program", _transpile(self.text, tree))

    def __reduce__(self) -> tuple[Any, ...]:
        # The transpiled program cannot be pickled; recompiling from the text can.
        return (compile_expression, (self.text,))

    @property
    def unknown_names(self) -> frozenset[str]:
        """Top-level names outside :data:`ROOT_NAMES`; evaluation refuses to run with any."""
        return frozenset(path[0] for path in self.references) - ROOT_NAMES

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """Evaluate against ``scope`` (``data``, ``steps``, ``params``, ``case``).

        A root missing from ``scope`` counts as an empty map, so its fields read as not set.
        Returns plain Python values: bool, int, float, str, bytes, list, dict, None, or
        datetime/timedelta for timestamps and durations.
        """
        fast = self._fast
        if fast is not None:
            try:
                return fast(scope)
            except (Fallback, RecursionError):
                pass  # outside the plain subset: the general path gives CEL's answer or error
        return self.evaluate_general(scope)

    def evaluate_general(self, scope: Mapping[str, Any]) -> Any:
        """:meth:`evaluate` through celpy alone, without the fast path (which must agree with it)."""
        variables: dict[str, Any] = {}
        for root, shape in self._shapes:
            if root not in ROOT_NAMES:
                raise ExpressionError(
                    self.text,
                    f"unknown name {root!r}",
                    hint="expressions may use only " + ", ".join(sorted(ROOT_NAMES)),
                )
            value = scope.get(root, {})
            try:
                variables[root] = _convert_reachable(value, shape, (root,))
            except _Unsupported as error:
                raise ExpressionError(
                    self.text,
                    f"{'.'.join(error.path)} holds a {type(error.value).__name__}, "
                    "which CEL cannot use",
                    hint="case data must be JSON-like: str, int, float, bool, None, list, dict",
                ) from None
        steps = expression_limits().max_steps
        budget = _STEPS_LEFT.set([steps])
        try:
            result = self._program(_Activation(variables))
        except _TooCostly:
            raise ExpressionError(
                self.text, f"evaluation stopped after {steps:,} macro iterations",
                hint="nested map/filter/all/exists multiply their iterations: flatten them, or raise "
                     "SVCFLOW_CEL_MAX_STEPS") from None
        except RecursionError:
            raise ExpressionError(self.text, "expression nests too deeply") from None
        except Exception as error:  # celpy lets some Python errors through result()
            raise self._python_error(error) from None
        finally:
            _STEPS_LEFT.reset(budget)
        if isinstance(result, cel_evaluation.CELEvalError):
            raise self._evaluation_error(result, scope) from None
        return _from_cel(result)

    def evaluate_bool(self, scope: Mapping[str, Any]) -> bool:
        """Evaluate a condition; anything but true/false is a definition error, not falsy."""
        result = self.evaluate(scope)
        if not isinstance(result, bool):
            raise ExpressionError(
                self.text,
                f"condition must evaluate to true or false, "
                f"but gave {_cel_type_name(result)} {result!r}",
                hint="compare explicitly, e.g. `data.flag == true` or `size(data.items) > 0`",
            )
        return result

    def _missing_field(self, scope: Mapping[str, Any], key: Any) -> str | None:
        """The first referenced path that the scope does not have, preferring ``key``."""
        candidates: list[str] = []
        for path in sorted(self.references):
            current: Any = scope.get(path[0], {})
            for depth, part in enumerate(path[1:], start=2):
                if isinstance(current, Mapping) and part in current:
                    current = current[part]
                    continue
                if isinstance(current, Mapping):
                    dotted = ".".join(path[:depth])
                    if isinstance(key, str) and part == str(key):  # a map indexed by an int has no such path
                        return dotted
                    candidates.append(dotted)
                break
        return candidates[0] if candidates else None

    def _evaluation_error(
        self, error: cel_evaluation.CELEvalError, scope: Mapping[str, Any]
    ) -> ExpressionError:
        args = error.args
        message = str(args[0]) if args else "evaluation failed"
        cause = args[1] if len(args) > 1 else None
        details = args[2] if len(args) > 2 else ()
        if cause is KeyError:
            key = details[0] if details else None
            missing = self._missing_field(scope, key)
            if missing is not None:
                return ExpressionError(
                    self.text, f"field {missing} is not set", hint=_OPTIONAL_FIELD_HINT
                )
            return ExpressionError(
                self.text, f"field {key!r} is not set", hint=_OPTIONAL_FIELD_HINT
            )
        if cause is TypeError:
            # celpy's detail text names its internal classes; it would confuse designers.
            return ExpressionError(
                self.text,
                "operation not defined for these value types",
                hint="CEL converts no types implicitly; use int(), double() or string()",
            )
        if cause is ZeroDivisionError:
            return ExpressionError(self.text, "division by zero")
        if cause is NameError:
            name = details[0] if details else "?"
            return ExpressionError(self.text, f"unknown name {name!r}")
        if cause in {ValueError, OverflowError}:
            detail = f": {details[0]}" if details else ""
            return ExpressionError(self.text, f"invalid value{detail}")
        return ExpressionError(self.text, message)

    def _python_error(self, error: Exception) -> ExpressionError:
        if isinstance(error, AttributeError):
            return ExpressionError(
                self.text,
                "field selection on a value that is not a map",
                hint="check the field path and the type of each step",
            )
        return ExpressionError(self.text, f"evaluation failed: {type(error).__name__}: {error}")


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str) -> Expression:
    """Parse and check ``text`` once; definitions reuse the same expressions constantly."""
    return Expression(text)

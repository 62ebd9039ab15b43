"""Simple FEEL and JUEL conditions from modeler files, translated to CEL.

Modelers write sequence-flow conditions as JUEL (`${amount > 1000 && tier == 'gold'}`, Camunda 7)
or FEEL (`= amount > 1000 and tier = "gold"`, Camunda 8 / Zeebe). svcflow runs CEL and never
evaluates foreign code, so only the simple kind is translated, by a small parser rather than by
text substitution: comparisons, and/or/not, parentheses, string/number/boolean/null literals and
variable paths (a variable `x` is the case field `data.x`, camelCase names in snake_case). Anything else (function calls, ranges,
`empty`, arithmetic...) raises FeelError with the column, and the import reports the flow with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from engine.errors import SvcflowError
from interop.bpmn_names import snake


class FeelError(SvcflowError):
    """A condition outside the simple kind svcflow translates."""


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>=!()])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
""", re.VERBOSE)
_WORD_OPS = {"and": "&&", "or": "||", "not": "!", "eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=",
             "ge": ">="}
_COMPARISONS = {"==", "!=", "<", ">", "<=", ">="}
_LITERALS = {"true": "true", "false": "false", "null": "null"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int


def _tokens(text: str, offset: int) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise FeelError(f"cannot read {text[pos:pos + 12]!r} at column {pos + offset + 1}",
                            hint="only comparisons, and/or/not, literals and variable names are translated")
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "name" and value in _WORD_OPS:
            kind, value = "op", _WORD_OPS[value]
        if kind != "space":
            out.append(_Token(kind, value, pos + offset + 1))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, tokens: list[_Token], source: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.source = source

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise FeelError(f"condition {self.source!r} ends too early", hint="complete the expression")
        self.pos += 1
        return token

    def fail(self, token: _Token, why: str) -> FeelError:
        return FeelError(f"{why} {token.text!r} at column {token.column} of {self.source!r}",
                         hint="write the condition in CEL in the svcflow definition instead")

    def expression(self) -> str:
        left = self.conjunction()
        while (token := self.peek()) is not None and token.text == "||":
            self.take()
            left = f"{left} || {self.conjunction()}"
        return left

    def conjunction(self) -> str:
        left = self.negation()
        while (token := self.peek()) is not None and token.text == "&&":
            self.take()
            left = f"{left} && {self.negation()}"
        return left

    def negation(self) -> str:
        token = self.peek()
        if token is not None and token.text == "!":
            self.take()
            return f"!{self.negation_operand()}"
        return self.comparison()

    def negation_operand(self) -> str:
        token = self.peek()
        if token is not None and token.text == "(":
            self.take()
            inner = self.expression()
            self.expect(")")
            return f"({inner})"
        return self.negation()

    def comparison(self) -> str:
        left = self.operand()
        token = self.peek()
        if token is not None and token.kind == "op" and token.text in _COMPARISONS | {"="}:
            self.take()
            op = "==" if token.text == "=" else token.text
            return f"{left} {op} {self.operand()}"
        return left

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise self.fail(token, f"expected {text!r}, found")

    def operand(self) -> str:
        token = self.take()
        if token.text == "(":
            inner = self.expression()
            self.expect(")")
            return f"({inner})"
        if token.kind == "number":
            return token.text
        if token.kind == "string":
            body = re.sub(r"\\(.)", r"\1", token.text[1:-1])
            return json.dumps(body, ensure_ascii=False)
        if token.kind == "name":
            nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                raise self.fail(token, "function calls are not translated:")
            if token.text in _LITERALS:
                return _LITERALS[token.text]
            path = token.text[len("data."):] if token.text.startswith("data.") else token.text
            return "data." + ".".join(snake(part) for part in path.split("."))
        raise self.fail(token, "unexpected")


def variables(cel: str) -> list[str]:
    """The case fields a translated condition reads (first path segment after `data.`)."""
    found: list[str] = []
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|\bdata\.([A-Za-z_][A-Za-z0-9_]*)', cel):
        name = match.group(1)
        if name and name not in found:
            found.append(name)
    return found


def to_cel(text: str, language: str | None = None) -> str:
    """CEL for a FEEL or JUEL condition; `language` is the expression's @language, if any."""
    source = text.strip()
    offset = len(text) - len(text.lstrip())
    lang = (language or "").lower()
    if source.startswith(("${", "#{")) and source.endswith("}"):
        source, offset = source[2:-1], offset + 2
    elif source.startswith("="):
        source, offset = source[1:], offset + 1
    elif lang and not any(word in lang for word in ("feel", "juel", "cel")):
        raise FeelError(f"conditions in {language!r} are not translated",
                        hint="use a FEEL or JUEL condition, or write it in CEL in the svcflow definition")
    if not source.strip():
        raise FeelError("empty condition", hint="give the condition or mark the flow as the default")
    parser = _Parser(_tokens(source, offset), text.strip())
    result = parser.expression()
    rest = parser.peek()
    if rest is not None:
        raise parser.fail(rest, "unexpected")
    return result


__all__ = ["to_cel", "variables", "FeelError"]

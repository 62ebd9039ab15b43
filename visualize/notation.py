"""How a chart words things: SLA targets per policy, conditions, escalation ladders, role names.

A manager reads the chart in a review meeting, not the YAML: so a target reads "platinum/gold
2h · others 8h" (not "SLA 2h/8h"), a condition is printed whole (wrapped, never cut), an
editable default is marked as such with its value, a ladder is printed once and referenced by a
letter from every step that uses it, and roles are named as the lanes name them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from engine.definition.model import CaseClock, EscalationLevel, HumanTask, Policy, ProcessDefinition, SlaSpec

EDITABLE_MARK = "✎"
ESCALATION_GLYPH = "⚠"
_IN_LIST = re.compile(r'^data\.(\w+)\s+in\s+\[([^\]]*)\]$')
_EQUALS = re.compile(r'^data\.(\w+)\s*==\s*"([^"]*)"$')
_PARAM = re.compile(r"\bparams\.(\w+)")


def text_width(text: str) -> int:
    """Width in half-em columns: a Chinese character is as wide as two Latin letters."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` columns, broken at spaces, or anywhere inside Chinese text.

    Nothing is cut: a chart that hides the end of a condition hides what decides the path.
    """
    lines: list[str] = []
    current = ""
    for word in re.findall(r"[^\s/]+/?\s*|/\s*", text):  # breaks after spaces and slashes
        lone_mark = len(word.strip()) == 1 and not word.strip().isalnum()  # "]" never starts a line
        long_run = text_width(word.rstrip()) > width and text_width(word) > len(word)  # a long Chinese run
        if current and text_width(current + word.rstrip()) > width and not lone_mark and not long_run:
            lines.append(current.rstrip())
            current = ""
        while long_run and text_width(current + word.rstrip()) > width:  # split it, filling the open line first
            head = ""
            for char in word:
                if text_width(current + head + char) > width:
                    break
                head += char
            rest = word[len(head):].strip()
            if len(rest) == 1 and not rest.isalnum():
                break  # one closing mark overflows rather than standing alone on a line
            if not head and not current:
                break  # a single character wider than the line
            lines.append((current + head).rstrip())
            current = ""
            word = word[len(head):]
        current += word
    if current.strip():
        lines.append(current.rstrip())
    return lines or [""]


def condition_text(when: str, parameters: dict[str, object]) -> str:
    """A condition as a reader scans it: no `data.`/`case.` noise; parameters marked editable with
    their default value, e.g. "reply_rounds < max_reply_rounds✎3"."""
    def param(match: re.Match[str]) -> str:
        name = match.group(1)
        value = parameters.get(name)
        shown = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        return f"{name}{EDITABLE_MARK}{shown}"

    text = _PARAM.sub(param, when)
    text = text.replace("data.", "").replace("case.", "").replace("steps.", "")
    return " ".join(text.split())


def audience(when: str | None, parameters: dict[str, object]) -> str:
    """Who a policy applies to, in the fewest words: "platinum/gold", "critical", or the condition."""
    if when is None:
        return "others"
    text = " ".join(when.split())
    found = _IN_LIST.match(text)
    if found:
        values = [v.strip().strip("'\"") for v in found.group(2).split(",") if v.strip()]
        return "/".join(values)
    found = _EQUALS.match(text)
    if found:
        return found.group(2)
    return condition_text(text, parameters)


def policy_text(policies: Sequence[Policy], parameters: dict[str, object]) -> str:
    """"platinum/gold 2h · others 8h"; a single unconditional target is just "1h"."""
    if len(policies) == 1 and policies[0].when is None:
        return policies[0].target.replace(" ", "")
    return " · ".join(f"{audience(p.when, parameters)} {p.target.replace(' ', '')}" for p in policies)


def sla_text(sla: SlaSpec, parameters: dict[str, object] | None = None) -> str:
    """A step's targets per policy (first matching policy wins at run time)."""
    return "SLA " + policy_text(sla.effective_policies(), parameters or {})


def role_name(definition: ProcessDefinition, role: str) -> str:
    """A role as its lane names it (Chinese), falling back to the id for a role with no lane."""
    for lane in definition.lanes:
        if lane.id == role:
            return lane.name.zh
    return role


@dataclass(frozen=True)
class LadderRef:
    """A ladder printed once in the legend and referenced by `letter` from steps and clocks."""

    letter: str
    name: str
    levels: tuple[EscalationLevel, ...]


def _ladder_key(definition: ProcessDefinition, owner: str, escalation: str | list[EscalationLevel]) -> str | None:
    if isinstance(escalation, str):
        return escalation if definition.ladders.get(escalation) else None
    return f"{owner} (inline)" if escalation else None


def ladder_refs(definition: ProcessDefinition) -> dict[str, LadderRef]:
    """Ladders in use, by key (ladder name, or "<owner> (inline)"), lettered A, B, C... in order of use:
    case clocks first, then steps in definition order."""
    owners: list[tuple[str, str | list[EscalationLevel]]] = [(c.id, c.escalation) for c in definition.clocks]
    owners += [(n.id, n.sla.escalation) for n in definition.nodes if isinstance(n, HumanTask) and n.sla]
    refs: dict[str, LadderRef] = {}
    for owner, escalation in owners:
        key = _ladder_key(definition, owner, escalation)
        if key is None or key in refs:
            continue
        letter = chr(ord("A") + len(refs)) if len(refs) < 26 else f"L{len(refs) + 1}"
        refs[key] = LadderRef(letter, key, tuple(definition.ladder(escalation)))
    return refs


def ladder_ref_of(definition: ProcessDefinition, owner: str, escalation: str | list[EscalationLevel],
                  refs: dict[str, LadderRef]) -> LadderRef | None:
    key = _ladder_key(definition, owner, escalation)
    return refs.get(key) if key is not None else None


def ladder_lines(definition: ProcessDefinition, levels: Sequence[EscalationLevel]) -> list[str]:
    """One line per rung with role names: "50% → 投诉专责人", "100% 超时 breach → 班组主管 ↑high", ..."""
    lines: list[str] = []
    for level in sorted(levels, key=lambda lv: lv.at):
        text = f"{level.at}%"
        if level.at == 100:
            text += " 超时 breach"
        if level.notify:
            text += " → " + ", ".join(role_name(definition, role) for role in level.notify)
        if level.reassign:
            text += (" ⇢ 转派 reassign" if level.reassign in level.notify
                     else f" ⇢ 转派 reassign {role_name(definition, level.reassign)}")
        if level.raise_priority:
            text += f" ↑{level.raise_priority}"
        if level.route:
            edge = next((e for e in definition.edges if e.id == level.route), None)
            target = edge.target if edge else level.route
            try:
                node = definition.node(target)
                target = node.name.zh if node.name else target
            except KeyError:
                pass
            text += f" ⇢ 改走 route → {target}"
        lines.append(text)
    return lines


def clock_text(definition: ProcessDefinition, clock: CaseClock) -> str:
    """A case clock in one line: name, span (step names) and targets per policy."""
    def step(node_id: str | None, fallback: str) -> str:
        if node_id is None:
            return fallback
        try:
            node = definition.node(node_id)
        except KeyError:
            return node_id
        return node.name.zh if node.name else node_id

    name = clock.name.both() if clock.name else clock.id
    span = f"{step(clock.start_on, '开始 start')} → " + (
        ", ".join(step(s, s) for s in clock.stop_on) if clock.stop_on else "结束 end")
    return f"{name}: {policy_text(clock.policies, definition.parameters)} ({span})"


def escalation_roles(definition: ProcessDefinition) -> dict[str, list[str]]:
    """Roles escalations reach, with the ladders (letters) that reach them: lanes a chart must show
    even when no step sits in them."""
    refs = ladder_refs(definition)
    reached: dict[str, list[str]] = {}
    for ref in refs.values():
        for level in ref.levels:
            for role in [*level.notify, *([level.reassign] if level.reassign else [])]:
                letters = reached.setdefault(role, [])
                if f"{ref.letter} {level.at}%" not in letters:
                    letters.append(f"{ref.letter} {level.at}%")
    return reached


__all__ = ["EDITABLE_MARK", "ESCALATION_GLYPH", "LadderRef", "audience", "clock_text", "condition_text",
           "escalation_roles", "ladder_lines", "ladder_ref_of", "ladder_refs", "policy_text", "role_name",
           "sla_text", "text_width", "wrap"]

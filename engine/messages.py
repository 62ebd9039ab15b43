"""Refusal reasons in Chinese and English, from one catalogue.

The engine refuses in English (`say`), and that English is what the audit log stores and the CLI
and API print. Readers that show a refusal to staff or operators — the inbox (in the language the
reader chose), the Prefect waiting run's state message and its re-opened Resume form (both
languages) — translate the stored text back through the same templates (`in_chinese`,
`bilingual_reason`). One template per message: the wording cannot drift between the raise site
and its translation, and a stored reason from before a template existed still shows (in English).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

# key: (Chinese, English); {names} are the values the engine fills in, the same in both
REFUSALS: dict[str, tuple[str, str]] = {
    # who may act (engine/access.py, the interpreter)
    "no_user": ("未填写用户:用户目录要求填写", "no user named: the directory requires one"),
    "not_a_user": ("{who} 不是用户目录中的用户", "{who} is not a user of the directory"),
    "disabled_user": ("{who} 在用户目录中已停用", "{who} is disabled in the directory"),
    "role_not_held": ("{actor} 不持有角色 '{role}'", "{actor} does not hold role '{role}'"),
    "no_accepted_role": ("{actor} 不持有任务 {task} 接受的任何角色", "{actor} holds none of the roles task {task} accepts"),
    "may_not_act": ("{actor} 以角色 '{role}' 不能办理任务 {task}('{node}')",
                    "{actor} acting as '{role}' may not act on task {task} ('{node}')"),
    "four_eyes": ("{actor} 已办理本案件的 '{other}',不能再办理 '{node}'(四眼原则)",
                  "{actor} completed '{other}' of this case and may not also complete '{node}' (four-eyes rule)"),
    # form data (engine/run/forms.py)
    "invalid_input": ("{what} 的输入无效:{problems}", "invalid input for {what}: {problems}"),
    "field_problem": ("字段 '{name}':{problem}", "field '{name}': {problem}"),
    "field_required": ("字段 '{name}'{label} 为必填", "field '{name}'{label} is required"),
    "unknown_field": ("未知字段 '{name}'({what} 的字段:{known})", "unknown field '{name}' (fields of {what}: {known})"),
    "expected_text": ("应为文本", "expected text"),
    "expected_choice": ("应为以下之一:{choices},收到 {value}", "expected one of {choices}, got {value}"),
    "expected_boolean": ("应为是或否,收到 {value}", "expected true or false, got {value}"),
    "expected_number": ("应为数字,收到 {value}", "expected a number, got {value}"),
    "expected_integer": ("应为整数,收到 {value}", "expected a whole number, got {value}"),
    "at_least": ("不能小于 {minimum},收到 {value}", "must be at least {minimum}, got {value}"),
    "at_most": ("不能大于 {maximum},收到 {value}", "must be at most {maximum}, got {value}"),
    "expected_date": ("应为日期,如 2025-10-09,收到 {value}", "expected a date like 2025-10-09, got {value}"),
    "expected_datetime": ("应为日期时间,如 2025-10-09T10:00:00+08:00,收到 {value}",
                          "expected a date-time like 2025-10-09T10:00:00+08:00, got {value}"),
    "needs_zone": ("日期时间 {value} 需要时区,如 +08:00", "the date-time {value} needs a time zone, e.g. +08:00"),
    "expected_list": ("应为列表,收到 {value}", "expected a list, got {value}"),
}
# single words both the inbox (svcflow/server/i18n.py) and the Prefect forms use
WORDS: dict[str, tuple[str, str]] = {
    "required": ("必填", "required"),
    "refused": ("上次提交被拒绝", "Last submission refused"),
}
PROBLEM_SEPARATOR = "; "
# messages whose values are themselves messages: translated inside out
_NESTED = {"invalid_input": "problems", "field_problem": "problem"}


def say(key: str, **values: object) -> str:
    """The English of a refusal, as the engine raises and stores it."""
    return REFUSALS[key][1].format(**values)


@cache
def _pattern(key: str) -> re.Pattern[str]:
    """The English template as a regular expression: literal text, and a group per value."""
    parts = re.split(r"\{(\w+)\}", REFUSALS[key][1])
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*?)" for i, part in enumerate(parts))
    return re.compile(f"^{regex}$", re.DOTALL)


def _translate(text: str, field: Callable[[str], str]) -> str | None:
    for key in REFUSALS:
        match = _pattern(key).match(text)
        if match is None:
            continue
        values = match.groupdict()
        if "name" in values:
            values["name"] = field(values["name"])
        nested = _NESTED.get(key)
        if nested == "problems":
            values[nested] = PROBLEM_SEPARATOR.join(
                _translate(p, field) or p for p in values[nested].split(PROBLEM_SEPARATOR))
        elif nested is not None:
            values[nested] = _translate(values[nested], field) or values[nested]
        return REFUSALS[key][0].format(**values)
    return None


def split_hint(text: str) -> tuple[str, str | None]:
    """A stored reason is the error's text: its message, then " (hint: …)" when it has one."""
    match = re.match(r"^(.*?) \(hint: (.*)\)$", text.strip(), re.DOTALL)
    return (match.group(1), match.group(2)) if match else (text.strip(), None)


def in_chinese(text: str, field: Callable[[str], str] = lambda name: name) -> str | None:
    """The Chinese of a stored English refusal, or None when no template matches it (a hint, being
    free text, is kept in English).

    `field` renames field ids inside it (a form shows them by label)."""
    message, hint = split_hint(text)
    chinese = _translate(message, field)
    if chinese is None:
        return None
    return chinese + (f"(提示:{hint})" if hint else "")


def both(word: str) -> str:
    """"中文 / English" of one of WORDS."""
    chinese, english = WORDS[word]
    return f"{chinese} / {english}"


def bilingual_reason(text: str) -> str:
    """"中文 / English" when the reason has a translation, else the English as stored."""
    chinese = in_chinese(text)
    return f"{chinese} / {text}" if chinese and chinese != text else text


__all__ = ["PROBLEM_SEPARATOR", "REFUSALS", "WORDS", "bilingual_reason", "both", "in_chinese", "say",
           "split_hint"]

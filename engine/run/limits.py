"""Input limits: how large a value, a case's data and a name may be.

A 10 MB text value was once accepted; afterwards every transition of that case took 11-15 s and
`svcflow show` 210 s, because the case's whole state is read and written at each step. Names
(actor, assignee, role) and ids go into VARCHAR columns that PostgreSQL enforces and SQLite does
not, so an unchecked 101-character actor was stored by one and crashed the other. Every entry
point (CLI, Prefect resume form, API) goes through `Engine`, which checks here before anything
is decided or stored, so the limits are the same everywhere and on every database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.definition.model import IDENT_MAX
from engine.errors import InputError
from engine.run.events import AssignTask, CancelCase, CompleteTask, Event, MessageArrived, UpdateData
from engine.run.state import InstanceState

NAME_CEILING = 100
"""Widest a person's or role's name may be configured: the store's VARCHAR(100) columns
(tasks.assignee, tasks.completed_by) hold them."""

ID_CEILING = IDENT_MAX
"""Widest an identifier may be: definition ids (model.IDENT_MAX) and case ids, which leave room in
the store's 100-character columns for the suffixes of task ids and sub-case ids."""

CLIP_CHARS = 200
"""How much of an over-long name a refusal record and a message keep."""

REASON_CHARS = 2_000
"""How much of a refusal's reason its record keeps (a reason may quote the refused input)."""

USER_EVENTS = (CompleteTask, AssignTask, MessageArrived, UpdateData, CancelCase)
"""Events a person or a calling system sends: the ones whose input is checked."""


@dataclass(frozen=True)
class Limits:
    """The limits in force; defaults suit a service desk, each is a SVCFLOW_MAX_* setting."""

    value_chars: int = 10_000
    data_chars: int = 200_000
    name_chars: int = NAME_CEILING
    id_chars: int = ID_CEILING

    def __post_init__(self) -> None:
        for name in ("value_chars", "data_chars", "name_chars", "id_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"SVCFLOW_MAX_{name.upper()} must be at least 1")
        if self.name_chars > NAME_CEILING:
            raise ValueError(f"SVCFLOW_MAX_NAME_CHARS may be at most {NAME_CEILING} (the store's column width)")
        if self.id_chars > ID_CEILING:
            raise ValueError(f"SVCFLOW_MAX_ID_CHARS may be at most {ID_CEILING} (the store's column width)")

    @classmethod
    def from_settings(cls, settings: Any | None = None) -> Limits:
        if settings is None:
            from engine.settings import get_settings

            settings = get_settings()
        return cls(settings.max_value_chars, settings.max_data_chars, settings.max_name_chars,
                   settings.max_id_chars)

    # -- checks ---------------------------------------------------------------------------------
    def check_start(self, process_id: str, case_id: str, data: Mapping[str, Any], actor: str | None) -> None:
        """A new case: its id, who starts it and its data."""
        problems = self._name_problems(("case id", case_id, self.id_chars, "ID"), ("actor", actor, self.name_chars,
                                                                                    "NAME"))
        problems += self._value_problems(data)
        _refuse(f"process '{process_id}'", problems)

    def check_event(self, event: Event) -> None:
        """A person's or system's action on a case, before it is applied."""
        if not isinstance(event, USER_EVENTS):
            return
        names: list[tuple[str, str | None, int, str]] = [("actor", event.actor, self.name_chars, "NAME")]
        values: Mapping[str, Any] = {}
        if isinstance(event, (CompleteTask, AssignTask)):
            names.append(("role", event.role, self.name_chars, "NAME"))
        if isinstance(event, AssignTask):
            names.append(("assignee", event.assignee, self.name_chars, "NAME"))
        if isinstance(event, CompleteTask):
            values = event.output
        elif isinstance(event, MessageArrived):
            names.append(("message name", event.message, self.id_chars, "ID"))
            values = event.payload
        elif isinstance(event, UpdateData):
            values = event.data
        elif isinstance(event, CancelCase):
            values = {"reason": event.reason}
        problems = self._name_problems(*names) + self._value_problems(values)
        _refuse(_what(event), problems)

    def check_case_data(self, state: InstanceState, event: Event | None = None) -> None:
        """The case's whole data after a person's action: many values each under the limit can add up."""
        if event is not None and not isinstance(event, USER_EVENTS):
            return  # a handler's or sub-case's output is the definition's business, not a user's input
        size = _size(state.data)
        if size > self.data_chars:
            _refuse(f"case {state.case_id}", [
                f"its data would be {size:,} characters, more than the limit of {self.data_chars:,} "
                "(SVCFLOW_MAX_DATA_CHARS)"])

    @staticmethod
    def clip(value: Any, chars: int = CLIP_CHARS) -> Any:
        """A text as a refusal record or message keeps it: an over-long one shortened, with its length."""
        if isinstance(value, str) and len(value) > chars:
            return f"{value[:chars]}… ({len(value):,} characters)"
        return value

    # -- helpers --------------------------------------------------------------------------------
    def _name_problems(self, *names: tuple[str, str | None, int, str]) -> list[str]:
        problems = []
        for label, value, limit, setting in names:
            if value is not None and len(value) > limit:
                problems.append(f"the {label} {self.clip(value)!r} is {len(value):,} characters, more than the "
                                f"limit of {limit} (SVCFLOW_MAX_{setting}_CHARS)")
        return problems

    def _value_problems(self, values: Mapping[str, Any]) -> list[str]:
        problems = []
        for key, value in values.items():
            if len(str(key)) > self.id_chars:
                problems.append(f"the field name {self.clip(str(key))!r} is {len(str(key)):,} characters, more "
                                f"than the limit of {self.id_chars} (SVCFLOW_MAX_ID_CHARS)")
                continue
            size = _size(value)
            if size > self.value_chars:
                problems.append(f"field '{key}' is {size:,} characters, more than the limit of "
                                f"{self.value_chars:,} (SVCFLOW_MAX_VALUE_CHARS)")
        if not problems:
            total = _size(dict(values))
            if total > self.data_chars:
                problems.append(f"the input is {total:,} characters, more than the limit of {self.data_chars:,} "
                                "for a case's data (SVCFLOW_MAX_DATA_CHARS)")
        return problems


def _size(value: Any) -> int:
    """Characters of a text, or of the JSON a structured value is stored as."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return 8
    return len(json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")))


def _what(event: Event) -> str:
    if isinstance(event, (CompleteTask, AssignTask)):
        return f"task {event.task_id[:CLIP_CHARS]}"
    if isinstance(event, MessageArrived):
        return f"message '{event.message[:CLIP_CHARS]}'"
    return "the case"


def _refuse(what: str, problems: list[str]) -> None:
    if problems:
        raise InputError(f"input refused for {what}: " + "; ".join(problems),
                         hint="shorten it, or ask the administrator to raise the SVCFLOW_MAX_* limit named above")


__all__ = ["ID_CEILING", "Limits", "NAME_CEILING", "REASON_CHARS", "USER_EVENTS"]

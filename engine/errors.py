"""Exceptions of svcflow.

Every error a user can cause carries where it happened (file, line, node) and a hint
on how to fix it, so the CLI can print it without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition; validation collects all of them at once."""

    message: str
    file: str | None = None
    line: int | None = None
    node: str | None = None
    hint: str | None = None
    code: str = "invalid"
    severity: Literal["error", "warning"] = "error"

    @property
    def is_error(self) -> bool:
        """Errors refuse a definition everywhere it loads; warnings are reported and let it run."""
        return self.severity == "error"

    def __str__(self) -> str:
        where = self.file or "<definition>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.node:
            text += f"node '{self.node}': "
        text += self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class SvcflowError(Exception):
    """Base of all errors caused by input, not by bugs: printed to users as one clear message."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


@dataclass
class DefinitionError(SvcflowError):
    """A definition that cannot be loaded or compiled; holds every problem found."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        SvcflowError.__init__(self, "\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class NotFound(SvcflowError):
    """A case, task, process or definition version that does not exist."""


class InputError(SvcflowError):
    """Case data or form input that does not fit the definition."""


class TaskRefused(SvcflowError):
    """A task completion that is not allowed (already done, wrong role, case not waiting on it)."""


class ConcurrentModification(SvcflowError):
    """Another process changed the case between our read and our write; nothing was stored."""


class LogError(SvcflowError):
    """An event the log's contract (engine/run/log.py) does not describe: an unknown type, a missing or
    unknown field, a payload version newer than this code."""


class StoredStateError(SvcflowError):
    """A case's stored state this code cannot read: an unknown key, a newer schema version, broken JSON."""


class AccessDenied(TaskRefused):
    """An actor the directory does not know, has disabled, or who lacks the role an action needs."""


class NotAuthenticated(SvcflowError):
    """No valid token, session or user name came with a request that changes state."""

"""Walking a chain of version steps (N -> N + 1), shared by the stored state and the log's payloads.

What is stored outlives the code that wrote it; each format that changes keeps one function per
step, and reading applies the missing steps in order. A version newer than the code is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from engine.errors import SvcflowError

T = TypeVar("T")


def walk(value: T, version: int, current: int, steps: Mapping[int, Callable[[T], T]], *,
         what: str, error: type[SvcflowError], registry: str) -> T:
    """`value`, stored in `version`, brought to `current`; `what` names it in errors ("case A: its stored
    state"), `registry` names where a missing step belongs."""
    if version > current:
        raise error(f"{what} has schema version {version}; this svcflow reads up to version {current}",
                    hint="it was written by a newer svcflow: upgrade svcflow (nothing was changed)")
    if version < 1:
        raise error(f"{what} has schema version {version}, which never existed",
                    hint="it was not written by svcflow: restore or remove it")
    for step in range(version, current):
        migrate = steps.get(step)
        if migrate is None:
            raise error(f"{what}: no migration from version {step} to {step + 1}",
                        hint=f"a release that changes the format must add its step to {registry}")
        value = migrate(value)
    return value

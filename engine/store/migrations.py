"""Migrations of a case's stored state, one step at a time (after SpiffWorkflow's serializer migrations).

The state JSON in the case row is the source of truth of every running case, so a release that
renames, splits or drops a state field must not strand the cases stored by the one before it.
Such a release raises `STATE_SCHEMA_VERSION` by one and adds a function to `STATE_MIGRATIONS`
taking a state dict of the previous version to the new one; reading a case applies the steps it
lacks, in order. Each function works on plain JSON values (no classes of today's code), because
it must keep working after those classes have changed again.

Version 1 is the state as written before it carried a version (no `schema_version` key).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from engine.errors import StoredStateError
from engine.versioning import walk

STATE_SCHEMA_VERSION: Final = 1

StateMigration = Callable[[dict[str, Any]], dict[str, Any]]
"""A state dict of version N -> the same state in version N + 1."""

STATE_MIGRATIONS: Final[Mapping[int, StateMigration]] = {}
"""Version N -> the function taking a state from N to N + 1. Empty while version 1 is current."""


def upgrade_state(raw: dict[str, Any], version: int, case_id: str, *,
                  migrations: Mapping[int, StateMigration] = STATE_MIGRATIONS,
                  current: int = STATE_SCHEMA_VERSION) -> dict[str, Any]:
    """The state `raw`, stored in `version`, brought to `current` by the migration chain."""
    return walk(raw, version, current, migrations, what=f"case {case_id}: its stored state", error=StoredStateError,
                registry="STATE_MIGRATIONS (engine/store/migrations.py)")

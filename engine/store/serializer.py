"""A case's state to and from the JSON kept in its case row, with the state's schema version.

Writing stamps `schema_version`; reading brings an older state up to date through the
migration chain (engine/store/migrations.py) and refuses what it cannot read faithfully:

- a version newer than this code (a newer svcflow wrote it),
- a key the state does not have: a clear error naming the key and the case. Not ignored with a
  warning, because a key this version does not know is data it would silently drop on the next
  write of the case, and the state is the only copy of it;
- JSON that does not parse, or a state missing a key it needs.
The case row is left untouched in every one of these cases.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any

import orjson

from engine.errors import StoredStateError
from engine.run.state import InstanceState, SlaClock, Task, Token
from engine.store import codec
from engine.store.migrations import STATE_SCHEMA_VERSION, upgrade_state

VERSION_KEY = "schema_version"


def _names(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """(every field, the fields without a default) of a state class."""
    every = fields(cls)
    return (frozenset(f.name for f in every),
            frozenset(f.name for f in every if f.default is MISSING and f.default_factory is MISSING))


_KNOWN = {"case": _names(InstanceState), "token": _names(Token), "task": _names(Task), "clock": _names(SlaClock)}


_FIELDS = tuple(f.name for f in fields(InstanceState))
_ENTITY_MAPS = frozenset(("tokens", "tasks", "clocks"))


def state_json(state: InstanceState) -> str:
    """The state as stored: its fields plus the schema version it is written in.

    This runs for every stored transition. The tokens, tasks and clocks (the engine's own
    dataclasses, times and all) go to orjson as they are, embedded as fragments, instead of
    being flattened into dicts first; the text is the same as `to_dict` gives (tested). Anything
    orjson would write differently (non-finite data, values it refuses) takes the general path.
    """
    if codec.finite(state.data):
        raw: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(state, name)
            if name in _ENTITY_MAPS:
                value = orjson.Fragment(orjson.dumps(value))
            elif isinstance(value, datetime):
                value = value.isoformat()
            raw[name] = value
        raw[VERSION_KEY] = STATE_SCHEMA_VERSION
        try:
            return orjson.dumps(raw, option=codec.OPTIONS).decode()
        except TypeError:  # orjson.JSONEncodeError included
            pass
    raw = state.to_dict()
    raw[VERSION_KEY] = STATE_SCHEMA_VERSION
    return codec.dumps(raw, data=state.data)


def state_from_json(text: str, case_id: str) -> InstanceState:
    """A stored state, in any version this code knows, as today's InstanceState; `case_id` names it in errors."""
    try:
        raw = codec.loads(text)
    except ValueError as exc:
        raise StoredStateError(f"case {case_id}: its stored state is not JSON ({exc})",
                               hint="restore the case row from a backup") from None
    if not isinstance(raw, dict):
        raise StoredStateError(f"case {case_id}: its stored state is {type(raw).__name__}, not an object",
                               hint="restore the case row from a backup")
    version = raw.pop(VERSION_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoredStateError(f"case {case_id}: '{VERSION_KEY}' is {version!r}, not a number",
                               hint="restore the case row from a backup")
    raw = upgrade_state(raw, version, case_id)
    _check_keys(raw, "case", case_id, "")
    for part, kind in (("tokens", "token"), ("tasks", "task"), ("clocks", "clock")):
        items = raw.get(part, {})
        if not isinstance(items, dict):
            raise StoredStateError(f"case {case_id}: '{part}' is {type(items).__name__}, not an object",
                                   hint="restore the case row from a backup")
        for key, item in items.items():
            if not isinstance(item, dict):
                raise StoredStateError(f"case {case_id}: {kind} '{key}' is {type(item).__name__}, not an object",
                                       hint="restore the case row from a backup")
            _check_keys(item, kind, case_id, f" in {kind} '{key}'")
    try:
        return InstanceState.from_dict(raw)
    except (TypeError, ValueError) as exc:  # a value of the wrong kind (a date that does not parse...)
        raise StoredStateError(f"case {case_id}: its stored state cannot be read: {exc}",
                               hint="restore the case row from a backup") from None


def _check_keys(raw: dict[str, Any], kind: str, case_id: str, where: str) -> None:
    known, needed = _KNOWN[kind]
    if known.issuperset(raw) and raw.keys() >= needed:  # the usual case, without building sets
        return
    unknown = raw.keys() - known
    if unknown:
        names = ", ".join(f"'{name}'" for name in sorted(unknown))
        raise StoredStateError(
            f"case {case_id}: unknown key(s) {names}{where} in its stored state (schema version "
            f"{STATE_SCHEMA_VERSION})",
            hint="written by another svcflow version without a schema version step? Upgrade svcflow, or add the "
                 "migration that renames or removes the key to engine/store/migrations.py")
    missing = needed - raw.keys()
    if missing:
        names = ", ".join(f"'{name}'" for name in sorted(missing))
        raise StoredStateError(f"case {case_id}: key(s) {names} missing{where} in its stored state",
                               hint="restore the case row from a backup, or add a migration that fills them in")

"""The JSON Schema editors use: every property of the definition format says what it is for.

Designers meet the format in their editor (yaml-language-server shows each property's
description on hover and completion); a property without one is a field they must guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine.definition.model import json_schema


def properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (owner.property, property schema) of the root and of each $defs entry."""
    owners = [("definition", schema), *schema.get("$defs", {}).items()]
    for owner, body in owners:
        for name, prop in body.get("properties", {}).items():
            yield f"{owner}.{name}", prop


def test_every_property_of_the_definition_schema_has_a_description() -> None:
    schema = json_schema()
    found = list(properties(schema))
    assert len(found) > 100, "the walk must reach the nested models, not only the root"
    missing = [name for name, prop in found if not str(prop.get("description", "")).strip()]
    assert missing == [], f"{len(missing)} of {len(found)} properties have no description: {missing}"


def test_the_walk_reaches_node_kinds_and_calendar_fields() -> None:
    names = {name for name, _ in properties(json_schema())}
    assert {"HumanTask.sla", "Edge.from", "CalendarConfig.timezone", "Text.zh", "definition.nodes"} <= names

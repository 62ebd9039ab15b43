"""Loading definitions from YAML into the pydantic model, with located errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from engine.definition.model import ProcessDefinition, content_hash
from engine.errors import DefinitionError, Problem
from engine.definition.yaml_source import SourceDocument, parse_yaml, read_yaml


@dataclass(frozen=True)
class LoadedDefinition:
    """A definition together with its source, so later checks can still point at lines."""

    definition: ProcessDefinition
    source: SourceDocument
    hash: str

    def line_of_node(self, node_id: str) -> int | None:
        for index, node in enumerate(self.definition.nodes):
            if node.id == node_id:
                return self.source.line_of(("nodes", index))
        return None


def _node_id_at(source: SourceDocument, loc: tuple[object, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        nodes = source.data.get("nodes") if isinstance(source.data, dict) else None
        if isinstance(nodes, list) and loc[1] < len(nodes) and isinstance(nodes[loc[1]], dict):
            node_id = nodes[loc[1]].get("id")
            return str(node_id) if node_id is not None else None
    return None


_HINTS = {
    "extra_forbidden": "remove the key or check its spelling",
    "missing": "add the key",
    "literal_error": "use one of the allowed values",
    "union_tag_invalid": "kind must be one of start, end, auto, human, exclusive, parallel, inclusive, timer, "
    "message, subprocess",
    "union_tag_not_found": "every node needs a 'kind'",
    "string_pattern_mismatch": "identifiers are snake_case ASCII (a-z, 0-9, _); durations look like 2h, 30m, 5d",
}


def problems_from_validation(error: ValidationError, source: SourceDocument) -> list[Problem]:
    """Turn pydantic's errors into located problems, dropping union-branch noise."""
    problems: list[Problem] = []
    seen: set[tuple[object, ...]] = set()
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and part[:1].isupper()))
        # discriminated unions put the tag name in the path (nodes.3.human.form...): drop it
        cleaned: list[str | int] = []
        for i, part in enumerate(loc):
            if i == 2 and loc[0] == "nodes" and isinstance(part, str) and part in _KIND_TAGS:
                continue
            cleaned.append(part)
        key = (tuple(cleaned), item["type"])
        if key in seen:
            continue
        seen.add(key)
        path = ".".join(str(p) for p in cleaned) or "(top level)"
        message = item["msg"]
        if item["type"] == "string_pattern_mismatch" and isinstance(item.get("input"), str):
            message = f"{message!s}: got {item['input']!r}"
        problems.append(
            Problem(
                message=f"{path}: {message}",
                file=source.file,
                line=source.line_of(tuple(cleaned)),
                node=_node_id_at(source, tuple(cleaned)),
                hint=_HINTS.get(item["type"]),
                code=f"schema.{item['type']}",
            )
        )
    return problems


_KIND_TAGS = frozenset({"start", "end", "auto", "human", "exclusive", "parallel", "inclusive", "timer", "message",
                        "subprocess"})


def load_source(source: SourceDocument) -> LoadedDefinition:
    """Validate a parsed document against the model; all schema problems are reported together."""
    if not isinstance(source.data, dict):
        raise DefinitionError(problems=[Problem("a definition must be a mapping with id, nodes, edges...",
                                                source.file, 1)])
    try:
        definition = ProcessDefinition.model_validate(source.data)
    except ValidationError as exc:
        raise DefinitionError(problems=problems_from_validation(exc, source)) from None
    return LoadedDefinition(definition=definition, source=source, hash=content_hash(source.text))


def load_text(text: str, file: str = "<text>") -> LoadedDefinition:
    return load_source(parse_yaml(text, file))


def load_file(path: Path) -> LoadedDefinition:
    return load_source(read_yaml(path))

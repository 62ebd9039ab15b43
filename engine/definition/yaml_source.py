"""YAML reading that remembers line numbers.

Designers need errors that point at the line they wrote; pydantic only knows paths
(`nodes.3.form.0.type`), so we keep a map from each path to the line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import DefinitionError, Problem

PathKey = tuple[str | int, ...]


@dataclass
class SourceDocument:
    """A parsed YAML document plus where each value stood in the file."""

    data: Any
    file: str
    text: str
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """Line of the deepest known prefix of `path` (1-based)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader (never constructs Python objects) that refuses duplicate keys."""


def _convert(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise DefinitionError(
                    problems=[Problem("YAML merge keys (<<) are not supported", file, key_node.start_mark.line + 1,
                                      hint="write the values out")]
                )
            if key in result:
                raise DefinitionError(
                    problems=[Problem(f"duplicate key '{key}'", file, key_node.start_mark.line + 1,
                                      hint="each key may appear once in a mapping")]
                )
            child = (*path, key)
            result[key] = _convert(value_node, child, lines, file)
            lines[child] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    loader = _UniqueKeyLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def parse_yaml(text: str, file: str) -> SourceDocument:
    """Parse YAML text; syntax errors become a DefinitionError with the line."""
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise DefinitionError(
            problems=[Problem(f"YAML syntax error: {exc.problem}", file, line,
                              hint="check indentation and quoting around this line")]
        ) from None
    if root is None:
        raise DefinitionError(problems=[Problem("the file is empty", file, 1, hint="start with 'id:' and 'nodes:'")])
    lines: dict[PathKey, int] = {}
    data = _convert(root, (), lines, file)
    return SourceDocument(data=data, file=file, text=text, lines=lines)


def read_yaml(path: Path) -> SourceDocument:
    """Read and parse a YAML file; an unreadable file is a DefinitionError too."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(problems=[Problem(f"cannot read the file: {exc}", str(path))]) from None
    return parse_yaml(text, str(path))

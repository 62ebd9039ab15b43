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
from engine.limits import definition_limits

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


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built: ~10x faster on big files
_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp",
                                                           "seq", "map"))


def _refuse(message: str, file: str, line: int | None, hint: str | None, code: str = "yaml") -> DefinitionError:
    return DefinitionError(problems=[Problem(message, file, line, hint=hint, code=code)])


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, max(0, position)) + 1


def _syntax_problem(exc: yaml.YAMLError, text: str, file: str) -> DefinitionError:
    """Any reader, scanner, parser or composer error as one located problem (never a traceback)."""
    line: int | None = None
    if isinstance(exc, yaml.reader.ReaderError):
        # libyaml counts bytes of the UTF-8 text, PyYAML's own reader characters
        line = (text.encode("utf-8")[: exc.position].count(b"\n") + 1 if _LOADER is not yaml.SafeLoader
                else _line_at(text, exc.position))
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return _refuse(f"the file contains the control character {char!r} (U+{ord(char):04X})", file, line,
                       "remove it; only printable characters, tabs in quoted text and line breaks are allowed")
    problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        line = mark.line + 1
    hint = "check indentation and quoting around this line"
    if line is not None:
        source_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        if "\t" in source_line[: len(source_line) - len(source_line.lstrip())] or "'\\t'" in problem:
            return _refuse(f"YAML syntax error: line {line} is indented with a tab", file, line,
                           "YAML indentation must use spaces: replace the tab by spaces")
    return _refuse(f"YAML syntax error: {problem}", file, line, hint)


def _check_events(text: str, file: str) -> None:
    """Read the event stream once (libyaml, no recursion) and refuse what would make composing
    dangerous: nesting beyond the limit (RecursionError), alias bombs (billions of nodes),
    unknown tags, more than one document."""
    limits = definition_limits()
    depth = 0
    nodes = 0
    documents = 0
    sizes: dict[str, int] = {}
    open_anchors: list[tuple[str | None, int]] = []
    for event in yaml.parse(text, Loader=_LOADER):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _refuse("the file holds more than one YAML document", file, line,
                              "one definition per file: remove the '---' and what follows, or split the file")
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _ in open_anchors):
                raise _refuse(f"the alias *{event.anchor} stands inside its own anchor &{event.anchor}: the value "
                              "would contain itself", file, line, "write the values out instead of the alias",
                              code="yaml_alias")
            nodes += sizes.get(str(event.anchor), 1)
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            nodes += 1
            tag = event.tag
            if tag is not None and tag not in _TAGS and not (tag == "!" and isinstance(event, yaml.ScalarEvent)):
                raise _refuse(f"YAML tag {tag!r} is not supported", file, line,
                              "remove the tag: definitions use plain YAML values", code="yaml_tag")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limits.max_yaml_depth:
                    raise _refuse(f"the YAML nests deeper than {limits.max_yaml_depth} levels", file, line,
                                  "definitions need far less; set SVCFLOW_MAX_YAML_DEPTH to allow more",
                                  code="yaml_depth")
                open_anchors.append((event.anchor, nodes))
            elif event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            anchor, started = open_anchors.pop()
            if anchor is not None:
                sizes[anchor] = nodes - started + 1
        if nodes > limits.max_yaml_nodes:
            raise _refuse(f"the YAML expands to more than {limits.max_yaml_nodes} values (aliases included)",
                          file, line, "an alias repeats its anchor's whole content: write the values out; "
                          "set SVCFLOW_MAX_YAML_NODES to allow more", code="yaml_size")


def _convert(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: str,
             constructor: yaml.constructor.SafeConstructor) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _refuse("a mapping key must be a plain name, not a list or mapping", file,
                              key_node.start_mark.line + 1, "write `key: value`")
            key = str(key_node.value)
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _refuse("YAML merge keys (<<) are not supported", file, key_node.start_mark.line + 1,
                              "write the values out")
            if key in result:
                raise _refuse(f"duplicate key '{key}'", file, key_node.start_mark.line + 1,
                              "each key may appear once in a mapping")
            child = (*path, key)
            result[key] = _convert(value_node, child, lines, file, constructor)
            lines[child] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, file, constructor) for i, item in enumerate(node.value)]
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise _refuse(f"the value {str(node.value)[:40]!r} cannot be read: {str(exc).splitlines()[0]}", file,
                      node.start_mark.line + 1, "quote it to make it text") from None


def parse_yaml(text: str, file: str) -> SourceDocument:
    """Parse YAML text in bounded time; every failure is a DefinitionError with the line."""
    limits = definition_limits()
    size = len(text.encode("utf-8", errors="replace"))
    if size > limits.max_definition_bytes:
        raise _refuse(f"the file is {size:,} bytes; a definition may have at most {limits.max_definition_bytes:,}",
                      file, None, "split it into sub-processes, or set SVCFLOW_MAX_DEFINITION_BYTES",
                      code="yaml_size")
    try:
        _check_events(text, file)
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise _syntax_problem(exc, text, file) from None
    if root is None:
        raise _refuse("the file is empty", file, 1, "start with 'id:' and 'nodes:'")
    lines: dict[PathKey, int] = {}
    constructor = yaml.SafeLoader("")
    try:
        data = _convert(root, (), lines, file, constructor)
    finally:
        constructor.dispose()
    return SourceDocument(data=data, file=file, text=text, lines=lines)


def decode(raw: bytes, file: str) -> str:
    """UTF-8 text of a definition file, or a located error saying what the bytes look like."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        hint = "save the file as UTF-8"
        try:
            raw.decode("gb18030")
            hint += " (it looks like GBK/GB18030: re-encode it, e.g. `iconv -f GB18030 -t UTF-8`)"
        except UnicodeDecodeError:
            pass
        raise _refuse(f"the file is not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column} "
                      "cannot be decoded", file, line, hint, code="encoding") from None


def read_yaml(path: Path) -> SourceDocument:
    """Read and parse a YAML file; an unreadable file is a DefinitionError too."""
    limits = definition_limits()
    try:
        with path.open("rb") as handle:
            raw = handle.read(limits.max_definition_bytes + 1)
    except OSError as exc:
        raise _refuse(f"cannot read the file: {exc.strerror or exc}", str(path), None,
                      "check the path and its permissions", code="io") from None
    if len(raw) > limits.max_definition_bytes:
        raise _refuse(f"the file is larger than {limits.max_definition_bytes:,} bytes", str(path), None,
                      "split it into sub-processes, or set SVCFLOW_MAX_DEFINITION_BYTES", code="yaml_size")
    return parse_yaml(decode(raw, str(path)), str(path))

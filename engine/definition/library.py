"""The set of process definitions a deployment runs: process_defs/*.yaml by default."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import DefinitionError, NotFound, Problem
from engine.definition.graph import ProcessGraph, compile_graph
from engine.definition.loader import LoadedDefinition, load_file, load_text

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "process_defs"


def definition_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories to their *.yaml / *.yml files, in a stable order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            files.append(path)
    return files


@dataclass
class ProcessLibrary:
    """Latest definitions by process id, plus compiled graphs by content hash (kept for old versions)."""

    latest: dict[str, LoadedDefinition] = field(default_factory=dict)
    _graphs: dict[str, ProcessGraph] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, paths: Iterable[Path]) -> tuple[ProcessLibrary, list[Problem]]:
        """Load every file; problems are collected, not raised, so validation can report them all."""
        library = cls()
        problems: list[Problem] = []
        for file in definition_files(paths):
            try:
                loaded = load_file(file)
            except DefinitionError as exc:
                problems.extend(exc.problems)
                continue
            process_id = loaded.definition.id
            if process_id in library.latest:
                other = library.latest[process_id]
                problems.append(Problem(
                    f"process id '{process_id}' is also defined in {other.source.file}",
                    file=str(file), line=loaded.source.line_of(("id",)),
                    hint="give each process its own id; versions of one process replace each other",
                    code="duplicate_process",
                ))
                continue
            library.latest[process_id] = loaded
        return library, problems

    @classmethod
    def from_dir(cls, path: Path = DEFAULT_DIR) -> ProcessLibrary:
        """Load a directory that must be clean (the running engine refuses broken definitions)."""
        library, problems = cls.load([path])
        if problems:
            raise DefinitionError(problems=problems)
        return library

    def add_text(self, text: str, file: str = "<text>") -> LoadedDefinition:
        loaded = load_text(text, file)
        self.latest[loaded.definition.id] = loaded
        return loaded

    def add(self, loaded: LoadedDefinition) -> None:
        self.latest[loaded.definition.id] = loaded

    def process_ids(self) -> list[str]:
        return sorted(self.latest)

    def get(self, process_id: str) -> ProcessGraph:
        """The latest version's graph."""
        try:
            loaded = self.latest[process_id]
        except KeyError:
            known = ", ".join(self.process_ids()) or "none"
            raise NotFound(f"unknown process '{process_id}'", hint=f"known processes: {known}") from None
        return self.graph_of(loaded)

    def graph_of(self, loaded: LoadedDefinition) -> ProcessGraph:
        graph = self._graphs.get(loaded.hash)
        if graph is None:
            graph = compile_graph(loaded)
            self._graphs[loaded.hash] = graph
        return graph

    def cached_graph(self, definition_hash: str) -> ProcessGraph | None:
        return self._graphs.get(definition_hash)

"""The set of process definitions a deployment runs: process_defs/*.yaml by default.

Nothing invalid runs: every way a definition enters a library that runs cases (`from_dir`,
`add_text`, and `require_valid`, which `Engine` calls with its handlers) applies the same
validator as `svcflow validate` and refuses a definition with errors, raising
`DefinitionError` with the validator's located problems. Warnings are let through.
`load` alone stays lenient: it is what `svcflow validate` uses to collect every problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import DefinitionError, NotFound, Problem
from engine.definition.graph import ProcessGraph, compile_graph
from engine.definition.loader import LoadedDefinition, load_file, load_text

if TYPE_CHECKING:
    from engine.run.handlers import HandlerRegistry

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "process_defs"
# (definitions by process id and hash, handler names) -> problems; one validation per library version
_VERDICTS: dict[tuple[tuple[tuple[str, str, str], ...], tuple[str, ...] | None], list[Problem]] = {}
_VERDICTS_LIMIT = 256


def errors_only(problems: Iterable[Problem]) -> list[Problem]:
    return [problem for problem in problems if problem.is_error]


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
    def from_dir(cls, path: Path = DEFAULT_DIR, handlers: HandlerRegistry | None = None) -> ProcessLibrary:
        """Load a directory that must be valid: any error of any file refuses the whole library."""
        library, problems = cls.load([path])
        if problems:
            raise DefinitionError(problems=problems)
        library.require_valid(handlers)
        return library

    def add_text(self, text: str, file: str = "<text>") -> LoadedDefinition:
        """Add a definition that must be valid on its own; references to other processes and
        handlers are checked by `require_valid`, once the library is complete."""
        from engine.definition.validation import validate_graph

        loaded = load_text(text, file)
        errors = errors_only(validate_graph(self.graph_of(loaded), None, None))
        if errors:
            raise DefinitionError(problems=errors)
        self.latest[loaded.definition.id] = loaded
        return loaded

    def problems(self, handlers: HandlerRegistry | None = None) -> list[Problem]:
        """What `svcflow validate` says about these definitions (errors and warnings); cached
        per library content, so every engine over the same library validates it once."""
        from engine.definition.validation import validate_library

        key = (tuple(sorted((pid, loaded.hash, loaded.source.file) for pid, loaded in self.latest.items())),
               tuple(handlers.names()) if handlers is not None else None)
        verdict = _VERDICTS.get(key)
        if verdict is None:
            verdict = validate_library(self, handlers)
            if len(_VERDICTS) >= _VERDICTS_LIMIT:
                _VERDICTS.clear()
            _VERDICTS[key] = verdict
        return list(verdict)

    def require_valid(self, handlers: HandlerRegistry | None = None) -> None:
        """Refuse the library if any definition has an error (sub-processes, cycles and, with
        `handlers`, handler names included); the DefinitionError lists every error located."""
        errors = errors_only(self.problems(handlers))
        if errors:
            raise DefinitionError(problems=errors)

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

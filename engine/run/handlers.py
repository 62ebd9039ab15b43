"""The registry of automatic-step handlers that definitions name (`handler: complaints.detect_major`).

A handler gets a HandlerContext and returns the fields it writes into the case data. It may
run more than once for the same step (a worker killed after the side effect, before the
commit), so it must be idempotent: `context.idempotency_key` is stable across re-runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import SvcflowError


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may read; it never sees the store or the interpreter state."""

    case_id: str
    process_id: str
    node_id: str
    attempt: int
    idempotency_key: str
    data: Mapping[str, Any]
    params: Mapping[str, Any]


Handler = Callable[[HandlerContext], Mapping[str, Any] | None]


class HandlerRegistry:
    """Name -> handler. One module-level default registry holds the built-ins; tests may make their own."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str) -> Callable[[Handler], Handler]:
        def decorator(function: Handler) -> Handler:
            self._handlers[name] = function
            return function

        return decorator

    def add(self, name: str, function: Handler) -> None:
        self._handlers[name] = function

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def get(self, name: str) -> Handler:
        try:
            return self._handlers[name]
        except KeyError:
            raise SvcflowError(f"no handler named '{name}' is registered",
                               hint=f"registered handlers: {', '.join(self.names()) or 'none'}") from None


registry = HandlerRegistry()


def default_registry() -> HandlerRegistry:
    """The registry with the built-in handlers of the process library loaded."""
    import engine.run.builtin_handlers  # noqa: F401  (registers on import)

    return registry

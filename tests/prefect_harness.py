"""Helpers for tests of the Prefect layer: threads that keep the context, polling, no heartbeats.

The session's Prefect server and the event capture are fixtures in tests/conftest_prefect.py.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any


def without_heartbeats() -> Any:
    """A settings context with flow-run heartbeats off: a sync flow run otherwise waits ~1 s at its end.
    The setting takes None only in code (its environment variable must be >= 30)."""
    from prefect.context import SettingsContext
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    quiet = settings.model_copy(update={"flows": settings.flows.model_copy(update={"heartbeat_frequency": None})})
    context = SettingsContext.get()
    assert context is not None
    return SettingsContext(profile=context.profile, settings=quiet)


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `target` in a thread that sees this context (Prefect settings, the engine in use)."""
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def run() -> None:
        try:
            box["result"] = context.run(target)
        except BaseException as exc:  # reported to the test through the box
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)

"""Shared fixtures: a fake clock in Shanghai business hours, in-memory engines, inline definitions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from engine.time.clock import FakeClock
from engine.run.handlers import HandlerRegistry, default_registry
from engine.definition.library import ProcessLibrary
from engine.run.runtime import Engine, LogNotifier

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_9AM = datetime(2025, 9, 22, 9, 0, tzinfo=SHANGHAI)  # an ordinary working Monday
POSTGRES_URL = os.environ.get("SVCFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_9AM)


@pytest.fixture
def library_engine(clock: FakeClock) -> Engine:
    """The engine with the real process library of process_defs/."""
    return Engine.in_memory(clock=clock, notifier=LogNotifier())


@pytest.fixture
def make_engine(clock: FakeClock) -> Callable[..., Engine]:
    """An engine over inline YAML definitions (plus the real library for sub-processes if asked)."""

    def factory(*texts: str, handlers: HandlerRegistry | None = None, with_library: bool = False) -> Engine:
        library = ProcessLibrary.from_dir() if with_library else ProcessLibrary()
        for i, text in enumerate(texts):
            library.add_text(text, f"inline{i}.yaml")
        return Engine.in_memory(clock=clock, library=library, handlers=handlers or default_registry(),
                                notifier=LogNotifier())

    return factory


def postgres_available(url: str = POSTGRES_URL) -> bool:
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """PostgreSQL for store tests: required when CI=true (fail, never skip silently)."""
    if not postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    yield POSTGRES_URL

"""Pytest plugin: one Prefect test server for the whole session, with the fast settings of
shared/REFERENCE.md, and client-side capture of events.

Load it with `pytest_plugins = ["tests.conftest_prefect"]` (in tests/conftest.py, or in each test
module that needs it), so the ~10 s server start happens once however many files use it. The
environment is set when this module is imported, before Prefect is: the server subprocess and
Prefect's settings read it then.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.prefect_harness import without_heartbeats

_FAST = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_HOME": tempfile.mkdtemp(prefix="svcflow-prefect-home-"),
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}
for _name, _value in _FAST.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """The URL of the session's Prefect test server; flows run in this context talk to it."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # ~10 s on an idle machine; minutes when both cores are shared with other suites: a generous
    # deadline for a condition, not a fixed wait (the harness polls /health)
    with prefect_test_harness(server_startup_timeout=600):
        with without_heartbeats():
            url = PREFECT_API_URL.value()
            os.environ["SVCFLOW_TEST_PREFECT_API_URL"] = url
            yield url


@pytest.fixture
def captured_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[Any]]]:
    """Events emitted in this test (task-run states, svcflow.*), captured client-side: the fast
    server persists neither events nor task runs."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", classmethod(lambda cls, *a, **k: worker))

    def events() -> list[Any]:
        worker.wait_until_empty()
        client = worker._client
        return list(getattr(client, "events", []))

    yield events
    worker.drain()
    client = worker._client
    if client is not None:
        client.events = []

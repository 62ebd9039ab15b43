"""The server's engine threads (svcflow/server/context.py): results, errors and context reach the caller."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from engine.errors import InputError
from svcflow.server.context import EngineThreads

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def test_a_call_runs_off_the_event_loop_and_returns_its_result() -> None:
    threads = EngineThreads(2)

    async def caller() -> tuple[str, str]:
        return await threads.run(lambda: threading.current_thread().name), threading.current_thread().name

    worker, loop = asyncio.run(caller())
    threads.close()
    assert worker.startswith("svcflow-engine-") and worker != loop


def test_an_engine_error_is_raised_in_the_caller() -> None:
    threads = EngineThreads(1)

    def refuse() -> None:
        raise InputError("field 'tier': expected one of gold, standard", hint="fix the field")

    async def caller() -> None:
        await threads.run(refuse)

    with pytest.raises(InputError, match="field 'tier'"):
        asyncio.run(caller())
    threads.close()


def test_the_callers_context_variables_are_seen_by_the_call() -> None:
    threads = EngineThreads(1)

    async def caller() -> str:
        REQUEST_ID.set("r-42")
        return await threads.run(REQUEST_ID.get)

    assert asyncio.run(caller()) == "r-42"
    threads.close()

"""What every route needs, built once per server: engine, gate, sessions, idempotency keys, engine threads."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any, TypeVar

from fastapi import Request

from engine.access import Gate, Principal
from engine.errors import NotAuthenticated
from engine.run.runtime import Engine
from engine.store.idempotency import IdempotencyKeys
from svcflow.server.auth import Sessions, bearer, csrf_ok, require

# Engine calls of one server process at once. More would only queue on the store: SQLite takes one
# writer at a time, and the SQLAlchemy pool holds 15 connections (5 + 10 overflow).
ENGINE_THREADS = 8

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[..., Any], tuple[Any, ...]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the request went away; the engine call itself has finished
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class EngineThreads:
    """Engine calls block (database, handlers with their timeouts), so they never run on the event loop;
    they run on a few threads of our own fed by one queue.

    Why not Starlette's `run_in_threadpool`: per call it takes anyio's capacity limiter, opens a cancel
    scope, looks up run-vars and hands the job over through a `queue.Queue` (Python-level locks); on the
    API's completion path that hop cost a quarter of the HTTP layer's CPU (bench/bench_api.py). Here a
    call is one put on a C `SimpleQueue` and one `call_soon_threadsafe` back. Semantics kept: the
    caller's context variables are copied into the call, its exception is raised in the caller, and a
    call whose request is cancelled still runs to its end (the engine commits or refuses, as a lost
    response would leave it anyway)."""

    def __init__(self, count: int = ENGINE_THREADS) -> None:
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"svcflow-engine-{n}", daemon=True)
                         for n in range(count)]
        for thread in self._threads:
            thread.start()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, contextvars.copy_context(), function, args))
        return await future

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._do(job)
            job = None  # hold no request's objects while idle

    @staticmethod
    def _do(job: _Job) -> None:
        loop, future, context, function, args = job
        try:
            outcome: tuple[Any, BaseException | None] = (context.run(function, *args), None)
        except BaseException as exc:  # handed to the awaiting request, raised there
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(_settle, future, *outcome)
        except RuntimeError:  # the event loop has closed: the server is stopping
            pass

    def close(self) -> None:
        """Let the threads end once the jobs queued before this call are done."""
        for _ in self._threads:
            self._jobs.put(None)


@dataclass
class Context:
    engine: Engine
    gate: Gate
    sessions: Sessions
    keys: IdempotencyKeys
    threads: EngineThreads = field(default_factory=EngineThreads)

    def authenticate(self, request: Request, *, api: bool = False) -> Principal:
        """The caller; a cookie session calling the API with POST must also send X-CSRF-Token."""
        who = require(request, self.gate, self.sessions)
        if api and request.method == "POST" and bearer(request) is None \
                and not csrf_ok(request, request.headers.get("x-csrf-token")):
            raise NotAuthenticated("a logged-in browser must send the X-CSRF-Token header with API POSTs",
                                   hint="or use an API token")
        return who

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """An engine call, off the event loop, on the server's engine threads."""
        return await self.threads.run(function, *args)

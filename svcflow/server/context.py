"""What every route needs, built once per server: engine, gate, sessions, idempotency keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from engine.access import Gate, Principal
from engine.errors import NotAuthenticated
from engine.run.runtime import Engine
from engine.store.idempotency import IdempotencyKeys
from svcflow.server.auth import Sessions, bearer, csrf_ok, require


@dataclass
class Context:
    engine: Engine
    gate: Gate
    sessions: Sessions
    keys: IdempotencyKeys

    def authenticate(self, request: Request, *, api: bool = False) -> Principal:
        """The caller; a cookie session calling the API with POST must also send X-CSRF-Token."""
        who = require(request, self.gate, self.sessions)
        if api and request.method == "POST" and bearer(request) is None \
                and not csrf_ok(request, request.headers.get("x-csrf-token")):
            raise NotAuthenticated("a logged-in browser must send the X-CSRF-Token header with API POSTs",
                                   hint="or use an API token")
        return who

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Engine calls block (database, handlers): off the event loop."""
        return await run_in_threadpool(function, *args)

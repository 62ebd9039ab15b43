"""The FastAPI application of `svcflow server`: the API under /api, the inbox under /inbox.

The server always enforces the directory: every request that changes state needs a principal
(an API token or a logged-in user), whatever SVCFLOW_DIRECTORY says for the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from engine.access import Gate, refusal_status
from engine.errors import DefinitionError, NotAuthenticated, SvcflowError
from engine.run.runtime import Engine
from engine.settings import Settings, get_settings
from engine.store.directory import Directory
from engine.store.idempotency import IdempotencyKeys
from svcflow.server import api, inbox
from svcflow.server.auth import Sessions
from svcflow.server.body_limit import BodyLimit, body_limit_bytes
from svcflow.server.context import Context
from svcflow.server.hot_path import HotPath

log = logging.getLogger("svcflow.server")


def create_app(engine: Engine | None = None, settings: Settings | None = None) -> FastAPI:
    from engine.access import library_roles
    from engine.time.clock import clock_from_spec

    settings = settings or get_settings()
    if engine is None:
        engine = Engine.from_settings(settings.database_url, settings.process_dir,
                                      clock=clock_from_spec(settings.clock))
    from flows.refresh import refresh_artifacts

    refresh_artifacts(engine)  # inbox and API changes show in the cases' Prefect artifacts (background)
    directory = Directory(engine.store, library_roles(engine.library) | set(settings.supervisor_roles),
                          token_cache_seconds=settings.token_cache_seconds)
    gate = Gate(engine, directory, supervisor_roles=settings.supervisor_roles, required=True)
    if not settings.session_secret:
        log.warning("SVCFLOW_SESSION_SECRET is not set: inbox sessions end when the server restarts")
    ctx = Context(engine, gate, Sessions(settings.session_secret), IdempotencyKeys(engine.store))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.threads.close()

    app = FastAPI(title="svcflow", version="1", lifespan=lifespan,
                  description="Customer-service cases: start, read, complete tasks, send messages. "
                              "Authenticate with `Authorization: Bearer <token>` (`svcflow tokens create`).")
    app.state.ctx = ctx

    app.add_exception_handler(SvcflowError, our_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, bad_request)  # type: ignore[arg-type]

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/inbox", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    complete = api.install(app, ctx)
    app.include_router(inbox.router(ctx))
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.endpoint is complete)
    app.add_middleware(HotPath, route=route, endpoint=complete,
                       handlers={SvcflowError: our_error, RequestValidationError: bad_request})
    app.add_middleware(BodyLimit, max_bytes=body_limit_bytes(settings.max_data_chars))  # outside the hot path
    return app


async def our_error(request: Request, exc: SvcflowError) -> Response:
    """A refusal or bad input as JSON (the API) or a page (the inbox); 401 sends a browser to the login."""
    if isinstance(exc, DefinitionError):
        status = 422
    elif isinstance(exc, NotAuthenticated):
        status = 401
    else:
        status = refusal_status(exc)
    if request.url.path.startswith("/inbox"):
        if status == 401:
            return RedirectResponse("/inbox/login", status_code=303)
        return inbox.error_page(request, status, exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": exc.message if not isinstance(exc, DefinitionError) else str(exc),
                         "hint": exc.hint, "type": type(exc).__name__}, status_code=status, headers=headers)


async def bad_request(request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"error": f"invalid request: {problems}", "hint": "see /openapi.json",
                         "type": "InputError"}, status_code=422)

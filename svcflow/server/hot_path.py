"""The API's busiest request, `POST /api/tasks/{task_id}/complete`, handed straight to its endpoint.

A CRM or IVR completes tasks at volume, and most of what FastAPI adds to that one request was
CPU, not function: its exception middleware, exit-stack middleware, route matching over every
route, and per-request dependency solving for an endpoint that takes only the `Request` (it reads
its body, path and headers itself). In py-spy profiles of bench/bench_api.py's server that was
the largest share of the HTTP layer's own CPU, more than the thread hop. This middleware matches the route's own path pattern and
awaits the same endpoint function FastAPI would, with the app's own exception handlers, so the
answer is byte for byte the same; the route stays registered with FastAPI for OpenAPI and for any
request this does not take. Everything outside it still applies: the server-error middleware (500),
FastAPI's request telemetry and the body limit (413).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Any], Awaitable[Response]]  # each takes its own exception type


class HotPath:
    """ASGI middleware: a request for `route` (method and full path) goes to `endpoint`; its exceptions of
    the types in `handlers` become their answers, any other propagates as it would from the router."""

    def __init__(self, app: ASGIApp, route: APIRoute, endpoint: Endpoint,
                 handlers: Mapping[type[Exception], Handler]) -> None:
        self.app = app
        self.route = route
        self.endpoint = endpoint
        self.handlers = tuple(handlers.items())
        self.methods = frozenset(route.methods or ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in self.methods:
            match = self.route.path_regex.match(scope["path"])
            if match is not None:
                convert = self.route.param_convertors
                scope["path_params"] = {key: convert[key].convert(value) for key, value in match.groupdict().items()}
                scope["route"] = self.route
                request = Request(scope, receive)
                try:
                    response = await self.endpoint(request)
                except Exception as exc:
                    handler = next((h for kind, h in self.handlers if isinstance(exc, kind)), None)
                    if handler is None:
                        raise
                    response = await handler(request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

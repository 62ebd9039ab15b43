"""A request body bigger than any acceptable input is refused (413) before it is read into memory.

The engine's limits (engine/run/limits.py) refuse over-large values and case data with a located
message, but only after the server has parsed the whole request: without this bound a 1 GB POST
would be held in memory first. The bound is derived from SVCFLOW_MAX_DATA_CHARS (JSON may spell
each character with up to six bytes, "\\uXXXX") plus room for the envelope, so every body the
engine could accept still gets through to its precise message.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENVELOPE_BYTES = 64 * 1024


def body_limit_bytes(max_data_chars: int) -> int:
    return max_data_chars * 6 + ENVELOPE_BYTES


class BodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over the limit, or once a streamed body passes it
    (a streamed body is read here, at most the limit, because FastAPI turns any error raised while it
    reads a body into a 400)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        if declared is not None:  # the server reads no more than declared
            await self.app(scope, receive, send)
            return
        # streamed (chunked) without a length: read it here, at most max_bytes, then hand it on
        chunks: list[bytes] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(send, seen)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: int) -> None:
        body: dict[str, Any] = {
            "error": f"the request body is more than {self.max_bytes:,} bytes (at least {size:,}); nothing was stored",
            "hint": "case data is limited by SVCFLOW_MAX_DATA_CHARS and each value by SVCFLOW_MAX_VALUE_CHARS",
            "type": "InputError"}
        payload = json.dumps(body).encode("utf-8")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


__all__ = ["BodyLimit", "body_limit_bytes"]

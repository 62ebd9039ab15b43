"""Who is calling: an API token (`Authorization: Bearer svcf_...`) or an inbox session cookie.

Session cookies are `user.issued.signature` with an HMAC-SHA256 over the first two parts, so
they cannot be forged without the server's key; forms carry a CSRF token that must match the
`svcflow_csrf` cookie (double submit), and the session cookie is SameSite=Lax and HttpOnly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from fastapi import Request

from engine.access import Gate, Principal
from engine.errors import NotAuthenticated

SESSION_COOKIE = "svcflow_session"
CSRF_COOKIE = "svcflow_csrf"
SESSION_SECONDS = 12 * 3600


class Sessions:
    def __init__(self, secret: str | None) -> None:
        self.key = (secret or secrets.token_hex(32)).encode("utf-8")

    def _sign(self, text: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.key, text.encode("utf-8"), hashlib.sha256).digest()).decode()

    def issue(self, user_id: str, now: float | None = None) -> str:
        payload = f"{base64.urlsafe_b64encode(user_id.encode()).decode()}.{int(now or time.time())}"
        return f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str | None, now: float | None = None) -> str | None:
        """The user id of a valid, unexpired session cookie."""
        if not cookie or cookie.count(".") != 2:
            return None
        encoded, issued, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{encoded}.{issued}")):
            return None
        try:
            if (now or time.time()) - int(issued) > SESSION_SECONDS:
                return None
            return base64.urlsafe_b64decode(encoded.encode()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def principal_of(request: Request, gate: Gate, sessions: Sessions) -> Principal | None:
    """The authenticated principal, or None. Disabled users and revoked tokens are not principals."""
    text = bearer(request)
    if text is not None:
        token = gate.directory.verify_token(text)
        return gate.token_principal(token.name, token.roles) if token is not None else None
    user_id = sessions.read(request.cookies.get(SESSION_COOKIE))
    if user_id is None:
        return None
    principal = gate.principal(user_id)
    return principal if principal.kind == "user" else None


def require(request: Request, gate: Gate, sessions: Sessions) -> Principal:
    principal = principal_of(request, gate, sessions)
    if principal is None:
        reason = "invalid or revoked API token" if bearer(request) else "not logged in"
        gate.directory.audit("unauthenticated", request.client.host if request.client else "?",
                             {"path": request.url.path, "method": request.method, "reason": reason},
                             gate.engine.clock.now())
        raise NotAuthenticated(f"authentication required: {reason}",
                               hint="send `Authorization: Bearer <token>` (svcflow tokens create) or log in")
    return principal


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and submitted and hmac.compare_digest(cookie, submitted))


def new_csrf() -> str:
    return secrets.token_urlsafe(24)

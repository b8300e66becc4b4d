"""The admin credential of agent management: ``Authorization: Bearer <admin_token>``.

The token is compared in constant time (SHA-256 of both sides, then ``hmac.compare_digest``,
so neither its content nor its length leaks through timing). Without an ``admin_token``
setting the write endpoints are off: 403 with the way to turn them on.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import hdrs, web

from ivr_engine.api.errors import error_response

DISABLED_MESSAGE = (
    "agent management is turned off: set admin_token (env IVR_ENGINE_ADMIN_TOKEN, at least "
    "32 random characters, e.g. `openssl rand -hex 32`) and restart the engine"
)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def admin_refusal(request: web.Request, admin_token: str | None) -> web.Response | None:
    """None when the request carries the admin token; otherwise the 401/403 to answer."""
    if admin_token is None:
        return error_response(403, "admin_disabled", DISABLED_MESSAGE)
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return _unauthorized("send the admin token as `Authorization: Bearer <admin_token>`")
    if not hmac.compare_digest(_digest(given), _digest(admin_token)):
        return _unauthorized("the admin token is wrong")
    return None


def _unauthorized(message: str) -> web.Response:
    response = error_response(401, "unauthorized", message)
    response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="ivr-engine agents"'
    return response

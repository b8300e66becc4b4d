"""The admin credential: ``Authorization: Bearer <admin_token>``.

It guards the admin routes: agent management (``agents_api``: the writes) and webhook dead
letters (``omni.webhook_admin``: listing and re-driving). Parsed and compared like the API
tokens (``ivr_engine.api.auth``: SHA-256 of both sides, ``hmac.compare_digest``, so neither
content nor length leaks through timing). Without an ``admin_token`` setting those routes
are off: 403 with the way to turn them on. With ``api_tokens`` set, a valid API token that
is not the admin token gets 403 (``insufficient_scope``): it is known, but not the admin's.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from ivr_engine.api.auth import CREDENTIAL, LiveTokens, bearer_token, same_token, unauthorized
from ivr_engine.api.errors import error_response

REALM = "ivr-engine admin"
ADMIN_ROUTES = "agent management and webhook dead letters"
DISABLED_MESSAGE = (
    f"the admin routes ({ADMIN_ROUTES}) are turned off: set admin_token (env "
    "IVR_ENGINE_ADMIN_TOKEN, at least 32 random characters, e.g. `openssl rand -hex 32`) "
    "and restart the engine (set in the settings file: or send the engine SIGHUP)"
)
SCOPE_MESSAGE = f"an API token cannot use the admin routes ({ADMIN_ROUTES}): use admin_token"


def admin_refusal(
    request: web.Request, admin_token: str | LiveTokens | None
) -> web.Response | None:
    """None when the request carries the admin token; otherwise the 401/403 to answer.
    ``LiveTokens``: the admin token in force now (a reload may change it)."""
    if isinstance(admin_token, LiveTokens):
        admin_token = admin_token.admin
    if admin_token is None:
        return error_response(403, "admin_disabled", DISABLED_MESSAGE)
    given = bearer_token(request)
    if given is None:
        return unauthorized(
            "send the admin token as `Authorization: Bearer <admin_token>`", realm=REALM
        )
    if same_token(given, admin_token):
        return None
    if request.get(CREDENTIAL) == "api":
        response = error_response(403, "admin_token_required", SCOPE_MESSAGE)
        response.headers[hdrs.WWW_AUTHENTICATE] = (
            f'Bearer realm="{REALM}", error="insufficient_scope"'
        )
        return response
    return unauthorized("the admin token is wrong", realm=REALM, invalid=True)

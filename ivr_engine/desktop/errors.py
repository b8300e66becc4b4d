"""Agent-state and login-limit failures as clear JSON errors, and the security headers of
every response.

The generic cases (``ApiError``, HTTP errors, the timeline being down, unexpected bugs) are
left to the API's ``error_middleware``, which sits outside this one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from ivr_engine.agents import AgentStateUnavailable, InvalidTransition, UnknownAgent
from ivr_engine.api.errors import error_response
from ivr_engine.desktop.throttle import LoginLimitsUnavailable

log = logging.getLogger(__name__)

STATE_WORDS: Final[Mapping[str, str]] = {
    "logged_out": "logged out",
    "available": "available",
    "reserved": "being connected to a call",
    "ringing": "ringing",
    "on_call": "on a call",
    "wrap_up": "in wrap-up",
    "paused": "paused",
}
_TARGET_VERBS: Final[Mapping[str, str]] = {
    "available": "go available",
    "paused": "pause",
    "logged_out": "log out of the queue",
}
_HINTS: Final[Mapping[str, str]] = {
    "reserved": "wait until the call reaches you",
    "ringing": "answer the call, or pause to let it go",
    "on_call": "finish the call first",
}

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def transition_message(current: str, target: str) -> str:
    """A sentence for the agent: "You cannot pause while on a call: finish the call first."."""
    verb = _TARGET_VERBS.get(target, f"change to {target}")
    where = STATE_WORDS.get(current, current)
    hint = _HINTS.get(current)
    return f"You cannot {verb} while {where}" + (f": {hint}." if hint else ".")


@web.middleware
async def agent_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidTransition as exc:
        message = transition_message(exc.current, exc.target)
        return error_response(409, "invalid_transition", message, extra={"state": exc.current})
    except UnknownAgent:
        message = "you are not registered in the live agent state: log in again"
        return error_response(409, "agent_not_registered", message)
    except AgentStateUnavailable:
        log.warning("%s %s: agent state unavailable", request.method, request.path, exc_info=True)
        message = "the agent state service is unavailable: try again in a moment"
        return error_response(503, "agent_state_unavailable", message)
    except LoginLimitsUnavailable:  # fail closed: a login that cannot be counted is not checked
        log.warning("%s %s: login limits unavailable", request.method, request.path, exc_info=True)
        message = "logins cannot be counted right now (shared store down): try again in a moment"
        return error_response(503, "login_limits_unavailable", message)


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:  # a WebSocket has sent its headers already
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response

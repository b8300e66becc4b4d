"""Request guards of the desktop: Origin check, session cookie, bounded JSON bodies.

* Origin: a WebSocket upgrade must carry an Origin equal to the request's own
  ``scheme://host`` or one of ``DesktopConfig.allowed_origins``; a POST with any other
  Origin is refused too (browsers always send Origin on cross-site POSTs).
* Session: the signed cookie must name a live session of an agent still in the directory,
  made with the agent's credentials as they are now (a new password or token ends it).
* Bodies: ``application/json`` only (a cross-site form cannot send it without a CORS
  pre-flight), at most ``max_body_bytes`` read within ``body_timeout_s``, parsed by strict
  pydantic models; every refusal is a JSON error that says what to fix.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import hdrs, web
from pydantic import BaseModel, ValidationError

from ivr_engine.api.body_time import read_in_time
from ivr_engine.api.errors import ApiError, from_validation_error
from ivr_engine.desktop.directory import DesktopAgent
from ivr_engine.desktop.keys import CONFIG, DIRECTORY, SESSIONS
from ivr_engine.desktop.sessions import Session, SessionStoreUnavailable

M = TypeVar("M", bound=BaseModel)
_CHUNK = 16 * 1024


def origin_allowed(request: web.Request) -> bool:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return False
    origin = origin.strip().lower()
    own = f"{request.scheme}://{request.host}".lower()
    return origin == own or origin in request.app[CONFIG].allowed_origins


def require_origin(request: web.Request) -> None:
    """For WebSocket upgrades: the Origin header must be present and allowed."""
    if not origin_allowed(request):
        raise ApiError(403, "origin_rejected", "this Origin may not open the agent desktop")


def check_post_origin(request: web.Request) -> None:
    """For POSTs: no Origin (not a browser) is fine; a foreign Origin is refused."""
    if hdrs.ORIGIN in request.headers and not origin_allowed(request):
        raise ApiError(403, "origin_rejected", "cross-site request refused")


async def current_session(request: web.Request) -> Session | None:
    """503 when the shared session store does not answer (the agent is not logged out)."""
    cookie = request.cookies.get(request.app[CONFIG].cookie_name)
    try:
        return await request.app[SESSIONS].from_cookie(cookie)
    except SessionStoreUnavailable as exc:
        raise ApiError(503, "sessions_unavailable", "sessions are unavailable: retry") from exc


async def require_session(request: web.Request) -> tuple[Session, DesktopAgent]:
    """The session and its agent; 401 when there is none, the agent is gone, or the agent's
    password or token changed since this session logged in (the sweep then ends it)."""
    session = await current_session(request)
    agent = None if session is None else request.app[DIRECTORY].get(session.agent_id)
    if session is None or agent is None or session.credentials != agent.credentials_tag:
        raise ApiError(401, "session_required", "log in first (no session, or it has ended)")
    return session, agent


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, session: Session
) -> None:
    config = request.app[CONFIG]
    response.set_cookie(
        config.cookie_name,
        request.app[SESSIONS].cookie_value(session),
        max_age=int(config.session_ttl_s),
        path=config.base_path,
        secure=config.secure_cookie,
        httponly=True,
        samesite="Strict",
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    config = request.app[CONFIG]
    response.del_cookie(
        config.cookie_name,
        path=config.base_path,
        secure=config.secure_cookie,
        httponly=True,
        samesite="Strict",
    )


async def read_json(request: web.Request, model: type[M]) -> M:
    """The body as ``model``: 415 unless JSON, 413 when too big, 400 naming the bad field."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    limit = request.app[CONFIG].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await read_in_time(
            request, _read_capped(request, limit), request.app[CONFIG].body_timeout_s
        )
    except TimeoutError:
        raise ApiError(408, "body_timeout", "the request body took too long to arrive") from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


async def _read_capped(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the request body is larger than {limit} bytes")

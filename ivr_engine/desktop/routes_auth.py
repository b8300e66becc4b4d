"""Log in (password or API token), log out, and who am I.

Login: a failed attempt is answered the same for an unknown agent and a wrong password
(both cost one scrypt); ``max_failed_logins`` failures within the window lock that agent id
(or, for tokens, that address) out for the rest of it. Each attempt is counted before its
password is checked (``throttle``), and a success takes back only its own count.

A successful login registers the agent in the live state store (it starts logged out, or
keeps its state) and opens a new session, which keeps the agent's credentials tag (a new
password or token ends it); any session named by the request's cookie is ended (no
session fixation).

Logout ends the session and closes its sockets; when it was the agent's last session the
agent is also logged out of the queue if the state allows (not in the middle of a call).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web

from ivr_engine.agents import AgentState, InvalidTransition
from ivr_engine.api.errors import ApiError
from ivr_engine.desktop.bodies import LoginBody
from ivr_engine.desktop.directory import AgentDirectory, DesktopAgent
from ivr_engine.desktop.guards import (
    check_post_origin,
    clear_session_cookie,
    current_session,
    read_json,
    require_session,
    set_session_cookie,
)
from ivr_engine.desktop.keys import AGENTS, DIRECTORY, HUB, SESSIONS, THROTTLE
from ivr_engine.desktop.messages import agent_json, state_json
from ivr_engine.desktop.sessions import SessionStoreUnavailable
from ivr_engine.desktop.throttle import TooManyAttempts

T = TypeVar("T")

routes = web.RouteTableDef()


def _throttle_key(request: web.Request, body: LoginBody) -> str:
    return f"agent:{body.agent_id}" if body.agent_id is not None else f"token:{request.remote}"


def _check(directory: AgentDirectory, body: LoginBody) -> DesktopAgent | None:
    if body.token is not None:
        return directory.check_token(body.token)
    assert body.agent_id is not None and body.password is not None
    return directory.check_password(body.agent_id, body.password)


async def _checked_agent(request: web.Request, body: LoginBody) -> DesktopAgent:
    """Who the body logs in as: 429 while throttled, 401 for a wrong password, an unknown
    agent or an unknown token."""
    throttle = request.app[THROTTLE]
    try:  # counted as a failure before the check: parallel guesses see it at once
        attempt = throttle.begin([(_throttle_key(request, body), None)])
    except TooManyAttempts as exc:
        seconds = math.ceil(exc.retry_after_s)
        message = f"too many failed logins: try again in {seconds} s"
        extra = {"retry_after_s": seconds}
        raise ApiError(429, "too_many_attempts", message, extra=extra) from None
    agent = await asyncio.to_thread(_check, request.app[DIRECTORY], body)
    if agent is None:
        what = "unknown API token" if body.token is not None else "unknown agent or wrong password"
        raise ApiError(401, "login_failed", what)
    throttle.release(attempt)
    return agent


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    check_post_origin(request)
    body = await read_json(request, LoginBody)
    agent = await _checked_agent(request, body)
    snapshot = await request.app[AGENTS].register_agent(
        agent.agent_id, max_concurrent=agent.max_concurrent
    )
    await _end_session_of(request)
    sessions = request.app[SESSIONS]
    session = await _sessions_call(sessions.create(agent.agent_id, agent.credentials_tag))
    response = web.json_response({"agent": agent_json(agent), "state": state_json(snapshot)})
    set_session_cookie(request, response, session)
    return response


async def _end_session_of(request: web.Request) -> str | None:
    """End the session the request's cookie names; returns its agent id."""
    session = await current_session(request)
    if session is None:
        return None
    await _sessions_call(request.app[SESSIONS].drop(session.session_id))
    await request.app[HUB].close_session(session.session_id, "logged out")
    return session.agent_id


async def _sessions_call(work: Awaitable[T]) -> T:
    try:
        return await work
    except SessionStoreUnavailable as exc:
        raise ApiError(503, "sessions_unavailable", "sessions are unavailable: retry") from exc


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    check_post_origin(request)
    agent_id = await _end_session_of(request)
    state = None
    if agent_id is not None and not await _sessions_call(
        request.app[SESSIONS].sessions_of(agent_id)
    ):
        await request.app[HUB].forget(agent_id)
        try:
            state = state_json(await request.app[AGENTS].set_state(agent_id, AgentState.LOGGED_OUT))
        except InvalidTransition:  # on a call: stays in the queue until it ends
            state = state_json(await request.app[AGENTS].get(agent_id))
    response = web.json_response({"logged_out": True, "state": state})
    clear_session_cookie(request, response)
    return response


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    _session, agent = await require_session(request)
    snapshot = await request.app[AGENTS].get(agent.agent_id)
    pop = request.app[HUB].latest_pop(agent.agent_id)
    return web.json_response(
        {"agent": agent_json(agent), "state": state_json(snapshot), "pop": pop}
    )

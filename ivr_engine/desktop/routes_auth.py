"""Log in (password or API token), log out, and who am I.

Login: a failed attempt is answered the same for an unknown agent and a wrong password
(both cost one scrypt). ``max_failed_logins`` failures within the window lock that agent id
out at that client address (tokens: that address) for the rest of it; someone guessing
elsewhere does not lock the agent out. ``max_failed_logins_per_agent`` failures (4 times as
many by default) from all addresses together lock the agent out everywhere except at the
addresses it logged in from lately (distributed guessing). Each attempt is counted before
its password is checked (``throttle``), and a success takes back only its own count. The
counts are the engine's (``LoginLimits``: in Redis with several engine processes); when they
cannot be read the login is refused with 503 before its password is checked (fail closed).

Unknown agent ids cost a scrypt like known ones (checked against a dummy hash: no timing
oracle), so they are what gets cheap instead: ``max_failed_logins_per_address`` failures
from one client address, whatever the agent ids, refuse it before any hashing, and at most
``max_password_checks`` scrypts run at once (a few more wait; beyond that 503 login_busy).

A successful login registers the agent in the live state store (it starts logged out, or
keeps its state) and opens a new session, which keeps the agent's credentials tag (a new
password or token ends it); any session named by the request's cookie is ended (no
session fixation).

Logout ends the session and closes its sockets; when it was the agent's last session the
agent is also logged out of the queue if the state allows (not in the middle of a call).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
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
from ivr_engine.desktop.keys import (
    AGENTS,
    CHECK_GATE,
    CONFIG,
    DIRECTORY,
    HUB,
    SESSIONS,
    THROTTLE,
)
from ivr_engine.desktop.messages import agent_json, state_json
from ivr_engine.desktop.sessions import SessionStoreUnavailable
from ivr_engine.desktop.throttle import (
    Attempt,
    GateFull,
    LoginLimits,
    LoginLimitsUnavailable,
    TooManyAttempts,
)
from ivr_engine.telephony.peers import Network

T = TypeVar("T")

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def client_address(request: web.Request) -> str:
    """The client as the throttle counts it: an IPv6 client by its /64 (one host commonly
    has the whole /64), an IPv4-mapped one as IPv4. Behind a trusted proxy, the nearest
    address in X-Forwarded-For that is not itself a trusted proxy."""
    remote = request.remote or "unknown"
    try:
        ip = _unmapped(ipaddress.ip_address(remote))
    except ValueError:
        return remote
    ip = forwarded_client(
        ip, request.headers.getall("X-Forwarded-For", []), request.app[CONFIG].trusted_proxies
    )
    if isinstance(ip, ipaddress.IPv6Address):  # unmapped above: a real IPv6 client
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def forwarded_client(peer: Address, forwarded: list[str], proxies: tuple[Network, ...]) -> Address:
    """The client a chain of trusted proxies vouches for: ``peer`` unless it is one of
    ``proxies``; then X-Forwarded-For read from the right (each proxy appends the address
    it got the request from), skipping trusted proxies. Anything unreadable on the way
    stops there, at the last address that was vouched for (a client cannot claim to be
    someone else by writing the header itself: only what a trusted proxy appended counts)."""
    hops = [hop.strip() for value in forwarded for hop in value.split(",")]
    client = peer
    while any(client in network for network in proxies) and hops:
        try:
            client = _unmapped(ipaddress.ip_address(hops.pop()))
        except ValueError:
            break
    return client


def _unmapped(ip: Address) -> Address:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


Limits = list[tuple[str, int | None]]


async def _limits(request: web.Request, body: LoginBody) -> tuple[str | None, Limits]:
    """The key a success trusts (None: tokens), and each (key, limit) the attempt counts on."""
    address = client_address(request)
    if body.agent_id is None:
        return None, [(f"token:{address}", None)]
    pair = f"agent:{body.agent_id}@{address}"
    limits: Limits = [(pair, None)]
    if not await request.app[THROTTLE].trusted(pair):
        config = request.app[CONFIG]
        limits.append((f"agent:{body.agent_id}", config.agent_ceiling))
        limits.append((f"address:{address}", config.address_ceiling))
    return pair, limits


def _check(directory: AgentDirectory, body: LoginBody) -> DesktopAgent | None:
    if body.token is not None:
        return directory.check_token(body.token)
    assert body.agent_id is not None and body.password is not None
    return directory.check_password(body.agent_id, body.password)


async def _checked_agent(request: web.Request, body: LoginBody) -> DesktopAgent:
    """Who the body logs in as: 429 while throttled, 503 when too many checks are running,
    401 for a wrong password, an unknown agent or an unknown token. ``LoginLimitsUnavailable``
    (503, ``errors.py``) when the counts cannot be read or written."""
    throttle = request.app[THROTTLE]
    trusted_key, limits = await _limits(request, body)
    try:  # counted as a failure before the check: parallel guesses see it at once
        attempt = await throttle.begin(limits)
    except TooManyAttempts as exc:
        seconds = math.ceil(exc.retry_after_s)
        message = f"too many failed logins: try again in {seconds} s"
        extra = {"retry_after_s": seconds}
        raise ApiError(429, "too_many_attempts", message, extra=extra) from None
    try:
        async with request.app[CHECK_GATE].slot():
            agent = await asyncio.to_thread(_check, request.app[DIRECTORY], body)
    except GateFull:
        await _forgive(throttle, attempt, None)  # not checked: not a failure
        message = "too many logins are being checked: retry in a second"
        raise ApiError(503, "login_busy", message, extra={"retry_after_s": 1}) from None
    if agent is None:
        what = "unknown API token" if body.token is not None else "unknown agent or wrong password"
        raise ApiError(401, "login_failed", what)
    await _forgive(throttle, attempt, trusted_key)
    return agent


async def _forgive(throttle: LoginLimits, attempt: Attempt, trusted_key: str | None) -> None:
    """Take back an attempt that was no failure (and trust the desk it logged in from):
    best effort. The password is already checked; a count the limits' store did not take
    back expires with the window, so a store that fails now costs a login nothing."""
    try:
        await throttle.release(attempt)
        if trusted_key is not None:
            await throttle.trust(trusted_key)
    except LoginLimitsUnavailable as exc:
        log.warning("desktop login: could not take back a login attempt's count: %s", exc)


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
    made = sessions.create(agent.agent_id, agent.credentials_tag)
    session, evicted = await _sessions_call(made)
    for old in evicted:  # beyond the per-agent maximum: its sockets close as on logout
        await request.app[HUB].close_session(old.session_id, "ended by a newer login")
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

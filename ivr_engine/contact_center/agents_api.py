"""``/v1/agents``: the live roster with each agent's live state, and agent management.

Reads need an API token like the rest of ``/v1`` when ``api_tokens`` is set
(``api.auth``). Writes need the admin token (``admin_auth``): ``POST /v1/agents`` (409 if
the id exists), ``PUT`` (the whole profile; credentials kept unless given), ``PATCH`` (the
fields given), ``DELETE``. A write goes to the shared roster table and is applied to this
process at once (other engine processes within ``ROSTER_POLL_S``). Passwords are stored as
scrypt hashes only and no credential ever leaves the server. Errors: 400 shape, 401/403
auth, 404, 409, 413, 415, 422 roster rules (unknown skill, no way to log in), 503 database
down.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from aiohttp import web

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.agents.model import AgentSnapshot, AgentState
from ivr_engine.api.auth import LiveTokens
from ivr_engine.api.errors import ApiError, bad_request
from ivr_engine.api.schemas import parse_body
from ivr_engine.contact_center.admin_auth import admin_refusal
from ivr_engine.contact_center.agent_bodies import (
    AgentPatchBody,
    AgentProfileBody,
    AgentRuleError,
    NewAgentBody,
    patched_fields,
    record_from_fields,
)
from ivr_engine.contact_center.agent_record import AgentRecord
from ivr_engine.contact_center.agents_json import AgentJson, AgentListJson, PauseJson
from ivr_engine.contact_center.device_state import PauseNote
from ivr_engine.contact_center.live_roster import LiveRoster
from ivr_engine.contact_center.pause_notes import PauseNotes
from ivr_engine.contact_center.roster_store import AgentExists, AgentMissing, TokenTaken
from ivr_engine.desktop.directory import AGENT_ID_PATTERN
from ivr_engine.desktop.passwords import hash_password
from ivr_engine.domain.errors import TimelineUnavailable

log = logging.getLogger(__name__)
_AGENT_ID = re.compile(AGENT_ID_PATTERN)
_PROFILE_KEYS = ("name", "sip_endpoint", "skills", "languages", "team", "max_concurrent")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


def agents_routes(
    roster: LiveRoster,
    agents: AgentStateStore,
    clock: Callable[[], datetime],
    *,
    admin_token: str | LiveTokens | None = None,
    pause_notes: Callable[[], PauseNotes | None] = lambda: None,
    store_timeout_s: float = 0.5,
) -> web.RouteTableDef:
    """``pause_notes``: where the device tracker keeps why agents are paused (None: no AMI)."""
    routes = web.RouteTableDef()

    async def live_states() -> tuple[dict[str, AgentSnapshot], bool]:
        try:
            async with asyncio.timeout(store_timeout_s):
                return dict(await agents.snapshot(now=clock())), True
        except (TimeoutError, AgentStateError):
            return {}, False

    async def live_state(agent_id: str) -> AgentSnapshot | None:
        try:
            async with asyncio.timeout(store_timeout_s):
                return await agents.get(agent_id, now=clock())
        except (TimeoutError, AgentStateError):  # UnknownAgent included
            return None

    async def shown(
        record: AgentRecord, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        """One agent as ``GET /v1/agents/{id}`` shows it; after a write, the state the
        roster's refresh registered (a new agent: ``logged_out``)."""
        note = (await why_paused()).get(record.agent_id)
        body = agent_json(record, await live_state(record.agent_id), note)
        return _json(body, status=status, headers=headers)

    async def why_paused() -> dict[str, PauseNote]:
        notes = pause_notes()
        if notes is None:
            return {}
        try:
            async with asyncio.timeout(store_timeout_s):
                return dict(await notes.all())
        except (TimeoutError, AgentStateError):
            return {}  # the reasons are extra: the roster is still answered

    def admin(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            refusal = admin_refusal(request, admin_token)
            return refusal if refusal is not None else await handler(request)

        return checked

    @routes.get("/v1/agents")
    async def list_agents(_request: web.Request) -> web.Response:
        live, available = await live_states()
        notes = await why_paused()
        rows = [
            agent_json(record, live.get(record.agent_id), notes.get(record.agent_id))
            for record in roster.records()
        ]
        body: AgentListJson = {"agents": rows, "agent_state_available": available}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    @routes.get("/v1/agents/{agent_id}")
    async def get_agent(request: web.Request) -> web.Response:
        record = roster.get(agent_id_param(request))
        if record is None:
            raise ApiError(404, "agent_not_found", "agent not found")
        return await shown(record)

    @routes.post("/v1/agents")
    @admin
    async def create_agent(request: web.Request) -> web.Response:
        body = await parse_body(request, NewAgentBody)
        fields = _fields(body)
        password = await _hash(body.password)
        record = _checked(
            lambda: record_from_fields(body.agent_id, fields, password, None, roster.known_skills)
        )
        await _write(roster, roster.store.create(record))
        return await shown(record, 201, {"Location": f"/v1/agents/{record.agent_id}"})

    @routes.put("/v1/agents/{agent_id}")
    @admin
    async def replace_agent(request: web.Request) -> web.Response:
        agent_id = agent_id_param(request)
        body = await parse_body(request, AgentProfileBody)
        if body.agent_id is not None and body.agent_id != agent_id:
            raise ApiError(400, "validation_error", "agent_id: differs from the path's agent id")
        fields = _fields(body)
        return await shown(await _update(roster, agent_id, fields, await _hash(body.password)))

    @routes.patch("/v1/agents/{agent_id}")
    @admin
    async def patch_agent(request: web.Request) -> web.Response:
        agent_id = agent_id_param(request)
        body = await parse_body(request, AgentPatchBody)
        try:
            fields = patched_fields(body)
        except AgentRuleError as exc:
            raise bad_request(exc.field, exc.message) from None
        return await shown(await _update(roster, agent_id, fields, await _hash(body.password)))

    @routes.delete("/v1/agents/{agent_id}")
    @admin
    async def delete_agent(request: web.Request) -> web.Response:
        await _write(roster, roster.store.delete(agent_id_param(request)))
        return web.Response(status=204)

    return routes


def agent_json(
    record: AgentRecord, snap: AgentSnapshot | None, note: PauseNote | None = None
) -> AgentJson:
    return {
        "agent_id": record.agent_id,
        "name": record.name,
        "endpoint": record.sip_endpoint,
        "team": record.team,
        "skills": dict(record.skills),
        "languages": list(record.languages),
        "max_concurrent": record.max_concurrent,
        "has_password": record.password_hash is not None,
        "has_api_token": record.token_sha256 is not None,
        "state": snap.state.value if snap is not None else None,
        "since": snap.since.isoformat() if snap is not None else None,
        "interactions": list(snap.interactions) if snap is not None else [],
        "pause": _pause_json(snap, note),
    }


def _pause_json(snap: AgentSnapshot | None, note: PauseNote | None) -> PauseJson | None:
    """The note, if it explains the pause the agent is in now (it is stale once the agent
    changed state: its ``since`` is that of the pause it was written for)."""
    if snap is None or note is None or snap.state is not AgentState.PAUSED:
        return None
    if abs(snap.since.timestamp() - note.since) > 0.001:
        return None
    return {"reason": note.reason, "detail": note.detail, "by_engine": note.engine_made}


def agent_id_param(request: web.Request) -> str:
    """The agent id in the path; a malformed one cannot exist, so it is a 404."""
    value = request.match_info["agent_id"]
    if not _AGENT_ID.fullmatch(value):
        raise ApiError(404, "agent_not_found", "agent not found")
    return value


def _fields(body: AgentProfileBody) -> dict[str, object]:
    """The whole profile (defaults for what is left out), and the credentials only when
    the body names them (``null`` clears one)."""
    given = {key: getattr(body, key) for key in ("password", "token_sha256")}
    profile = {key: getattr(body, key) for key in _PROFILE_KEYS}
    return {**profile, **{key: v for key, v in given.items() if key in body.model_fields_set}}


async def _hash(password: str | None) -> str | None:
    if password is None:
        return None
    hashed = await asyncio.to_thread(hash_password, password)  # scrypt: off the loop
    return hashed.encode()


def _checked(step: Callable[[], T]) -> T:
    try:
        return step()
    except AgentRuleError as exc:
        raise _rule_error(exc) from None


def _rule_error(exc: AgentRuleError) -> ApiError:
    detail = {"loc": exc.field, "msg": exc.message, "type": "roster_rule"}
    return ApiError(422, "roster_rule", str(exc), details=[detail])


async def _update(
    roster: LiveRoster, agent_id: str, fields: dict[str, object], password: str | None
) -> AgentRecord:
    def change(base: AgentRecord) -> AgentRecord:
        return record_from_fields(agent_id, fields, password, base, roster.known_skills)

    try:
        return await _write(roster, roster.store.update(agent_id, change))
    except AgentRuleError as exc:
        raise _rule_error(exc) from None


async def _write(roster: LiveRoster, step: Awaitable[T]) -> T:
    """Run one roster write, then apply the roster here (other processes poll for it)."""
    try:
        result = await step
    except AgentExists as exc:
        raise ApiError(409, "agent_exists", str(exc)) from None
    except AgentMissing:
        raise ApiError(404, "agent_not_found", "agent not found") from None
    except TokenTaken as exc:
        raise ApiError(409, "token_taken", str(exc)) from None
    try:
        await roster.refresh()
    except TimelineUnavailable as exc:  # written: the poll will apply it
        log.warning("agent roster written but not reloaded yet: %s", exc)
    return result


def _json(
    body: AgentJson, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        body, status=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )

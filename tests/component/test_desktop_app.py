"""The agent desktop over HTTP and WebSocket: real SQLite timeline, in-process agent store.

Every test mounts the desktop at /desktop in a tiny root app, as the engine does, and talks
to it through aiohttp's test client (cookies kept by the client's jar).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import WSMsgType, WSServerHandshakeError, web
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.agents import AgentState, AgentStateStore, open_agent_state_store
from ivr_engine.api.app import create_api_app
from ivr_engine.desktop import (
    MASK,
    AgentDirectory,
    DesktopAgent,
    DesktopConfig,
    DesktopHub,
    Ring,
    create_desktop_app,
    hash_password,
    intent_labels_from_menus,
    masking_from_menus,
)
from ivr_engine.desktop.passwords import token_digest
from ivr_engine.desktop.pop import iso_time
from ivr_engine.desktop.redis_sessions import RedisSessionStore
from ivr_engine.desktop.sessions import SessionStore
from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.menu_config import load_menus
from ivr_engine.ports import Customer, Identity, NewTimelineEvent, StoredEvent
from ivr_engine.timeline import Timeline, open_timeline
from tests.redis_support import REDIS_URL, delete_prefix

REPO = Path(__file__).resolve().parents[2]
MENUS = load_menus(REPO / "config" / "menus")
PASSWORD = "correct horse battery staple"
TOKEN = "tok_" + "x" * 40
WS_TIMEOUT = 5.0
Client = TestClient[Any, Any]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _directory() -> AgentDirectory:
    fast = hash_password(PASSWORD, n=2**10)  # cheap for tests; the default N is 2**14
    return AgentDirectory(
        [
            DesktopAgent("a100", "Alice Martin", "PJSIP/alice", password_hash=fast),
            DesktopAgent("a200", "Bob Stone", "PJSIP/bob", password_hash=fast),
            DesktopAgent("bot1", "CTI bar", "PJSIP/cti", token_sha256=token_digest(TOKEN)),
        ]
    )


@dataclass
class Desk:
    client: Client
    agents: AgentStateStore
    hub: DesktopHub
    timeline: Timeline
    clock: FakeClock

    @property
    def origin(self) -> str:
        return f"http://{self.client.server.host}:{self.client.server.port}"

    async def login(self, agent_id: str = "a100", password: str = PASSWORD) -> dict[str, Any]:
        body = {"agent_id": agent_id, "password": password}
        return await ok(await self.client.post("/desktop/login", json=body))

    async def action(self, action: str, status: int = 200) -> dict[str, Any]:
        resp = await self.client.post(
            "/desktop/api/state", json={"action": action}, headers={"Origin": self.origin}
        )
        return await expect(resp, status)

    async def ws(self, **kw: Any) -> Any:
        kw.setdefault("origin", self.origin)
        return await self.client.ws_connect("/desktop/ws", **kw)


async def expect(resp: Any, status: int) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", text
    return cast(dict[str, Any], json.loads(text))


async def ok(resp: Any) -> dict[str, Any]:
    return await expect(resp, 200)


async def error(resp: Any, status: int, code: str) -> str:
    body = await expect(resp, status)
    assert body["error"]["code"] == code, body
    return cast(str, body["error"]["message"])


async def receive(ws: Any, kind: str | None = None) -> dict[str, Any]:
    """The next message (of ``kind``: others are skipped), within WS_TIMEOUT."""
    async with asyncio.timeout(WS_TIMEOUT):
        while True:
            message = await ws.receive()
            assert message.type == WSMsgType.TEXT, message
            data = cast(dict[str, Any], json.loads(message.data))
            if kind is None or data["type"] == kind:
                return data


async def _desk(
    sqlite_url: str,
    config: DesktopConfig | None = None,
    sessions: SessionStore | None = None,
    **hub_kw: Any,
) -> AsyncIterator[Desk]:
    """``sqlite_url``: a copy of a migrated SQLite file in tmp_path (see conftest)."""
    timeline = await open_timeline(sqlite_url, migrate=False)
    agents = open_agent_state_store(None)
    hub_kw.setdefault("masking", masking_from_menus(MENUS.values()))
    hub_kw.setdefault("intent_labels", intent_labels_from_menus(MENUS.values()))
    hub = DesktopHub(hub_kw.pop("store", timeline.store), **hub_kw)
    clock = FakeClock()
    desktop = create_desktop_app(
        directory=_directory(),
        agents=agents,
        hub=hub,
        config=config or DesktopConfig(secure_cookie=False),
        clock=clock,
        sessions=sessions,
    )
    root = web.Application()
    root.add_subapp("/desktop", desktop)
    try:
        async with TestClient(TestServer(root)) as client:
            yield Desk(client, agents, hub, timeline, clock)
    finally:
        await agents.aclose()
        await timeline.close()


@pytest.fixture
async def desk(sqlite_url: str) -> AsyncIterator[Desk]:
    async for d in _desk(sqlite_url):
        yield d


async def _customer(timeline: Timeline, name: str = "Grace Hopper") -> Customer:
    store = timeline.store
    customer = await store.create_customer(
        name, [Identity("phone", "+15550100001"), Identity("account", "12345678")]
    )
    now = datetime.now(UTC)
    events = [
        ("chat", "billing", 2, "chat.message"),
        ("email", "moving", 5, "email.received"),
        ("voice", "billing", 9, "call.ivr"),
    ]
    await store.append_events(
        [
            NewTimelineEvent(
                event_id=f"seed-{i}",
                customer_id=customer.customer_id,
                occurred_at=now - timedelta(days=days),
                channel=channel,
                event_type=event_type,
                intent=intent,
                data={"outcome": "routed"} if channel == "voice" else {},
            )
            for i, (channel, intent, days, event_type) in enumerate(events)
        ]
    )
    return customer


async def _until_closed(ws: Any) -> list[dict[str, Any]]:
    """Every message a socket gets until it is closed."""
    heard = []
    while (message := await ws.receive()).type == WSMsgType.TEXT:
        heard.append(cast(dict[str, Any], json.loads(message.data)))
    return heard


def _ring(customer_id: str | None, **kw: Any) -> Ring:
    defaults: dict[str, Any] = {
        "call_id": "1700000000.42",
        "customer_id": customer_id,
        "intent": "moving",
        "caller_id": "+15550100001",
        "target": "queue:moving",
        "path": ({"step": "menu", "attempt": 1, "digits": "3", "intent": "moving"},),
        "entered": {"postcode": "90210"},
        "prefilled": {"account_number": "12345678"},
        "routing_reasons": ("speaks en", "longest idle: 42 s"),
    }
    return Ring(**{**defaults, **kw})


# --------------------------------------------------------------------------- login


async def test_login_sets_a_strict_http_only_session_cookie(sqlite_url: str) -> None:
    async for desk in _desk(sqlite_url, DesktopConfig(secure_cookie=True)):
        resp = await desk.client.post(
            "/desktop/login", json={"agent_id": "a100", "password": PASSWORD}
        )
        body = await ok(resp)
        assert body["agent"] == {
            "agent_id": "a100",
            "name": "Alice Martin",
            "sip_endpoint": "PJSIP/alice",
        }
        assert body["state"]["state"] == "logged_out"
        morsel = SimpleCookie(resp.headers["Set-Cookie"])["ivr_desktop_session"]
        assert morsel["httponly"] and morsel["secure"]
        assert morsel["samesite"] == "Strict" and morsel["path"] == "/desktop"
        assert len(morsel.value) > 60  # 256-bit id + signature
        assert (await desk.agents.get("a100")).state is AgentState.LOGGED_OUT


async def test_login_then_me(desk: Desk) -> None:
    await desk.login()
    me = await ok(await desk.client.get("/desktop/api/me"))
    assert me["agent"]["agent_id"] == "a100" and me["pop"] is None
    assert me["state"]["state"] == "logged_out"


async def test_bad_password_and_unknown_agent_get_the_same_answer(desk: Desk) -> None:
    wrong = {"agent_id": "a100", "password": "nope"}
    unknown = {"agent_id": "nobody", "password": PASSWORD}
    first = await error(await desk.client.post("/desktop/login", json=wrong), 401, "login_failed")
    second = await error(
        await desk.client.post("/desktop/login", json=unknown), 401, "login_failed"
    )
    assert first == second == "unknown agent or wrong password"
    await error(await desk.client.get("/desktop/api/me"), 401, "session_required")


async def test_token_login(desk: Desk) -> None:
    body = await ok(await desk.client.post("/desktop/login", json={"token": TOKEN}))
    assert body["agent"]["agent_id"] == "bot1"
    bad = await desk.client.post("/desktop/login", json={"token": "tok_" + "y" * 40})
    assert await error(bad, 401, "login_failed") == "unknown API token"
    # a token-only agent cannot log in with a password
    no_password = {"agent_id": "bot1", "password": PASSWORD}
    await error(await desk.client.post("/desktop/login", json=no_password), 401, "login_failed")


async def test_repeated_failures_lock_the_agent_out_for_a_while(desk: Desk) -> None:
    wrong = {"agent_id": "a100", "password": "nope"}
    for _ in range(5):
        await error(await desk.client.post("/desktop/login", json=wrong), 401, "login_failed")
    right = {"agent_id": "a100", "password": PASSWORD}
    resp = await desk.client.post("/desktop/login", json=right)
    body = await expect(resp, 429)
    assert body["error"]["code"] == "too_many_attempts" and body["error"]["retry_after_s"] > 0
    await desk.login("a200")  # other agents are not affected
    desk.clock.now += 301
    await desk.login("a100")


async def test_new_login_ends_the_previous_session_of_this_browser(desk: Desk) -> None:
    await desk.login()
    old = desk.client.session.cookie_jar.filter_cookies(desk.client.make_url("/desktop/"))
    old_value = old["ivr_desktop_session"].value
    await desk.login()
    resp = await desk.client.get("/desktop/api/me", cookies={"ivr_desktop_session": old_value})
    await error(resp, 401, "session_required")


# --------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_session_pushed_out_by_newer_logins_has_its_sockets_closed(
    sqlite_url: str, store: str
) -> None:
    """The 11th login drops the agent's oldest session (10 per agent): its open socket is
    closed as on logout, and no later screen pop reaches it."""
    prefix = f"test:{{desktop-{uuid.uuid4().hex}}}:"
    sessions = None
    if store == "redis":
        sessions = await RedisSessionStore.open(REDIS_URL, ttl_s=3600, prefix=prefix)
    try:
        async for desk in _desk(sqlite_url, sessions=sessions):
            await desk.login()
            first = await desk.ws()
            await receive(first, "hello")
            # the socket is read meanwhile, as a browser would (it answers the close)
            heard = asyncio.create_task(_until_closed(first))
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as other:
                for _ in range(10):  # a new desk each time: no session of its own to end
                    body = {"agent_id": "a100", "password": PASSWORD}
                    await ok(await other.post(desk.origin + "/desktop/login", json=body))
            async with asyncio.timeout(WS_TIMEOUT):
                messages = await heard
            assert {"type": "bye", "reason": "ended by a newer login"} in messages
            assert first.close_code == 4401
            assert desk.hub.connections("a100") == 0
            assert await desk.hub.pop("a100", _ring(None)) == 0
    finally:
        if sessions is not None:
            await sessions.aclose()
            await delete_prefix(prefix)


async def test_everything_but_the_page_and_login_needs_a_session(desk: Desk) -> None:
    await error(await desk.client.get("/desktop/api/me"), 401, "session_required")
    resp = await desk.client.post("/desktop/api/state", json={"action": "available"})
    await error(resp, 401, "session_required")
    await error(await desk.client.post("/desktop/api/pop/dismiss"), 401, "session_required")
    with pytest.raises(WSServerHandshakeError) as refused:
        await desk.ws()
    assert refused.value.status == 401


async def test_forged_and_tampered_cookies_are_refused(desk: Desk) -> None:
    await desk.login()
    jar = desk.client.session.cookie_jar.filter_cookies(desk.client.make_url("/desktop/"))
    session_id, _signature = jar["ivr_desktop_session"].value.rsplit(".", 1)
    for forged in (session_id + ".AAAA", session_id, "x" * 500, "é.é", ""):
        resp = await desk.client.get("/desktop/api/me", cookies={"ivr_desktop_session": forged})
        await error(resp, 401, "session_required")


async def test_sessions_expire_and_their_sockets_are_closed(sqlite_url: str) -> None:
    config = DesktopConfig(secure_cookie=False, session_ttl_s=60, sweep_interval_s=0.02)
    async for desk in _desk(sqlite_url, config):
        await desk.login()
        ws = await desk.ws()
        await receive(ws, "hello")
        desk.clock.now += 61
        bye = await receive(ws, "bye")
        assert "expired" in bye["reason"]
        async with asyncio.timeout(WS_TIMEOUT):
            assert (await ws.receive()).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        assert ws.close_code == 4401
        await error(await desk.client.get("/desktop/api/me"), 401, "session_required")


async def test_logout_ends_the_session_closes_sockets_and_leaves_the_queue(desk: Desk) -> None:
    await desk.login()
    await desk.action("available")
    ws = await desk.ws()
    await receive(ws, "hello")
    resp = await desk.client.post("/desktop/logout", headers={"Origin": desk.origin})
    body = await ok(resp)
    assert body["state"]["state"] == "logged_out"
    assert (await receive(ws, "bye"))["reason"] == "logged out"
    await error(await desk.client.get("/desktop/api/me"), 401, "session_required")
    assert (await desk.agents.get("a100")).state is AgentState.LOGGED_OUT
    assert "ivr_desktop_session=;" in resp.headers["Set-Cookie"].replace('""', "")


async def test_logout_on_a_call_keeps_the_agent_on_the_call(desk: Desk) -> None:
    await desk.login()
    await desk.action("available")
    await _put_on_call(desk.agents, "a100", "call-1")
    body = await ok(await desk.client.post("/desktop/logout"))
    assert body["state"]["state"] == "on_call"


async def _put_on_call(agents: AgentStateStore, agent_id: str, call_id: str) -> None:
    assert await agents.reserve(agent_id, call_id, 30)
    assert await agents.confirm(agent_id, call_id) is AgentState.RINGING
    assert await agents.confirm(agent_id, call_id) is AgentState.ON_CALL


# --------------------------------------------------------------------------- origin


async def test_websocket_needs_a_matching_origin(desk: Desk) -> None:
    await desk.login()
    for origin in ("http://evil.example", "null", f"https://{desk.client.server.host}"):
        with pytest.raises(WSServerHandshakeError) as refused:
            await desk.ws(origin=origin)
        assert refused.value.status == 403
    with pytest.raises(WSServerHandshakeError) as missing:
        await desk.client.ws_connect("/desktop/ws")
    assert missing.value.status == 403
    ws = await desk.ws(origin=desk.origin.upper())  # scheme and host are case-insensitive
    await receive(ws, "hello")


async def test_configured_origins_are_allowed(sqlite_url: str) -> None:
    config = DesktopConfig(secure_cookie=False, allowed_origins=frozenset({"https://desk.test"}))
    async for desk in _desk(sqlite_url, config):
        await desk.login()
        ws = await desk.ws(origin="https://desk.test")
        assert (await receive(ws))["type"] == "hello"


async def test_cross_site_posts_are_refused(desk: Desk) -> None:
    evil = {"Origin": "http://evil.example"}
    body = {"agent_id": "a100", "password": PASSWORD}
    resp = await desk.client.post("/desktop/login", json=body, headers=evil)
    await error(resp, 403, "origin_rejected")
    await desk.login()
    resp = await desk.client.post("/desktop/api/state", json={"action": "available"}, headers=evil)
    await error(resp, 403, "origin_rejected")
    await error(await desk.client.post("/desktop/logout", headers=evil), 403, "origin_rejected")
    assert (await desk.agents.get("a100")).state is AgentState.LOGGED_OUT


# --------------------------------------------------------------------------- state buttons


async def test_state_buttons_drive_the_agent_store(desk: Desk) -> None:
    await desk.login()
    assert (await desk.action("available"))["state"]["state"] == "available"
    assert (await desk.agents.get("a100")).state is AgentState.AVAILABLE
    assert (await desk.action("pause"))["state"]["state"] == "paused"
    assert (await desk.action("available"))["state"]["state"] == "available"
    assert (await desk.action("log_out"))["state"]["state"] == "logged_out"
    assert (await desk.agents.get("a100")).state is AgentState.LOGGED_OUT


async def test_invalid_transitions_say_why(desk: Desk) -> None:
    await desk.login()
    await desk.action("available")
    await _put_on_call(desk.agents, "a100", "call-1")
    body = await desk.action("pause", 409)
    assert body["error"]["code"] == "invalid_transition"
    assert body["error"]["message"] == "You cannot pause while on a call: finish the call first."
    assert body["error"]["state"] == "on_call"
    body = await desk.action("finish_wrap_up", 409)
    assert body["error"] == {
        "code": "not_in_wrap_up",
        "message": "You are not in wrap-up (you are on a call).",
        "state": "on_call",
    }
    assert await desk.agents.release("a100", "call-1")  # the call ends → wrap-up
    assert (await desk.action("finish_wrap_up"))["state"]["state"] == "available"


# --------------------------------------------------------------------------- websocket


async def test_hello_then_state_changes_from_buttons_and_routing(desk: Desk) -> None:
    await desk.login()
    ws = await desk.ws()
    hello = await receive(ws)
    assert hello["type"] == "hello" and hello["agent"]["name"] == "Alice Martin"
    assert hello["state"]["state"] == "logged_out" and hello["pop"] is None
    await desk.action("available")
    assert (await receive(ws, "state"))["state"]["state"] == "available"
    assert await desk.agents.reserve("a100", "call-7", 30)  # routing picks this agent
    state = (await receive(ws, "state"))["state"]
    assert state["state"] == "reserved" and state["call_id"] == "call-7"
    assert state["cause"] == "reserve"
    await ws.send_str("ping")
    assert (await receive(ws, "pong"))["type"] == "pong"


async def test_other_agents_changes_are_not_sent(desk: Desk) -> None:
    await desk.login()
    ws = await desk.ws()
    await receive(ws, "hello")
    await desk.agents.register_agent("a200")
    await desk.agents.set_state("a200", AgentState.AVAILABLE)
    await desk.action("pause")
    assert (await receive(ws))["state"]["state"] == "paused"  # a100's own, nothing before


async def test_pop_reaches_every_tab_with_customer_history_and_masking(desk: Desk) -> None:
    customer = await _customer(desk.timeline)
    await desk.login()
    tabs = [await desk.ws(), await desk.ws()]
    for tab in tabs:
        await receive(tab, "hello")
    assert await desk.hub.pop("a100", _ring(customer.customer_id)) == 2
    for tab in tabs:
        pop = (await receive(tab, "pop"))["pop"]
        assert pop["customer"]["name"] == "Grace Hopper"
        assert {"kind": "account", "value": "12345678"} in pop["customer"]["identities"]
        assert pop["intent"] == "moving" and pop["intent_label"] == "Moving home"
        assert pop["path"] == [
            {"step": "menu", "details": {"attempt": "1", "digits": "3", "intent": "moving"}}
        ]
        assert pop["fields"] == [
            {"name": "account_number", "value": "12345678", "masked": False, "source": "prefilled"},
            {"name": "postcode", "value": MASK, "masked": True, "source": "entered"},
        ]
        assert "90210" not in json.dumps(pop)
        contacts = pop["recent_contacts"]
        assert [(c["channel"], c["intent"]) for c in contacts] == [
            ("chat", "billing"),
            ("email", "moving"),
            ("voice", "billing"),
        ]
        assert contacts[2]["outcome"] == "routed" and pop["history_available"]
        assert pop["routing_reasons"] == ["speaks en", "longest idle: 42 s"]


async def test_pop_shows_the_newest_contacts_even_after_a_late_stored_one(desk: Desk) -> None:
    """An old contact stored late (a back-fill, a spool replay) does not push the newest
    ones out of the pop: recent means when it happened, not when it was written."""
    customer = await desk.timeline.store.create_customer("Ada", [])
    now = datetime.now(UTC)
    late = [("email", 30 * 24)]  # a month old, written after the others
    await desk.timeline.store.append_events(
        [
            NewTimelineEvent(f"c-{n}", customer.customer_id, now - timedelta(hours=hours),
                             channel, "contact", intent="billing")
            for n, (channel, hours) in enumerate([("chat", h) for h in range(1, 12)] + late)
        ]
    )  # fmt: skip
    await desk.login()
    ws = await desk.ws()
    await receive(ws, "hello")
    await desk.hub.pop("a100", _ring(customer.customer_id))
    contacts = (await receive(ws, "pop"))["pop"]["recent_contacts"]
    assert len(contacts) == 10 and {c["channel"] for c in contacts} == {"chat"}
    assert contacts[0]["occurred_at"] == iso_time(now - timedelta(hours=1)), contacts[0]


async def test_verified_caller_shows_sensitive_fields(desk: Desk) -> None:
    customer = await _customer(desk.timeline)
    await desk.login()
    ws = await desk.ws()
    await receive(ws, "hello")
    await desk.hub.pop("a100", _ring(customer.customer_id, verified=True))
    fields = (await receive(ws, "pop"))["pop"]["fields"]
    assert {"name": "postcode", "value": "90210", "masked": False, "source": "entered"} in fields


async def test_pop_without_socket_is_kept_for_the_next_page_load(desk: Desk) -> None:
    customer = await _customer(desk.timeline)
    assert await desk.hub.pop("a100", _ring(customer.customer_id)) == 0
    await desk.login()
    me = await ok(await desk.client.get("/desktop/api/me"))
    assert me["pop"]["customer"]["name"] == "Grace Hopper"
    ws = await desk.ws()
    hello = await receive(ws, "hello")
    assert hello["pop"]["call_id"] == "1700000000.42"
    second = await desk.ws()
    await receive(second, "hello")
    dismissed = await desk.client.post("/desktop/api/pop/dismiss", headers={"Origin": desk.origin})
    assert (await ok(dismissed))["pop"] is None
    assert (await receive(ws, "pop_cleared"))["type"] == "pop_cleared"
    assert (await receive(second, "pop_cleared"))["type"] == "pop_cleared"
    assert (await ok(await desk.client.get("/desktop/api/me")))["pop"] is None


async def test_pop_goes_only_to_the_ringing_agent(desk: Desk) -> None:
    await desk.login("a200")
    ws = await desk.ws()
    await receive(ws, "hello")
    assert await desk.hub.pop("a100", _ring(None)) == 0
    await desk.action("pause")
    assert (await receive(ws))["type"] == "state"  # no pop in between


async def test_unknown_caller_pop(desk: Desk) -> None:
    await desk.hub.pop("a100", _ring(None, entered={}, prefilled={}))
    pop = desk.hub.latest_pop("a100")
    assert pop is not None and pop["customer"] is None and pop["recent_contacts"] == []
    assert pop["history_available"]


async def test_merged_customer_pops_the_surviving_record(desk: Desk) -> None:
    old = await desk.timeline.store.create_customer(
        "Old Record", [Identity("phone", "+15550100009")]
    )
    survivor = await _customer(desk.timeline, "Survivor")
    await desk.timeline.store.merge_customers(old.customer_id, survivor.customer_id, "same person")
    await desk.hub.pop("a100", _ring(old.customer_id))
    pop = desk.hub.latest_pop("a100")
    assert pop is not None and pop["customer"] is not None
    assert pop["customer"]["name"] == "Survivor" and pop["history_available"]


class BrokenTimeline:
    """Fault injection: the timeline store is down (a healthy SQLite cannot do this on demand)."""

    async def get_customer(self, customer_id: str) -> Customer | None:
        raise TimelineUnavailable("database is down")

    async def recent_events(self, customer_id: str, *, limit: int = 50) -> tuple[StoredEvent, ...]:
        raise TimelineUnavailable("database is down")


async def test_pop_fails_open_when_the_timeline_is_down(sqlite_url: str) -> None:
    async for desk in _desk(sqlite_url, store=BrokenTimeline()):
        await desk.login()
        ws = await desk.ws()
        await receive(ws, "hello")
        assert await desk.hub.pop("a100", _ring("some-customer")) == 1
        pop = (await receive(ws, "pop"))["pop"]
        assert pop["history_available"] is False and pop["customer"] is None
        assert pop["intent"] == "moving" and pop["fields"][1]["value"] == MASK


# --------------------------------------------------------------------------- hostile bodies


@pytest.mark.parametrize(
    ("data", "headers", "status", "code", "needle"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "invalid_json", "JSON"),
        (b"", {"Content-Type": "application/json"}, 400, "invalid_json", "EOF"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400, "validation_error", "body"),
        (b'"a100"', {"Content-Type": "application/json"}, 400, "validation_error", "body"),
        (
            b'{"agent_id": 100, "password": "x"}',
            {"Content-Type": "application/json"},
            400,
            "validation_error",
            "agent_id",
        ),
        (
            b'{"agent_id": "a100", "password": "x", "admin": true}',
            {"Content-Type": "application/json"},
            400,
            "validation_error",
            "admin",
        ),
        (
            b'{"agent_id": "a100"}',
            {"Content-Type": "application/json"},
            400,
            "validation_error",
            "agent_id and password, or token",
        ),
        (
            b'{"agent_id": "a100", "password": "x", "token": "' + b"t" * 20 + b'"}',
            {"Content-Type": "application/json"},
            400,
            "validation_error",
            "or token alone",
        ),
        (
            b'{"agent_id": "<script>", "password": "x"}',
            {"Content-Type": "application/json"},
            400,
            "validation_error",
            "agent_id",
        ),
        (b"[" * 5000 + b"]" * 5000, {"Content-Type": "application/json"}, 400, "", ""),
        (
            b"agent_id=a100&password=x",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (b"x" * 20_000, {"Content-Type": "application/json"}, 413, "body_too_large", "16384"),
    ],
)
async def test_hostile_login_bodies_get_a_clear_4xx(
    desk: Desk, data: bytes, headers: Mapping[str, str], status: int, code: str, needle: str
) -> None:
    resp = await desk.client.post("/desktop/login", data=data, headers=dict(headers))
    body = await expect(resp, status)
    assert set(body) == {"error"}
    if code:
        assert body["error"]["code"] == code and needle in body["error"]["message"], body


async def test_hostile_state_bodies(desk: Desk) -> None:
    await desk.login()
    for payload, needle in (
        ({"action": "on_call"}, "action"),
        ({"action": ["available"]}, "action"),
        ({"action": "available", "agent_id": "a200"}, "agent_id"),
        ({}, "action"),
    ):
        resp = await desk.client.post("/desktop/api/state", json=payload)
        message = await error(resp, 400, "validation_error")
        assert needle in message
    assert (await desk.agents.get("a100")).state is AgentState.LOGGED_OUT


async def test_huge_chunked_body_is_cut_off(desk: Desk) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    resp = await desk.client.post(
        "/desktop/login", data=chunks(), headers={"Content-Type": "application/json"}
    )
    await error(resp, 413, "body_too_large")


async def test_websocket_path_without_upgrade_and_big_client_frames(desk: Desk) -> None:
    await desk.login()
    resp = await desk.client.get("/desktop/ws", headers={"Origin": desk.origin})
    await error(resp, 400, "websocket_required")
    ws = await desk.ws()
    await receive(ws, "hello")
    await ws.send_str("x" * 10_000)
    async with asyncio.timeout(WS_TIMEOUT):
        message = await ws.receive()
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    async with asyncio.timeout(WS_TIMEOUT):
        await desk.hub.wait_disconnected("a100")  # the server's handler has ended


# --------------------------------------------------------------------------- page


async def test_page_and_assets_are_served_with_a_strict_policy(desk: Desk) -> None:
    resp = await desk.client.get("/desktop/")
    assert resp.status == 200 and resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    page = await resp.text()
    assert 'src="static/desktop.js"' in page and "http" not in page.replace("http-equiv", "")
    script = await desk.client.get("/desktop/static/desktop.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert not re.search(
        r"\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write", await script.text()
    )
    resp = await desk.client.get("/desktop", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/desktop/"
    await error(await desk.client.get("/desktop/static/index.htm"), 404, "not_found")
    await error(await desk.client.get("/desktop/static/..%2fapp.py"), 404, "not_found")


async def test_mounts_under_the_engine_api_app(sqlite_url: str) -> None:
    """As the engine wires it: the API app is the root, the desktop a sub-app at /desktop."""
    timeline = await open_timeline(sqlite_url, migrate=False)
    agents = open_agent_state_store(None)
    api = create_api_app(store=timeline.store, lookup=timeline.lookup, menus=MENUS)
    hub = DesktopHub(timeline.store, masking=masking_from_menus(MENUS.values()))
    config = DesktopConfig(secure_cookie=False)
    api.add_subapp(
        "/desktop",
        create_desktop_app(directory=_directory(), agents=agents, hub=hub, config=config),
    )
    try:
        async with TestClient(TestServer(api)) as client:
            assert (await ok(await client.get("/healthz")))["status"] == "ok"
            body = {"agent_id": "a100", "password": PASSWORD}
            await ok(await client.post("/desktop/login", json=body))
            origin = f"http://{client.server.host}:{client.server.port}"
            ws = await client.ws_connect("/desktop/ws", origin=origin)
            assert (await receive(ws))["type"] == "hello"
            await hub.pop("a100", _ring(None))
            assert (await receive(ws, "pop"))["pop"]["fields"][1]["value"] == MASK
            await error(await client.get("/desktop/api/nope"), 404, "not_found")
    finally:
        await agents.aclose()
        await timeline.close()

"""The agent desktop across two engine OS processes sharing the real Redis.

Each process (``desktop_node``) runs the real Redis agent state, Redis sessions and relay,
the real router and the desktop; the agent's browser is played by aiohttp clients. A
session made on one process works on the other, a call routed on one pops on the agent's
socket held by the other (and on no other agent's), a logout on one ends the socket on the
other. The relay down while routing: the call is routed, the lost pop is counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from ivr_engine.agents import AgentState, InMemoryAgentStateStore
from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.desktop import MASK, DesktopHub
from ivr_engine.desktop.hub import WS_CLOSE_SESSION_ENDED
from ivr_engine.desktop.relay import DesktopNote, RedisDesktopRelay
from ivr_engine.routing import build_roster, load_routing_config
from ivr_engine.timeline import Timeline
from tests.component.desktop_node import PASSWORDS, REPO, Cluster, Node, billing_call, two_nodes
from tests.redis_support import REDIS_URL

pytestmark = pytest.mark.processes

WAIT_S = 10.0


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with two_nodes(REDIS_URL, tmp_path) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """One agent's browser: one cookie jar for both processes (same host, other port)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def log_in(client: aiohttp.ClientSession, node: Node, agent_id: str) -> None:
    body = {"agent_id": agent_id, "password": PASSWORDS[agent_id]}
    async with client.post(f"{node.desktop}/login", json=body) as response:
        assert response.status == 200, await response.text()


async def me(client: aiohttp.ClientSession, node: Node) -> tuple[int, dict[str, Any]]:
    async with client.get(f"{node.desktop}/api/me") as response:
        return response.status, await response.json()


async def socket(client: aiohttp.ClientSession, node: Node) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect(f"{node.desktop}/ws", origin=node.origin)
    hello = await ws.receive_json(timeout=WAIT_S)
    assert hello["type"] == "hello"
    return ws


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next message of this type (state messages and the like in between are skipped)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            message: dict[str, Any] = await ws.receive_json()
            if message["type"] == kind:
                return message


async def messages_until_pong(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    """The types of the messages that arrive before the answer to a ping."""
    await ws.send_str("ping")
    seen: list[str] = []
    async with asyncio.timeout(WAIT_S):
        while (message := await ws.receive_json())["type"] != "pong":
            seen.append(message["type"])
    return seen


async def post(client: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with client.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def route_on(node: Node, cluster: Cluster, call_id: str) -> dict[str, Any]:
    body = {"call_id": call_id, "phone": cluster.phone, "customer_id": cluster.customer_id}
    async with aiohttp.ClientSession() as control:
        return await post(control, f"{node.origin}/test/route", body)


async def test_login_on_a_works_on_b_and_logout_on_a_ends_it_on_b(
    cluster: Cluster, browser: aiohttp.ClientSession
) -> None:
    await log_in(browser, cluster.a, "a1")
    status, body = await me(browser, cluster.b)
    assert status == 200 and body["agent"]["agent_id"] == "a1"
    ws_on_b = await socket(browser, cluster.b)
    await post(browser, f"{cluster.a.desktop}/logout", {})
    bye = await next_of(ws_on_b, "bye")
    assert bye["reason"] == "logged out"
    closing = await ws_on_b.receive(timeout=WAIT_S)  # the server closes it: log in again
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, WS_CLOSE_SESSION_ENDED)
    assert (await me(browser, cluster.b))[0] == 401
    assert (await me(browser, cluster.a))[0] == 401


async def test_call_routed_on_a_pops_on_the_agents_socket_on_b_and_nowhere_else(
    cluster: Cluster, browser: aiohttp.ClientSession
) -> None:
    await log_in(browser, cluster.a, "a1")
    tab_on_a, tab_on_b = await socket(browser, cluster.a), await socket(browser, cluster.b)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        await log_in(other, cluster.b, "a2")
        others = [await socket(other, cluster.a), await socket(other, cluster.b)]
        # A state change made on B shows on the agent's tab on A (the agent state feed).
        await post(browser, f"{cluster.b.desktop}/api/state", {"action": "available"})
        assert (await next_of(tab_on_a, "state"))["state"]["state"] == AgentState.AVAILABLE

        routed = await route_on(cluster.a, cluster, "call-multi-1")
        assert routed["agent_id"] == "a1"
        pop = (await next_of(tab_on_b, "pop"))["pop"]
        assert (await next_of(tab_on_a, "pop"))["pop"] == pop
        for ws in others:
            assert "pop" not in await messages_until_pong(ws)

    assert pop["call_id"] == "call-multi-1" and pop["intent"] == "billing"
    assert pop["customer"]["name"] == "Grace Hopper"
    assert {i["kind"] for i in pop["customer"]["identities"]} >= {"phone", "account"}
    assert pop["path"] == [
        {"step": "menu", "details": {"attempt": "1", "digits": "1", "intent": "billing"}}
    ]
    fields = {f["name"]: f for f in pop["fields"]}
    assert fields["postcode"]["value"] == MASK and fields["account_number"]["value"] == "40012345"
    assert fields["postcode"]["masked"] and not fields["account_number"]["masked"]
    assert [c["channel"] for c in pop["recent_contacts"]] == ["chat", "email", "voice"]
    assert pop["history_available"] is True
    assert pop["routing_reasons"]
    # A tab opened on B during the ring gets the pop in its hello; a dismiss on B clears A.
    late = await browser.ws_connect(f"{cluster.b.desktop}/ws", origin=cluster.b.origin)
    assert (await late.receive_json(timeout=WAIT_S))["pop"] == pop
    await post(browser, f"{cluster.b.desktop}/api/pop/dismiss", {})
    await next_of(tab_on_a, "pop_cleared")


class WatchedRelay:
    """The real relay; ``tried`` is set once a publish has ended (failed, here)."""

    def __init__(self, relay: RedisDesktopRelay) -> None:
        self.relay = relay
        self.tried = asyncio.Event()

    async def publish(self, note: DesktopNote) -> None:
        try:
            await self.relay.publish(note)
        finally:
            self.tried.set()

    def notes(self) -> AbstractAsyncContextManager[AsyncIterator[DesktopNote]]:
        return self.relay.notes()

    async def aclose(self) -> None:
        await self.relay.aclose()


class SilentRedis:
    """Accepts connections and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.held: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def _hold(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held.append(writer)

    async def __aexit__(self, *_exc: object) -> None:
        for writer in self.held:
            writer.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("redis_down", ["refused", "silent"])
async def test_redis_down_while_routing_still_routes_and_counts_the_lost_pop(
    redis_down: str, timeline: Timeline
) -> None:
    routing = load_routing_config(REPO / "config/routing.yaml")
    profiles = load_agent_profiles(REPO / "config/agents.yaml", routing)
    agents = InMemoryAgentStateStore()
    for profile in profiles:
        await agents.register_agent(profile.agent_id)
    await agents.set_state("a1", AgentState.AVAILABLE)
    silent = SilentRedis()
    url = await silent.__aenter__() if redis_down == "silent" else "redis://127.0.0.1:1/0"
    relay = WatchedRelay(RedisDesktopRelay.from_url(url, timeout_s=0.5))
    hub = DesktopHub(timeline.store, relay=relay)
    router = AgentRouter(
        roster=build_roster(profiles),
        config=routing,
        agents=agents,
        timeline=timeline.store,
        hub=hub,
    )
    record, known = billing_call({"call_id": "call-down-1", "phone": "+15550009999"})
    try:
        started = time.monotonic()
        result = await router.route(record, known)
        assert time.monotonic() - started < 0.4  # the pop is never awaited by routing
        assert result.agent_id == "a1" and result.target == "agent:a1"
        assert (await agents.get("a1")).state == AgentState.RINGING
        async with asyncio.timeout(WAIT_S):
            await relay.tried.wait()
        assert hub.pops_lost == 1
        assert hub.latest_pop("a1") is not None  # this process's tabs still got it
    finally:
        await router.aclose()
        await relay.aclose()
        await agents.aclose()
        if redis_down == "silent":
            await silent.__aexit__(None, None, None)

"""One engine process's contact-centre desktop, for the multi-process desktop tests.

``python -m tests.component.desktop_node REDIS_URL AGENT_PREFIX DESKTOP_PREFIX SQLITE_PATH``
serves, on a free localhost port, what the engine serves: the real Redis agent state, the
shared desktop (Redis sessions, login limits and relay), the real ``AgentRouter`` over
config/agents.yaml and config/routing.yaml, the desktop at ``/desktop``; plus
``POST /test/route`` (route one call, as the AGI handler would) and ``GET /test/stats``.
Prints ``ready <port>``, then serves until stdin closes. ``two_nodes`` starts two of them
on one Redis (fresh prefixes) and one seeded SQLite timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr_engine.agents import AgentStateStore, RedisAgentStateStore
from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.desktop import (
    DesktopConfig,
    DesktopHub,
    create_desktop_app,
    intent_labels_from_menus,
    load_agent_directory,
    masking_from_menus,
    open_shared_desktop,
)
from ivr_engine.domain.models import KnownField
from ivr_engine.flows.call_record import CallRecord, IncomingCall
from ivr_engine.menu_config import load_menus
from ivr_engine.ports import Identity, NewTimelineEvent
from ivr_engine.routing import build_roster, load_routing_config
from ivr_engine.timeline import open_timeline
from ivr_engine.timeline.migrate import upgrade

REPO = Path(__file__).resolve().parents[2]
CONFIG = DesktopConfig(secure_cookie=False, sweep_interval_s=0.2)
PASSWORDS = {"a1": "bea-demo-password", "a2": "gus-demo-password"}  # config/agents.yaml
START_TIMEOUT_S = 30.0


def billing_call(body: dict[str, Any]) -> tuple[CallRecord, dict[str, KnownField]]:
    """A billing caller who typed a postcode (sensitive) and had the account prefilled."""
    now = datetime.now(UTC)
    call = IncomingCall(body["call_id"], body["phone"], "PJSIP/caller", "main", now)
    record = CallRecord(
        call=call,
        phone=body["phone"],
        customer_id=body.get("customer_id"),
        intent="billing",
        target="queue:billing",
    )
    record.step("menu", attempt=1, digits="1", intent="billing")
    record.entered = {"postcode": "SW1A 1AA"}
    record.prefilled = ["account_number"]
    known = {"account_number": KnownField("account_number", "40012345", "web", now)}
    return record, known


def control_routes(router: AgentRouter, hub: DesktopHub) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/test/route")
    async def route(request: web.Request) -> web.Response:
        record, known = billing_call(await request.json())
        result = await router.route(record, known)
        return web.json_response({"agent_id": result.agent_id, "target": result.target})

    @routes.get("/test/stats")
    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"pops_lost": hub.pops_lost, "relay": hub.relay is not None})

    return routes


async def serve(url: str, agent_prefix: str, desktop_prefix: str, sqlite_path: str) -> None:
    menus = load_menus(REPO / "config/menus")
    routing = load_routing_config(REPO / "config/routing.yaml")
    profiles = load_agent_profiles(REPO / "config/agents.yaml", routing)
    agents: AgentStateStore = RedisAgentStateStore.from_url(url, prefix=agent_prefix)
    for profile in profiles:
        await agents.register_agent(profile.agent_id)
    shared = await open_shared_desktop(url, CONFIG, prefix=desktop_prefix)
    timeline = await open_timeline(f"sqlite:///{sqlite_path}", migrate=False)
    hub = DesktopHub(
        timeline.store,
        masking=masking_from_menus(menus.values()),
        intent_labels=intent_labels_from_menus(menus.values()),
        relay=shared.relay,
    )
    router = AgentRouter(
        roster=build_roster(profiles),
        config=routing,
        agents=agents,
        timeline=timeline.store,
        hub=hub,
    )
    directory = load_agent_directory(REPO / "config/agents.yaml")
    root = web.Application()
    root.add_routes(control_routes(router, hub))
    desktop = create_desktop_app(
        directory=directory,
        agents=agents,
        hub=hub,
        config=CONFIG,
        sessions=shared.sessions,
        limits=shared.limits,
    )
    root.add_subapp("/desktop", desktop)
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("ready", runner.addresses[0][1], flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await runner.cleanup()
        await router.aclose()
        await shared.aclose()
        await agents.aclose()
        await timeline.close()


@dataclass(frozen=True)
class Node:
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def desktop(self) -> str:
        return f"{self.origin}/desktop"


@dataclass(frozen=True)
class Cluster:
    a: Node
    b: Node
    customer_id: str
    phone: str


async def seed_timeline(path: Path, phone: str) -> str:
    """A customer with a phone and an account, and three earlier contacts."""
    await upgrade(f"sqlite:///{path}")
    timeline = await open_timeline(f"sqlite:///{path}", migrate=False)
    try:
        store = timeline.store
        customer = await store.create_customer(
            "Grace Hopper", [Identity("phone", phone), Identity("account", "40012345")]
        )
        now = datetime.now(UTC)
        history = [("chat", "billing", 2), ("email", "moving", 5), ("voice", "billing", 9)]
        events = [
            NewTimelineEvent(
                event_id=f"seed-{channel}-{uuid.uuid4().hex}",
                customer_id=customer.customer_id,
                occurred_at=now - timedelta(days=days),
                channel=channel,
                event_type=f"{channel}.contact",
                intent=intent,
            )
            for channel, intent, days in history
        ]
        await store.append_events(events)
        return customer.customer_id
    finally:
        await timeline.close()


@contextlib.asynccontextmanager
async def _node(*args: str) -> AsyncIterator[Node]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.component.desktop_node",
        *args,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("ready "), f"desktop node did not start: {line!r}"
        yield Node(int(line.split()[1]))
    finally:
        process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def two_nodes(redis_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Two engine processes sharing one Redis (fresh prefixes, deleted after)."""
    from tests.redis_support import delete_prefix

    run = uuid.uuid4().hex
    agent_prefix, desktop_prefix = f"test:{{agents-{run}}}:", f"test:{{desktop-{run}}}:"
    phone = "+1555" + str(uuid.uuid4().int)[:7]
    customer_id = await seed_timeline(tmp_path / "timeline.db", phone)
    args = (redis_url, agent_prefix, desktop_prefix, str(tmp_path / "timeline.db"))
    try:
        async with _node(*args) as a, _node(*args) as b:
            yield Cluster(a, b, customer_id, phone)
    finally:
        await delete_prefix(agent_prefix)
        await delete_prefix(desktop_prefix)


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:5]))

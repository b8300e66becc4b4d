"""The desktop's security review findings, against the real desktop app over HTTP.

Each test mounts the desktop at /desktop in a tiny root app (as the engine does) and talks to
it through aiohttp's test client; parallel logins are real concurrent requests
(``asyncio.gather``), and password checks run the real scrypt in threads.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.agents import AgentStateStore, open_agent_state_store
from ivr_engine.desktop import (
    AgentDirectory,
    DesktopAgent,
    DesktopConfig,
    DesktopHub,
    create_desktop_app,
    hash_password,
)
from tests.component.test_desktop_app import PASSWORD, FakeClock

Client = TestClient[Any, Any]
HASH = hash_password(PASSWORD)  # the default scrypt cost, as in production


@dataclass
class Desk:
    client: Client
    agents: AgentStateStore
    hub: DesktopHub
    directory: AgentDirectory
    clock: FakeClock

    async def login_status(self, agent_id: str, password: str, *, source: str = "") -> int:
        """One login; ``source``: another loopback address to send it from (127.0.0.2...)."""
        return await self.post_login({"agent_id": agent_id, "password": password}, source)

    async def post_login(self, body: dict[str, str], source: str = "") -> int:
        if not source:
            async with self.client.post("/desktop/login", json=body) as response:
                await response.read()
                return response.status
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as other,
            other.post(self.client.make_url("/desktop/login"), json=body) as response,
        ):
            await response.read()
            return response.status


def agent(agent_id: str, **kw: Any) -> DesktopAgent:
    kw.setdefault("password_hash", HASH)
    return DesktopAgent(agent_id, f"Agent {agent_id}", f"PJSIP/{agent_id}", **kw)


@asynccontextmanager
async def open_desk(config: DesktopConfig | None = None) -> AsyncIterator[Desk]:
    directory = AgentDirectory([agent("a100"), agent("a200")])
    agents = open_agent_state_store(None)
    hub = DesktopHub(None)
    clock = FakeClock()
    desktop = create_desktop_app(
        directory=directory,
        agents=agents,
        hub=hub,
        config=config or DesktopConfig(secure_cookie=False),
        clock=clock,
    )
    root = web.Application()
    root.add_subapp("/desktop", desktop)
    try:
        async with TestClient(TestServer(root)) as client:
            yield Desk(client, agents, hub, directory, clock)
    finally:
        await agents.aclose()


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    async with open_desk() as opened:
        yield opened


# --------------------------------------------------------------------------- 1: TOCTOU


async def test_parallel_guesses_are_counted_before_the_password_check(desk: Desk) -> None:
    """Review finding 1: 30 wrong passwords at once got ~30 checks (all passed the lockout
    check while the first scrypts ran); now exactly max_failed_logins (5) are checked."""
    statuses = await asyncio.gather(*(desk.login_status("a100", f"guess-{i}") for i in range(30)))
    assert Counter(statuses) == {401: 5, 429: 25}


async def test_the_right_password_in_a_burst_does_not_wipe_the_bursts_failures(
    desk: Desk,
) -> None:
    """A burst of wrong guesses with the right password among them: at most 5 are checked,
    and a success takes back only its own count, not the failures of the burst."""
    guesses = [f"guess-{i}" for i in range(19)] + [PASSWORD]
    statuses = await asyncio.gather(*(desk.login_status("a100", g) for g in guesses))
    assert sum(status != 429 for status in statuses) == 5
    desk.clock.now += 301  # a new window: 4 failures, a success, one more failure
    for i in range(4):
        assert await desk.login_status("a100", f"again-{i}") == 401
    assert await desk.login_status("a100", PASSWORD) == 200
    assert await desk.login_status("a100", "one-more") == 401
    assert await desk.login_status("a100", PASSWORD) == 429  # 5 failures in the window

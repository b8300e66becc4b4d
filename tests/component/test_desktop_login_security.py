"""The desktop's security review findings, against the real desktop app over HTTP.

Each test mounts the desktop at /desktop in a tiny root app (as the engine does) and talks to
it through aiohttp's test client; parallel logins are real concurrent requests
(``asyncio.gather``), and password checks run the real scrypt in threads.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.agents import AgentStateStore, InMemoryAgentStateStore, open_agent_state_store
from ivr_engine.contact_center.agents_csv import import_agents_csv_to_roster
from ivr_engine.contact_center.live_roster import LiveRoster
from ivr_engine.contact_center.roster_store import SqlRosterStore
from ivr_engine.desktop import (
    AgentDirectory,
    DesktopAgent,
    DesktopConfig,
    DesktopHub,
    create_desktop_app,
    hash_password,
    passwords,
)
from ivr_engine.desktop.hub import WS_CLOSE_SESSION_ENDED
from ivr_engine.desktop.listener import sweep_once
from ivr_engine.desktop.redis_sessions import RedisSessionStore
from ivr_engine.desktop.sessions import MemorySessionStore, SessionStore
from ivr_engine.timeline.migrate import upgrade
from tests.component.desktop_node import PASSWORDS
from tests.component.test_agent_roster_processes import ROUTING, SEED
from tests.component.test_agents_management_api import AUTH, TOKEN, start_engine
from tests.component.test_desktop_app import PASSWORD, FakeClock, error, ok
from tests.redis_support import REDIS_URL, delete_prefix

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


# --------------------------------------------------------------------------- 2: revocation


async def _status(http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> int:
    async with http.request(method, path, **kw) as response:
        await response.read()
        return response.status


async def _bye_then_close(ws: aiohttp.ClientWebSocketResponse) -> str:
    """The reason of the ``bye``, once the server has closed the socket (4401)."""
    async with asyncio.timeout(10):
        while (message := await ws.receive_json())["type"] != "bye":
            pass
        closing = await ws.receive()
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, WS_CLOSE_SESSION_ENDED)
    return str(message["reason"])


async def test_a_credential_change_on_the_http_api_ends_the_agents_sessions(
    tmp_path: Path,
) -> None:
    """Review finding 2: after PATCH /v1/agents/a1 {"password"} the old desktop session
    still answered /desktop/api/me 200 (for up to 10 h). Now it ends at once, its socket
    gets a bye and is closed; a profile-only change keeps it; the token counts too."""
    engine = await start_engine(f"sqlite:///{tmp_path / 'roster.db'}", tmp_path, admin_token=TOKEN)
    base = f"http://127.0.0.1:{engine.http_port}"
    jar = aiohttp.CookieJar(unsafe=True)
    try:
        async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as http:
            login = {"agent_id": "a1", "password": PASSWORDS["a1"]}
            assert await _status(http, "POST", "/desktop/login", json=login) == 200
            ws = await http.ws_connect("/desktop/ws", origin=base)
            assert (await ws.receive_json(timeout=10))["type"] == "hello"
            rename = {"json": {"name": "Bea R."}, "headers": AUTH}
            assert await _status(http, "PATCH", "/v1/agents/a1", **rename) == 200
            assert await _status(http, "GET", "/desktop/api/me") == 200  # profile only
            new = {"json": {"password": "a-brand-new-password"}, "headers": AUTH}
            assert await _status(http, "PATCH", "/v1/agents/a1", **new) == 200
            assert await _status(http, "GET", "/desktop/api/me") == 401
            assert "password or API token changed" in await _bye_then_close(ws)
            relogin = {"agent_id": "a1", "password": "a-brand-new-password"}
            assert await _status(http, "POST", "/desktop/login", json=relogin) == 200
            assert await _status(http, "GET", "/desktop/api/me") == 200  # the new one stays
            token = {"json": {"token_sha256": "ab" * 32}, "headers": AUTH}
            assert await _status(http, "PATCH", "/v1/agents/a1", **token) == 200
            assert await _status(http, "GET", "/desktop/api/me") == 401
    finally:
        await engine.stop()


async def test_agents_import_to_the_roster_ends_sessions_in_redis(tmp_path: Path) -> None:
    """``ivr-engine agents import --to-database`` while an engine runs (the roster poll picks
    it up), with the sessions in the real Redis: the changed agent's sessions are gone from
    Redis and its socket is closed; the other agent's session stays."""
    url = f"sqlite:///{tmp_path / 'roster.db'}"
    await upgrade(url)
    agents = InMemoryAgentStateStore()
    roster = LiveRoster(SqlRosterStore(url), config=ROUTING, agents=agents, poll_interval_s=0.05)
    await roster.start(SEED)
    prefix = f"test:{{desktop-{uuid.uuid4().hex}}}:"
    sessions = await RedisSessionStore.open(REDIS_URL, ttl_s=3600, prefix=prefix)
    desktop = create_desktop_app(
        directory=roster.directory,
        agents=agents,
        hub=DesktopHub(None),
        sessions=sessions,
        config=DesktopConfig(secure_cookie=False),
    )
    root = web.Application()
    root.add_subapp("/desktop", desktop)
    try:
        async with (
            TestClient(TestServer(root)) as bea,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as gus,
        ):
            gus_login = {"agent_id": "a2", "password": PASSWORDS["a2"]}
            await ok(await gus.post(bea.make_url("/desktop/login"), json=gus_login))
            bea_login = {"agent_id": "a1", "password": PASSWORDS["a1"]}
            await ok(await bea.post("/desktop/login", json=bea_login))
            origin = f"http://{bea.server.host}:{bea.server.port}"
            ws = await bea.ws_connect("/desktop/ws", origin=origin)
            assert (await ws.receive_json(timeout=10))["type"] == "hello"
            source = tmp_path / "agents.csv"
            source.write_text(
                "agent_id,name,sip_endpoint,skills,password\n"
                "a1,Bea Martin,PJSIP/agent-1,billing:3,imported-pass-1234\n",
                encoding="utf-8",
            )
            assert await import_agents_csv_to_roster(source, url, ROUTING) == 1
            assert "password or API token changed" in await _bye_then_close(ws)
            assert await sessions.sessions_of("a1") == []
            await error(await bea.get("/desktop/api/me"), 401, "session_required")
            assert len(await sessions.sessions_of("a2")) == 1
            await ok(await gus.get(bea.make_url("/desktop/api/me")))
    finally:
        await sessions.aclose()
        await roster.aclose()
        await delete_prefix(prefix)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_sessions_of_old_credentials_end_at_start(kind: str) -> None:
    """Redis sessions outlive an engine restart: the first sweep ends those made with
    credentials the agent no longer has (changed while the engine was down)."""
    prefix = f"test:{{desktop-{uuid.uuid4().hex}}}:"
    store: SessionStore
    if kind == "memory":
        store = MemorySessionStore(secret=b"k" * 32, ttl_s=3600)
    else:
        store = await RedisSessionStore.open(REDIS_URL, ttl_s=3600, prefix=prefix)
    directory = AgentDirectory([agent("a100"), agent("a200")])
    current = directory.get("a100")
    assert current is not None
    try:
        stale = (await store.create("a100", "credentials-before-the-restart"))[0]
        fresh = (await store.create("a100", current.credentials_tag))[0]
        unupgraded = (await store.create("a200"))[0]  # made before sessions kept credentials
        await sweep_once(store, DesktopHub(None), directory)
        assert await store.get(stale.session_id) is None
        assert await store.get(unupgraded.session_id) is None
        kept = await store.get(fresh.session_id)
        assert kept is not None and kept.credentials == current.credentials_tag
    finally:
        await store.aclose()
        await delete_prefix(prefix)


# --------------------------------------------------------------------------- 3: lockout DoS


async def test_guesses_from_elsewhere_do_not_lock_the_agent_out(desk: Desk) -> None:
    """Review finding 3: five wrong passwords for a100 from anywhere locked a100 out
    everywhere; now the lockout is per agent id *and* client address."""
    for i in range(5):
        assert await desk.login_status("a100", f"guess-{i}", source="127.0.0.2") == 401
    assert await desk.login_status("a100", PASSWORD, source="127.0.0.2") == 429
    assert await desk.login_status("a100", PASSWORD) == 200  # the agent at their desk


async def test_token_lockout_is_per_client_address(desk: Desk) -> None:
    for i in range(5):
        assert await desk.post_login({"token": f"tok_{i:040d}"}, "127.0.0.2") == 401
    assert await desk.post_login({"token": "tok_" + "z" * 40}, "127.0.0.2") == 429
    assert await desk.post_login({"token": "tok_" + "z" * 40}) == 401  # checked, not locked


async def test_distributed_guessing_meets_a_per_agent_ceiling() -> None:
    """From many addresses: max_failed_logins_per_agent (here 10) locks the agent out at
    new addresses, but not at the address it logged in from lately."""
    config = DesktopConfig(secure_cookie=False, max_failed_logins_per_agent=10)
    async with open_desk(config) as desk:
        assert await desk.login_status("a100", PASSWORD) == 200  # its usual desk
        for source in ("127.0.0.2", "127.0.0.3"):
            for i in range(5):
                assert await desk.login_status("a100", f"guess-{i}", source=source) == 401
        assert await desk.login_status("a100", "guess", source="127.0.0.4") == 429
        assert await desk.login_status("a100", PASSWORD, source="127.0.0.4") == 429
        assert await desk.login_status("a100", PASSWORD) == 200
        assert await desk.login_status("a200", PASSWORD, source="127.0.0.4") == 200
        desk.clock.now += 301
        assert await desk.login_status("a100", PASSWORD, source="127.0.0.4") == 200


# --------------------------------------------------------------------------- 4: scrypt burn


async def test_unknown_agent_ids_from_one_address_stop_costing_scrypt(desk: Desk) -> None:
    """Review finding 7 (the brief's 4): each random agent id got a fresh throttle key, so
    one client could make the server hash for ever (~46 scrypt/s). Now the address's
    failures count too: after max_failed_logins_per_address (20) it is refused unhashed."""
    statuses = [await desk.login_status(f"nobody-{i}", "guess") for i in range(30)]
    assert Counter(statuses) == {401: 20, 429: 10}
    assert await desk.login_status("a200", PASSWORD, source="127.0.0.2") == 200


async def test_known_and_unknown_ids_are_refused_alike(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same answer, and both cost one scrypt (a dummy hash for the unknown id): each
    attempt derives exactly one key, and the median times stay within a factor of each
    other (no enumeration by timing; taken in turns, so a busy machine slows both alike)."""
    derived: list[int] = []
    real_derive = passwords._derive

    def counted_derive(*args: Any) -> bytes:
        derived.append(1)
        return real_derive(*args)

    monkeypatch.setattr(passwords, "_derive", counted_derive)

    async def timed(agent_id: str, source: str) -> float:
        before = len(derived)
        start = asyncio.get_running_loop().time()
        assert await desk.login_status(agent_id, "wrong-password", source=source) == 401
        took = asyncio.get_running_loop().time() - start
        assert len(derived) == before + 1, f"{agent_id}: {len(derived) - before} scrypts"
        return took

    known: list[float] = []
    unknown: list[float] = []
    for i in range(7):
        known.append(await timed("a100", f"127.0.1.{i}"))
        unknown.append(await timed(f"nobody-{i}", f"127.0.2.{i}"))
    assert 0.5 < sorted(unknown)[3] / sorted(known)[3] < 2.0


async def test_password_checks_beyond_the_gate_are_answered_busy() -> None:
    """At most max_password_checks scrypts run at once (a few queued): the rest get 503
    at once, without counting as failures."""
    config = DesktopConfig(
        secure_cookie=False, max_password_checks=1, max_waiting_password_checks=1
    )
    async with open_desk(config) as desk:
        statuses = await asyncio.gather(*(desk.login_status("a100", f"g{i}") for i in range(5)))
        counted = Counter(statuses)
        assert counted[503] >= 1 and counted[401] + counted[503] == 5, counted
        assert await desk.login_status("a100", PASSWORD) == 200  # the 503s were not failures


# --------------------------------------------------------------------------- 5: sockets


async def test_a_socket_sending_too_many_messages_is_closed() -> None:
    """A client's pings are answered, up to max_socket_messages_per_minute: one more and the
    socket is closed with 1008 and a reason (every message used to cost a reply for ever)."""
    config = DesktopConfig(secure_cookie=False, max_socket_messages_per_minute=5)
    async with open_desk(config) as desk:
        assert await desk.login_status("a100", PASSWORD) == 200
        origin = f"http://{desk.client.server.host}:{desk.client.server.port}"
        ws = await desk.client.ws_connect("/desktop/ws", origin=origin)
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        for _ in range(5):
            await ws.send_str("ping")
            assert (await ws.receive_json(timeout=10)) == {"type": "pong"}
        await ws.send_str("ping")
        closing = await ws.receive(timeout=10)
        assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)
        assert closing.extra == "too many messages on this socket (at most 5 a minute)"


async def test_sockets_per_session_are_capped(desk: Desk) -> None:
    """Review finding 12 (the brief's 5): one session opened 300 sockets. Now the 9th of a
    session is closed at once with 1008 and a reason; another session still gets its own."""
    assert await desk.login_status("a100", PASSWORD) == 200
    origin = f"http://{desk.client.server.host}:{desk.client.server.port}"
    opened = [await desk.client.ws_connect("/desktop/ws", origin=origin) for _ in range(8)]
    for ws in opened:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
    extra = await desk.client.ws_connect("/desktop/ws", origin=origin)
    closing = await extra.receive(timeout=10)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)
    assert closing.extra == "too many desktop sockets for this session (at most 8)"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as other:  # another browser: own session
        body = {"agent_id": "a100", "password": PASSWORD}
        await ok(await other.post(desk.client.make_url("/desktop/login"), json=body))
        ws = await other.ws_connect(desk.client.make_url("/desktop/ws"), origin=origin)
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        await ws.close()

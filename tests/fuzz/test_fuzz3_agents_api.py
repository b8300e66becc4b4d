"""Third-round property tests: agent management over HTTP (``/v1/agents``, the routes
``api/openapi_agents.py`` documents) on a real SQLite roster.

Any method, path, admin token and JSON body: never a 500, every error in the API's one
shape. With the agent state in Redis, an agent hash changed by something else leaves the
roster readable (that agent without a state, the others as they are) instead of a 500."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from ivr_engine.agents import AgentStateStore, InMemoryAgentStateStore, RedisAgentStateStore
from ivr_engine.api.app import create_api_app
from ivr_engine.contact_center.agent_record import records_from_file
from ivr_engine.contact_center.agents_api import agents_routes
from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.contact_center.live_roster import LiveRoster
from ivr_engine.contact_center.roster_store import SqlRosterStore
from ivr_engine.desktop import load_agent_directory
from ivr_engine.routing import load_routing_config
from ivr_engine.timeline import open_timeline
from tests.redis_support import REDIS_URL

REPO = Path(__file__).resolve().parents[2]
ROUTING = load_routing_config(REPO / "config/routing.yaml")
AGENTS_FILE = REPO / "config/agents.yaml"
SEED = records_from_file(
    load_agent_profiles(AGENTS_FILE, ROUTING), load_agent_directory(AGENTS_FILE)
)
ADMIN = "adm1n-" + "z" * 40
Client = TestClient[Any, Any]


@asynccontextmanager
async def _api(agents: AgentStateStore) -> AsyncIterator[Client]:
    with tempfile.TemporaryDirectory() as tmp:
        url = "sqlite:///" + str(Path(tmp) / "t.db")
        timeline = await open_timeline(url)
        roster = LiveRoster(SqlRosterStore(url), config=ROUTING, agents=agents)
        await roster.start(SEED)
        try:
            app = create_api_app(
                store=timeline.store, lookup=timeline.lookup, menus={}, admin_token=ADMIN
            )
            clock = lambda: datetime.now(UTC)  # noqa: E731
            app.add_routes(agents_routes(roster, agents, clock, admin_token=ADMIN))
            async with TestClient(TestServer(app)) as client:
                yield client
        finally:
            await roster.aclose()
            await timeline.close()


def _check(status: int, text: str) -> None:
    assert status < 500, (status, text)
    if status >= 400 and status != 405:
        doc = json.loads(text)
        assert set(doc) == {"error"} and isinstance(doc["error"]["message"], str), doc
        assert isinstance(doc["error"]["code"], str) and doc["error"]["code"], doc


_atom = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.sampled_from(["", "c3", "a1", "x" * 200, "\x00", "\ud800", "²", "PJSIP/agent-3",
                     "billing", "general", "en-GB", "fr", "a" * 64, "long-enough-pw", "0" * 64]),
    st.text(max_size=8),
)  # fmt: skip
_json = st.recursive(
    _atom,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["billing", "general", "x", "en"]), inner, max_size=3)
    ),
    max_leaves=8,
)
_VALID = {"agent_id": "c3", "name": "Cleo", "sip_endpoint": "PJSIP/agent-3",
          "skills": {"billing": 5}, "languages": ["en-GB"], "team": "billing",
          "max_concurrent": 1, "token_sha256": "ab" * 32}  # fmt: skip
_KEYS = [*_VALID, "password", "extra"]


@st.composite
def _body(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([b"", b"{", b"\xff", b"[" * 5000, b"nul", b"[]"]))
    body: dict[str, Any] = dict(_VALID)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(_KEYS))
        if draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = draw(_json)
    return json.dumps(body).encode()


_request = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    st.sampled_from(["", "/c3", "/a1", "/a2", "/%00", "/" + quote("é"), "/" + "a" * 65, "/..",
                     "/c3%2Fx", "/%20"]),
    _body(),
    st.sampled_from([f"Bearer {ADMIN}", None, "Bearer x", "Basic abc", f"bearer {ADMIN}", ""]),
)  # fmt: skip


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_request, min_size=1, max_size=8))
def test_no_agent_management_request_is_a_500(
    requests: list[tuple[str, str, bytes, str | None]],
) -> None:
    async def main() -> None:
        agents = InMemoryAgentStateStore()
        try:
            async with _api(agents) as client:
                for method, path, body, auth in requests:
                    headers = {"Content-Type": "application/json"}
                    if auth is not None:
                        headers["Authorization"] = auth
                    data = body if method in ("POST", "PUT", "PATCH") else None
                    resp = await client.request(method, "/v1/agents" + path, data=data,
                                                headers=headers)  # fmt: skip
                    _check(resp.status, await resp.text())
        finally:
            await agents.aclose()

    asyncio.run(main())


@pytest.mark.usefixtures("redis_url")
def test_a_corrupt_agent_hash_leaves_the_roster_readable() -> None:
    """One agent hash changed by something else: that agent is left out of the state
    snapshot (its row shows no state), the others still read, so routing goes on."""

    async def main() -> None:
        prefix = f"fuzz3:{{agents-{uuid.uuid4().hex}}}:"
        agents = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix)
        raw = Redis.from_url(REDIS_URL)
        try:
            async with _api(agents) as client:
                ids = sorted((await agents.snapshot()).keys())
                assert len(ids) >= 2
                bad, good = ids[0], ids[1]
                await raw.hset(prefix + "agent:" + bad, "since", "1e300")
                assert sorted((await agents.snapshot()).keys()) == ids[1:]
                resp = await client.get("/v1/agents")
                assert resp.status == 200, await resp.text()
                body = await resp.json()
                assert body["agent_state_available"] is True
                states = {row["agent_id"]: row["state"] for row in body["agents"]}
                assert states[bad] is None and states[good] is not None, states
                resp = await client.get("/v1/agents/" + bad)
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["state"] is None
        finally:
            await agents.aclose()
            keys = [k async for k in raw.scan_iter(match=prefix + "*")]
            if keys:
                await raw.delete(*keys)
            await raw.aclose()

    asyncio.run(main())

"""Agent management over HTTP (issue #3): POST/GET/PUT/PATCH/DELETE /v1/agents on a real
engine (real FastAGI socket, real aiohttp server, SQLite and PostgreSQL roster), taking
effect without a restart: the router, the desktop login and the live state follow."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr_engine.agents.model import AgentState
from ivr_engine.app import Engine
from ivr_engine.timeline.migrate import upgrade
from tests.component.test_agent_routing_flow import billing_caller, center
from tests.component.test_ivr_flow import REPO, call, settings_for
from tests.redis_support import REDIS_URL, require_redis

TOKEN = "t0k3n-" + "a" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NEW_AGENT: dict[str, Any] = {
    "agent_id": "c3",
    "name": "Cleo Collections",
    "sip_endpoint": "PJSIP/agent-3",
    "skills": {"billing": 5, "general": 3},
    "languages": ["en-GB", "fr"],
    "team": "billing",
    "max_concurrent": 1,
    "password": "cleo-demo-password",
}

NewPg = Callable[[], Coroutine[Any, Any, str]]


async def start_engine(url: str, tmp_path: Path, **extra: object) -> Engine:
    settings = settings_for(
        url,
        tmp_path,
        agents_file=REPO / "config/agents.yaml",
        routing_file=REPO / "config/routing.yaml",
        desktop_secure_cookie=False,
        **extra,
    )
    engine = Engine(settings)
    await engine.start()
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def roster_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of its own (the roster is global to a database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'roster.db'}"
    new_pg_database: NewPg = request.getfixturevalue("new_pg_database")
    url = await new_pg_database()
    await upgrade(url)
    return url


@pytest.fixture
async def engine(roster_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    running = await start_engine(roster_url, tmp_path, admin_token=TOKEN)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def http(engine: Engine) -> AsyncIterator[aiohttp.ClientSession]:
    base = f"http://127.0.0.1:{engine.http_port}"
    jar = aiohttp.CookieJar(unsafe=True)  # keep the desktop cookie of 127.0.0.1
    async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as session:
        yield session


async def send(
    http: aiohttp.ClientSession, method: str, path: str, status: int, **kw: Any
) -> dict[str, Any]:
    kw.setdefault("headers", AUTH)
    async with http.request(method, path, **kw) as response:
        text = await response.text()
        assert response.status == status, text
        return {} if status == 204 else dict(await response.json())


# --------------------------------------------------------------------------- CRUD


async def test_create_read_update_delete(http: aiohttp.ClientSession) -> None:
    created = await send(http, "POST", "/v1/agents", 201, json=NEW_AGENT)
    assert created["agent_id"] == "c3" and created["languages"] == ["en", "fr"]
    assert created["has_password"] is True and "password_hash" not in created
    await send(http, "POST", "/v1/agents", 409, json=NEW_AGENT)
    got = await send(http, "GET", "/v1/agents/c3", 200, headers={})
    assert got["skills"] == {"billing": 5, "general": 3} and got["state"] == "logged_out"
    assert (created["state"], created["since"]) == ("logged_out", got["since"])  # registered
    listed = await send(http, "GET", "/v1/agents", 200, headers={})
    assert [a["agent_id"] for a in listed["agents"]] == ["a1", "a2", "c3"]
    replaced = {k: v for k, v in NEW_AGENT.items() if k not in ("agent_id", "password")}
    replaced["skills"] = {"retention": 2}
    put = await send(http, "PUT", "/v1/agents/c3", 200, json=replaced)
    assert put["skills"] == {"retention": 2} and put["has_password"] is True  # kept
    patched = await send(http, "PATCH", "/v1/agents/c3", 200, json={"name": "Cleo C."})
    assert patched["name"] == "Cleo C." and patched["skills"] == {"retention": 2}
    for written in (put, patched):  # the live state, as GET shows it (not null)
        assert (written["state"], written["since"]) == ("logged_out", got["since"])
    for response in (created, got, put, patched, listed):
        assert "cleo-demo-password" not in str(response) and "scrypt" not in str(response)
    await send(http, "DELETE", "/v1/agents/c3", 204)
    await send(http, "GET", "/v1/agents/c3", 404, headers={})
    await send(http, "DELETE", "/v1/agents/c3", 404)
    await send(http, "PATCH", "/v1/agents/c3", 404, json={"name": "x"})


# --------------------------------------------------------------------------- validation


def _with(**changes: Any) -> dict[str, Any]:
    return {**NEW_AGENT, **changes}


def _without(*keys: str) -> dict[str, Any]:
    return {k: v for k, v in NEW_AGENT.items() if k not in keys}


@pytest.mark.parametrize("roster_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("body", "status", "code", "where"),
    [
        (_with(skills={"billing": 9}), 400, "validation_error", "skills.billing"),
        (_with(skills={"billing": True}), 400, "validation_error", "skills.billing"),
        (_with(skills={"juggling": 3}), 422, "roster_rule", "juggling"),
        (_with(max_concurrent="2"), 400, "validation_error", "max_concurrent"),
        (_with(max_concurrent=0), 400, "validation_error", "max_concurrent"),
        (_with(agent_id="no spaces"), 400, "validation_error", "agent_id"),
        (_with(sip_endpoint="PJSIP/a;evil"), 400, "validation_error", "sip_endpoint"),
        (_with(password="short"), 400, "validation_error", "password"),
        (_with(colour="red"), 400, "validation_error", "colour"),
        (_with(languages="en"), 400, "validation_error", "languages"),
        (_without("password"), 422, "roster_rule", "password"),
        (_without("name"), 400, "validation_error", "name"),
        (["not", "an", "object"], 400, "validation_error", ""),
        (_with(skills={f"s{n}": 1 for n in range(100)}), 400, "validation_error", "skills"),
    ],
)
async def test_bad_bodies_are_refused_precisely(
    http: aiohttp.ClientSession, body: Any, status: int, code: str, where: str
) -> None:
    error = (await send(http, "POST", "/v1/agents", status, json=body))["error"]
    assert error["code"] == code and where in error["message"]
    assert (await send(http, "GET", "/v1/agents", 200, headers={}))["agents"][-1][
        "agent_id"
    ] == "a2"


@pytest.mark.parametrize("roster_url", ["sqlite"], indirect=True)
async def test_hostile_bodies_get_a_clear_4xx(http: aiohttp.ClientSession) -> None:
    json_headers = {**AUTH, "Content-Type": "application/json"}
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (b"{not json", json_headers, 400, "invalid_json"),
        (b"", json_headers, 400, "invalid_json"),
        (b"\xff\xfe", json_headers, 400, "invalid_encoding"),
        (b"[" * 100_000 + b"]" * 100_000, json_headers, 400, ""),
        (b'{"agent_id": "' + b"x" * 400_000 + b'"}', json_headers, 413, "body_too_large"),
        (b"agent_id=c3", {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}, 415, ""),
    ]
    for raw, headers, status, code in cases:
        error = (await send(http, "POST", "/v1/agents", status, data=raw, headers=headers))["error"]
        assert code in error["code"]
    patch = await send(http, "PATCH", "/v1/agents/a1", 400, json={"name": None})
    assert patch["error"]["message"].startswith("name:")
    put = await send(
        http, "PUT", "/v1/agents/a1", 400, json={**_without("password"), "agent_id": "a2"}
    )
    assert "agent_id" in put["error"]["message"]
    await send(http, "GET", "/v1/agents/" + "x" * 300, 404, headers={})


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize("roster_url", ["sqlite"], indirect=True)
async def test_writes_need_the_admin_token(http: aiohttp.ClientSession) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        async with http.post("/v1/agents", json=NEW_AGENT, headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.delete("/v1/agents/a1", headers=headers) as response:
            assert response.status == 401
    await send(http, "GET", "/v1/agents/a1", 200, headers={})  # reads stay open
    await send(http, "POST", "/v1/agents", 201, json=NEW_AGENT)


async def test_without_admin_token_writes_are_off(sqlite_url: str, tmp_path: Path) -> None:
    engine = await start_engine(sqlite_url, tmp_path)
    try:
        base = f"http://127.0.0.1:{engine.http_port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            error = (await send(http, "POST", "/v1/agents", 403, json=NEW_AGENT))["error"]
            assert "IVR_ENGINE_ADMIN_TOKEN" in error["message"]
            await send(http, "DELETE", "/v1/agents/a1", 403)
            await send(http, "GET", "/v1/agents", 200, headers={})
    finally:
        await engine.stop()


CONTROL_CHARACTERS = ["Ada\nEve", "Ada\x00", "Ada\x7f", "\u202eevE adA", "Ada\u2066x", "Ada\u2028"]


@pytest.mark.parametrize("agent_state_url", [None, "redis"])
async def test_names_and_teams_with_control_characters_are_refused(
    sqlite_url: str, tmp_path: Path, agent_state_url: str | None
) -> None:
    """A "\\n", a NUL or a bidi override (U+202E shows "Ada Eve" reversed) in a name or
    team is a 400 naming the key, whichever store keeps the live state; nothing is written."""
    if agent_state_url == "redis":
        await require_redis()
        agent_state_url = REDIS_URL.rsplit("/", 1)[0] + "/11"  # the engines' db (see limits)
    engine = await start_engine(
        sqlite_url, tmp_path, admin_token=TOKEN, agent_state_url=agent_state_url
    )
    try:
        base = f"http://127.0.0.1:{engine.http_port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            for text in CONTROL_CHARACTERS:
                for key in ("name", "team"):
                    for method, path, body in (
                        ("POST", "/v1/agents", _with(**{key: text})),
                        ("PUT", "/v1/agents/a1", _without("agent_id", "password") | {key: text}),
                        ("PATCH", "/v1/agents/a1", {key: text}),
                    ):
                        error = (await send(http, method, path, 400, json=body))["error"]
                        assert error["code"] == "validation_error", (method, key, text)
                        assert error["message"].startswith(f"{key}:"), error
                        assert "control character U+" in error["message"]
            listed = await send(http, "GET", "/v1/agents", 200, headers={})
            assert [(a["agent_id"], a["name"]) for a in listed["agents"]][-1][0] == "a2"
            assert all(a["name"].isprintable() for a in listed["agents"])
    finally:
        await engine.stop()


# --------------------------------------------------------------------------- routing


async def _ringing_call_of(engine: Engine, agent_id: str) -> str:
    snap = await center(engine).agents.get(agent_id)
    assert snap.reservation is not None or snap.interactions
    return snap.reservation.call_id if snap.reservation is not None else snap.interactions[0]


async def test_router_follows_created_edited_and_deleted_agents(
    engine: Engine, http: aiohttp.ClientSession, new_phone: Callable[[], str]
) -> None:
    agents = center(engine).agents
    await send(http, "POST", "/v1/agents", 201, json=NEW_AGENT)
    await agents.set_state("c3", AgentState.AVAILABLE)  # a1, a2 stay logged out
    phone = new_phone()
    await billing_caller(engine, phone)
    first = await call(engine, phone, ["1"])
    assert first.variables["IVR_AGENT_ID"] == "c3"
    assert first.variables["IVR_AGENT_ENDPOINT"] == "PJSIP/agent-3"
    await agents.release("c3", await _ringing_call_of(engine, "c3"), wrap_up=False)

    await send(http, "PATCH", "/v1/agents/c3", 200, json={"skills": {"general": 3}})
    second = await call(engine, phone, ["1"])
    assert second.variables["IVR_AGENT_ID"] == ""  # no billing skill any more: overflow
    assert second.variables["IVR_TARGET"] == "queue:billing"

    await send(http, "PATCH", "/v1/agents/c3", 200, json={"skills": {"billing": 4}})
    assert (await call(engine, phone, ["1"])).variables["IVR_AGENT_ID"] == "c3"
    await agents.release("c3", await _ringing_call_of(engine, "c3"), wrap_up=False)

    await send(http, "DELETE", "/v1/agents/c3", 204)
    assert (await agents.get("c3")).state is AgentState.LOGGED_OUT
    await agents.set_state("c3", AgentState.AVAILABLE)  # even if something sets it back
    assert (await call(engine, phone, ["1"])).variables["IVR_AGENT_ID"] == ""


# --------------------------------------------------------------------------- desktop


@pytest.mark.parametrize("roster_url", ["sqlite"], indirect=True)
async def test_an_api_agent_logs_in_until_deleted(http: aiohttp.ClientSession) -> None:
    login = {"agent_id": "c3", "password": NEW_AGENT["password"]}
    await send(http, "POST", "/desktop/login", 401, json=login, headers={})
    await send(http, "POST", "/v1/agents", 201, json=NEW_AGENT)
    await send(http, "POST", "/desktop/login", 200, json=login, headers={})
    me = await send(http, "GET", "/desktop/api/me", 200, headers={})
    assert me["agent"]["agent_id"] == "c3"
    new_password = {"password": "a-brand-new-password"}
    await send(http, "PATCH", "/v1/agents/c3", 200, json=new_password)
    await send(http, "POST", "/desktop/login", 401, json=login, headers={})
    await send(http, "DELETE", "/v1/agents/c3", 204)
    await send(http, "GET", "/desktop/api/me", 401, headers={})  # the session has ended
    relogin = {"agent_id": "c3", **new_password}
    await send(http, "POST", "/desktop/login", 401, json=relogin, headers={})


# --------------------------------------------------------------------------- OpenAPI


@pytest.mark.parametrize("roster_url", ["sqlite"], indirect=True)
async def test_openapi_documents_every_agent_route(
    engine: Engine, http: aiohttp.ClientSession
) -> None:
    doc = await send(http, "GET", "/openapi.json", 200, headers={})
    assert engine.http is not None
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in engine.http.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v1/agents")
    }
    documented = {
        (method, path)
        for path, item in doc["paths"].items()
        if path.startswith("/v1/agents")
        for method in item
    }
    assert served - {("head", "/v1/agents"), ("head", "/v1/agents/{agent_id}")} == documented
    post = doc["paths"]["/v1/agents"]["post"]
    assert post["security"] == [{"adminToken": []}] and {"401", "403", "409", "422"} <= set(
        post["responses"]
    )
    assert doc["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    assert "password" in doc["components"]["schemas"]["NewAgentBody"]["properties"]
    assert "password_hash" not in doc["components"]["schemas"]["AgentJson"]["properties"]

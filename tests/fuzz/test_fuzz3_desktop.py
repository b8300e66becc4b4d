"""Third-round property tests: the agent desktop (login, state buttons, WebSocket, sessions).

* Any request (body, content type, Origin, cookie), logged in or not, gets a JSON answer
  below 500; every error is ``{"error": {"code", "message", ...}}``.
* Any frames the browser sends on ``/ws`` get a pong for ``"ping"``, and the socket either
  stays open or closes with a close code (never an internal-error close).
* A session whose Redis hash was changed by something else (unreadable ``expires``,
  ``created``; text that is not UTF-8) is no session (401) or the documented 503, never a
  500 (``float()`` raised ``ValueError``/``TypeError``; ``expires: nan`` was a session
  that never ended)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from ivr_engine.agents import InMemoryAgentStateStore
from ivr_engine.desktop import (
    AgentDirectory,
    DesktopAgent,
    DesktopConfig,
    DesktopHub,
    create_desktop_app,
    hash_password,
)
from ivr_engine.desktop.passwords import token_digest
from ivr_engine.desktop.redis_sessions import RedisSessionStore
from ivr_engine.desktop.sessions import SessionStore
from tests.redis_support import REDIS_URL

PASSWORD = "correct horse battery staple"
TOKEN = "tok_" + "x" * 40
Client = TestClient[Any, Any]
_FEW = settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
_DIRECTORY = AgentDirectory(
    [
        DesktopAgent("a100", "Alice", "PJSIP/alice", password_hash=hash_password(PASSWORD, n=2)),
        DesktopAgent("bot1", "CTI", "PJSIP/cti", token_sha256=token_digest(TOKEN)),
    ]
)


@asynccontextmanager
async def _desk(sessions: SessionStore | None = None) -> AsyncIterator[Client]:
    agents = InMemoryAgentStateStore()
    desktop = create_desktop_app(
        directory=_DIRECTORY,
        agents=agents,
        hub=DesktopHub(None),
        config=DesktopConfig(secure_cookie=False, max_failed_logins=1000),
        sessions=sessions,
    )
    root = web.Application()
    root.add_subapp("/desktop", desktop)
    try:
        async with TestClient(TestServer(root)) as client:
            yield client
    finally:
        await agents.aclose()


def _run(work: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with _desk() as client:
            await work(client)

    asyncio.run(main())


def _origin(client: Client) -> str:
    return f"http://{client.server.host}:{client.server.port}"


async def _login(client: Client) -> None:
    body = {"agent_id": "a100", "password": PASSWORD}
    resp = await client.post("/desktop/login", json=body)
    assert resp.status == 200, await resp.text()


async def _check(resp: Any, *, allow_503: bool = False) -> tuple[int, Any]:
    text = await resp.text()
    assert resp.status < 500 or (allow_503 and resp.status == 503), (resp.status, text)
    if resp.status < 400 or resp.status == 405:
        return resp.status, None
    assert resp.content_type == "application/json", (resp.status, text)
    doc = json.loads(text)
    assert set(doc) == {"error"} and isinstance(doc["error"]["message"], str), doc
    assert isinstance(doc["error"]["code"], str) and doc["error"]["code"], doc
    return resp.status, doc


# --------------------------------------------------------------------------- HTTP

_atom = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.sampled_from(["a100", "bot1", PASSWORD, TOKEN, "", "x" * 2000, "\x00", "\ud800", "²",
                     "available", "pause", "finish_wrap_up", "log_out", "A100", "a100\n"]),
    st.text(max_size=10),
)  # fmt: skip
_json = st.recursive(
    _atom,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["agent_id", "password", "token", "action", "x"]), inner)
    ),
    max_leaves=8,
)


def _encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # ensure_ascii: a lone surrogate travels as \\ud800


_body = st.one_of(
    _json.map(_encode),
    st.sampled_from([b"", b"{", b"\xff", b"[" * 20000, b'{"action":"pause"}' * 2, b"x" * 20000,
                     b'{"agent_id":"a100","password":"' + b"p" * 2000 + b'"}',
                     b'{"token":"\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800"}',
                     b'{"agent_id":"a100","password":"\\udfff"}']),
)  # fmt: skip
_request = st.tuples(
    st.sampled_from(["/desktop/login", "/desktop/logout", "/desktop/api/state",
                     "/desktop/api/pop/dismiss", "/desktop/api/me", "/desktop/ws"]),
    st.sampled_from(["POST", "GET"]),
    _body,
    st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1",
                     "multipart/form-data", ""]),
    st.sampled_from([None, "own", "http://evil.example", "null", "", "HTTP://OWN", "\u00e9"]),
    st.sampled_from([None, "", "x", "a.b", "." * 300, "é.x", "abc.def.ghi"]),
)  # fmt: skip


@_FEW
@example(
    requests=[
        (
            "/desktop/login",
            "POST",
            b'{"agent_id":"a100","password":"\\udfff"}',
            "application/json",
            None,
            None,
        )
    ],
    logged_in=False,
)
@given(st.lists(_request, min_size=1, max_size=10), st.booleans())
def test_no_desktop_request_is_a_500(
    requests: list[tuple[str, str, bytes, str, str | None, str | None]], logged_in: bool
) -> None:
    async def work(client: Client) -> None:
        if logged_in:
            await _login(client)
        for path, method, body, content_type, origin, cookie in requests:
            headers = {"Content-Type": content_type} if content_type else {}
            if origin is not None:
                headers["Origin"] = _origin(client) if origin == "own" else origin
            if cookie is not None:
                headers["Cookie"] = f"ivr_desktop_session={cookie}"
            resp = await client.request(method, path, data=body, headers=headers)
            await _check(resp)

    _run(work)


# --------------------------------------------------------------------------- WebSocket

_frame = st.one_of(
    st.tuples(st.just("text"), st.sampled_from(["ping", "PING", "", "pong", "x" * 2000])),
    st.tuples(st.just("text"), st.text(max_size=20)),
    st.tuples(st.just("bytes"), st.binary(max_size=20)),
    st.tuples(st.just("close"), st.sampled_from([1000, 1001, 3000, 4999])),
)


@_FEW
@given(st.lists(_frame, min_size=1, max_size=8))
def test_websocket_frames_get_a_pong_or_a_close_code(frames: list[tuple[str, Any]]) -> None:
    async def work(client: Client) -> None:
        await _login(client)
        ws = await client.ws_connect("/desktop/ws", origin=_origin(client))
        async with asyncio.timeout(5):
            hello = await ws.receive_json()
            assert hello["type"] == "hello"
            for kind, data in frames:
                if kind == "close":
                    await ws.close(code=data)
                    break
                if kind == "text":
                    await ws.send_str(data)
                    if data != "ping":  # ignored: a ping right after still gets its pong
                        await ws.send_str("ping")
                else:
                    await ws.send_bytes(data)
                reply = await ws.receive()
                if reply.type == WSMsgType.TEXT:
                    assert json.loads(reply.data) == {"type": "pong"}
                    continue
                assert reply.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
                assert ws.close_code is not None and ws.close_code != 1011, ws.close_code
                break
            await ws.close()

    _run(work)


# --------------------------------------------------------------------------- Redis sessions


@pytest.mark.usefixtures("redis_url")
@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@example(field="expires", value=b"soon")
@example(field="expires", value=None)
@example(field="expires", value=b"nan")
@example(field="created", value=b"x")
@example(field="agent", value=b"\xff")
@given(
    st.sampled_from(["agent", "created", "expires"]),
    st.one_of(st.none(), st.sampled_from([b"", b"x", b"nan", b"inf", b"-inf", b"1e999", b"\xff",
                                          b"a100", b"bot1", b"1"]), st.binary(max_size=8)),
)  # fmt: skip
def test_a_corrupt_redis_session_is_no_session_or_a_503(field: str, value: bytes | None) -> None:
    async def main() -> None:
        prefix = f"fuzz3:{{desktop-{uuid.uuid4().hex}}}:"
        sessions = await RedisSessionStore.open(REDIS_URL, ttl_s=3600, prefix=prefix)
        raw = Redis.from_url(REDIS_URL)
        try:
            async with _desk(sessions) as client:
                await _login(client)
                (key,) = [k async for k in raw.scan_iter(match=prefix + "s:*")]
                if value is None:
                    await raw.hdel(key, field)
                else:
                    await raw.hset(key, field, value)
                for path, method in (("/desktop/api/me", "GET"), ("/desktop/logout", "POST")):
                    resp = await client.request(method, path)
                    status, doc = await _check(resp, allow_503=True)
                    if status == 503:
                        assert doc["error"]["code"] == "sessions_unavailable", doc
                    if value in (b"nan", b"inf", b"1e999", b"x", None) and field == "expires":
                        assert path != "/desktop/api/me" or status == 401, status
                await sessions.expire()
        finally:
            await sessions.aclose()
            keys = [k async for k in raw.scan_iter(match=prefix + "*")]
            if keys:
                await raw.delete(*keys)
            await raw.aclose()

    asyncio.run(main())

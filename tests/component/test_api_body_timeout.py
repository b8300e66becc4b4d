"""A JSON body must arrive whole within the body timeout: a stalled, slow (slowloris) or
broken one is a JSON 408 and frees its handler, instead of holding it until the client hangs
up. A malformed chunk in a later TCP segment than the headers is the broken case: aiohttp's C
parser never passes that error on to the body. Real sockets, served as the engine serves."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr_engine.api.app import create_api_app
from ivr_engine.app import Engine
from ivr_engine.contact_center.wiring import desktop_config
from ivr_engine.desktop import DesktopConfig
from ivr_engine.timeline import open_timeline
from tests.component.api_socket import served_like_the_engine
from tests.component.test_desktop_app import _desk
from tests.component.test_ivr_flow import settings_for

TIMEOUT_S = 0.5


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    timeline = await open_timeline("sqlite:///" + str(tmp_path / "t.db"))
    app = create_api_app(
        store=timeline.store, lookup=timeline.lookup, menus={}, body_timeout_s=TIMEOUT_S
    )
    try:
        async with served_like_the_engine(app) as port:
            yield port
    finally:
        await timeline.close()


def _head(port: int, framing: str, path: str = "/v1/customers") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


async def _exchange(
    port: int, first: bytes, later: list[bytes], pause_s: float, *, closed: bool = True
) -> bytes:
    """Sends ``first``, then each of ``later`` after ``pause_s``, while reading the answer;
    ``closed``: the server must close the connection after it (well before aiohttp's 10 s
    of "lingering" for the rest of the body), else it is kept alive."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        writer.write(first)
        await writer.drain()
        for part in later:
            await asyncio.sleep(pause_s)
            writer.write(part)
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        async with asyncio.timeout(5):
            if closed:
                return await reader.read()
            head = await reader.readuntil(b"\r\n\r\n")
            return head + await reader.readexactly(_content_length(head))
    finally:
        sending.cancel()
        writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


def _error(answer: bytes) -> tuple[bytes, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, json.loads(body)["error"]


async def test_a_malformed_chunk_after_the_headers_is_a_408(port: int) -> None:
    started = time.monotonic()
    answer = await _exchange(
        port, _head(port, "Transfer-Encoding: chunked"), [b"zz\r\nhello\r\n"], pause_s=0.2
    )
    head, error = _error(answer)
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"\r\nConnection: close" in head
    assert error == {
        "code": "body_timeout",
        "message": f"the body did not arrive whole within {TIMEOUT_S:g} s (+1 s per KiB received)",
    }
    assert time.monotonic() - started >= TIMEOUT_S


async def test_a_slowloris_body_is_a_408(port: int) -> None:
    """A byte every 0.1 s keeps the connection busy; the body as a whole is late."""
    body = b'{"display_name": "Ada Lovelace"}'
    head = _head(port, f"Content-Length: {len(body)}")
    later = [body[i : i + 1] for i in range(len(body))]
    answer = await _exchange(port, head, later, pause_s=0.1)
    _, error = _error(answer)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert error["code"] == "body_timeout"


async def test_a_body_in_segments_within_the_timeout_is_read(port: int) -> None:
    body = b'{"identities": [{"kind": "email", "value": "ada@example.com"}]}'
    head = _head(port, f"Content-Length: {len(body)}")
    answer = await _exchange(port, head + body[:10], [body[10:]], pause_s=0.2, closed=False)
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n"), answer


async def test_a_large_body_over_a_slow_link_that_keeps_coming_is_read(port: int) -> None:
    """6 KB at ~3.4 KB/s takes 1.8 s, over three times the timeout: a link slow for its size,
    not a stalled or dripping client (each KiB received gives the body another second). A
    whole-body deadline refused it: 256 KiB in the default 10 s needs 26 KB/s."""
    identities = b'"identities": [{"kind": "email", "value": "ada@example.com"}]'
    body = b"{" + b" " * 6000 + identities + b"}"
    head = _head(port, f"Content-Length: {len(body)}")
    parts = [body[i : i + 512] for i in range(512, len(body), 512)]
    started = time.monotonic()
    answer = await _exchange(port, head + body[:512], parts, pause_s=0.15, closed=False)
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n"), answer
    assert time.monotonic() - started > 3 * TIMEOUT_S


async def test_a_body_that_stalls_after_a_few_kib_is_still_a_408(port: int) -> None:
    body = b'{"display_name": "Ada Lovelace"' + b" " * 6000 + b"}"
    head = _head(port, f"Content-Length: {len(body)}")
    started = time.monotonic()
    answer = await _exchange(port, head + body[:2048], [], pause_s=0)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < TIMEOUT_S + 2048 / 1024 + 1


async def test_the_engine_applies_http_body_timeout_s(sqlite_url: str, tmp_path: Path) -> None:
    engine = Engine(settings_for(sqlite_url, tmp_path, http_body_timeout_s=TIMEOUT_S))
    await engine.start()
    try:
        port = engine.http_port
        head = _head(port, "Content-Length: 100", "/v1/events")
        answer = await _exchange(port, head + b'{"event_id": ', [], pause_s=0)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert (
            _error(answer)[1]["message"]
            == "the body did not arrive whole within 0.5 s (+1 s per KiB received)"
        )
    finally:
        await engine.stop()


async def test_the_redeem_route_applies_http_body_timeout_s(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Not a fixed 10 s of its own (``_exchange`` gives up after 5 s), and the connection
    is closed after the 408 as the API's other routes do (it was kept alive)."""
    settings = settings_for(
        sqlite_url, tmp_path, http_body_timeout_s=TIMEOUT_S, continuation_secret="ab" * 32
    )
    engine = Engine(settings)
    await engine.start()
    try:
        port = engine.http_port
        head = _head(port, "Content-Length: 100", "/v1/continuations/redeem")
        answer = await _exchange(port, head + b'{"token": ', [], pause_s=0)
    finally:
        await engine.stop()
    head_lines, error = _error(answer)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"\r\nConnection: close" in head_lines  # the rest of the body may never come
    assert error == {
        "code": "body_timeout",
        "message": "the body did not arrive whole within 0.5 s (+1 s per KiB received)",
    }


def test_the_desktop_uses_http_body_timeout_s(sqlite_url: str, tmp_path: Path) -> None:
    """Not a fixed 10 s of its own: the engine's setting applies to the desktop's bodies."""
    settings = settings_for(sqlite_url, tmp_path, http_body_timeout_s=TIMEOUT_S)
    assert desktop_config(settings).body_timeout_s == TIMEOUT_S


async def test_the_desktops_408_keeps_its_headers_and_closes(sqlite_url: str) -> None:
    """The desktop's own body timeout goes through the same middleware: the 408 is closed
    too, and still carries the desktop's security headers."""
    config = DesktopConfig(secure_cookie=False, body_timeout_s=TIMEOUT_S)
    desks = _desk(sqlite_url, config)
    desk = await anext(desks)
    try:
        port = desk.client.server.port
        assert port is not None
        head = _head(port, "Content-Length: 100", "/desktop/login")
        answer = await _exchange(port, head + b'{"agent_id": ', [], pause_s=0)
    finally:
        await desks.aclose()
    head_lines, error = _error(answer)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert error["code"] == "body_timeout"
    assert b"\r\nX-Frame-Options: DENY" in head_lines and b"\r\nConnection: close" in head_lines

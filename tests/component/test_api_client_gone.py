"""A client that hangs up mid-body costs one DEBUG line, not an ERROR with a traceback (any
client can do it, as often as it likes); a reset while the client is still there is a
server fault and stays an ERROR with its traceback and a 500.

Served like the engine serves it (``web.AppRunner``, real socket): aiohttp's ``TestServer``
cancels the handler of a gone client (``handler_cancellation=True``), which hid the defect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from ivr_engine.api.app import create_api_app
from ivr_engine.timeline import open_timeline
from tests.component.api_socket import served_like_the_engine

ERRORS_LOGGER = "ivr_engine.api.errors"
BROKEN_PATH = "/test/database-reset"


async def _database_reset(_request: web.Request) -> web.Response:
    raise ConnectionResetError("connection reset by the database")


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    timeline = await open_timeline("sqlite:///" + str(tmp_path / "t.db"))
    app = create_api_app(store=timeline.store, lookup=timeline.lookup, menus={})
    app.router.add_get(BROKEN_PATH, _database_reset)
    try:
        async with served_like_the_engine(app) as port:
            yield port
    finally:
        await timeline.close()


class _Records(logging.Handler):
    """The middleware's records, and an event set at the first (the handler met the hang-up)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logged = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.logged.set()


@pytest.fixture
def middleware_log() -> Iterator[_Records]:
    logger, records = logging.getLogger(ERRORS_LOGGER), _Records()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(records)
    try:
        yield records
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)


@pytest.mark.parametrize(
    ("path", "framing", "part"),
    [
        ("/v1/customers", "Content-Length: 100", b'{"display_name": '),
        ("/v1/events", "Transfer-Encoding: chunked", b'10\r\n{"event_id": "e'),
    ],
)
async def test_a_client_gone_mid_body_is_one_debug_line(
    port: int,
    middleware_log: _Records,
    caplog: pytest.LogCaptureFixture,
    path: str,
    framing: str,
    part: bytes,
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    for _ in range(3):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + part)
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is reading the body (nothing to wait on)
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(5):
            await middleware_log.logged.wait()
        (record,) = middleware_log.records
        assert record.levelno == logging.DEBUG, record.getMessage()
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert record.getMessage() == f"POST {path}: the client hung up: Connection lost"
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        middleware_log.records.clear()
        middleware_log.logged.clear()
    assert "Traceback" not in caplog.text


async def test_a_reset_while_the_client_waits_is_still_an_error(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ERRORS_LOGGER)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = f"GET {BROKEN_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close"
        writer.write(request.encode() + b"\r\n\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), answer
    error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error == {"code": "internal_error", "message": "internal server error"}
    (record,) = [r for r in caplog.records if r.name == ERRORS_LOGGER]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == f"GET {BROKEN_PATH}: unhandled error"

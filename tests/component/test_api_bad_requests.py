"""A request aiohttp's parser refuses (header over 8 KiB) costs one short WARNING line, not
an ERROR with a traceback per request; the 400 reply stays aiohttp's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.http import HttpProcessingError
from aiohttp.http_exceptions import LineTooLong
from aiohttp.test_utils import TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.api.bad_requests import SERVER_LOGGER, BadRequestLogFilter
from ivr_engine.timeline import open_timeline

BIG_HEADER = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    timeline = await open_timeline("sqlite:///" + str(tmp_path / "t.db"))
    app = create_api_app(store=timeline.store, lookup=timeline.lookup, menus={})
    try:
        async with TestServer(app) as running:
            yield running
    finally:
        await timeline.close()


async def _send(server: TestServer, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(raw)
        async with asyncio.timeout(5):
            return await reader.read()  # aiohttp closes after an error reply
    finally:
        writer.close()


async def test_over_long_header_is_one_warning_line(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(3):
        reply = await _send(server, BIG_HEADER)
        assert reply.startswith(b"HTTP/1.0 400 Bad Request") or reply.startswith(b"HTTP/1.1 400")
    records = [r for r in caplog.records if r.name == SERVER_LOGGER]
    assert [r.levelname for r in records] == ["WARNING"]  # the 2nd and 3rd: DEBUG, dropped
    (line,) = records
    assert line.exc_info is None and "\n" not in line.getMessage()
    assert line.getMessage().startswith("Error handling request from 127.0.0.1: 400 Got more")
    assert len(line.getMessage()) < 200
    assert "Traceback" not in caplog.text


async def test_filter_leaves_with_the_app(server: TestServer) -> None:
    logger = logging.getLogger(SERVER_LOGGER)
    assert any(isinstance(f, BadRequestLogFilter) for f in logger.filters)
    await server.close()
    assert not any(isinstance(f, BadRequestLogFilter) for f in logger.filters)


def _record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        SERVER_LOGGER, logging.ERROR, __file__, 1, "Error handling request from %s",
        ("10.0.0.9",), (type(exc), exc, None),
    )  # fmt: skip


def test_one_warning_per_window_counting_the_quieted() -> None:
    now = [100.0]
    quiet = BadRequestLogFilter(window_s=60.0, clock=lambda: now[0])
    first = _record(LineTooLong("x" * 500, "8190"))
    assert quiet.filter(first) and first.levelname == "WARNING" and first.exc_info is None
    for _ in range(4):
        now[0] += 10.0
        later = _record(LineTooLong("y", "8190"))
        quiet.filter(later)
        assert later.levelname == "DEBUG"
    now[0] += 30.0
    next_window = _record(LineTooLong("z", "8190"))
    assert quiet.filter(next_window) and next_window.levelname == "WARNING"
    assert next_window.getMessage().endswith("(and 4 more since the last warning, at DEBUG)")


@pytest.mark.parametrize(
    "exc", [RuntimeError("handler bug"), HttpProcessingError(code=500, message="server side")]
)
def test_other_errors_keep_level_and_traceback(exc: BaseException) -> None:
    record = _record(exc)
    assert BadRequestLogFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == "Error handling request from 10.0.0.9"

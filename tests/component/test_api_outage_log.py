"""While the timeline is down, the API logs the outage once a minute, not a traceback per
request (a /healthz probe every second wrote ~170 lines a second)."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.api.outage_log import OutageLog
from ivr_engine.timeline import open_timeline

DOWN = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1


async def test_requests_while_the_timeline_is_down_log_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeline = await open_timeline(DOWN)
    app = create_api_app(store=timeline.store, lookup=timeline.lookup, menus={})
    try:
        async with TestClient(TestServer(app)) as client:
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="ivr_engine.api"):
                for _ in range(5):
                    resp = await client.get("/healthz")
                    assert resp.status == 503
                resp = await client.get("/v1/customers", params={"phone": "+15551230010"})
                assert resp.status == 503
    finally:
        await timeline.close()
    api = [r for r in caplog.records if r.name.startswith("ivr_engine.api")]
    warnings = [r for r in api if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is None
    assert "GET /healthz: timeline unavailable: " in warnings[0].getMessage()
    assert "127.0.0.1" in warnings[0].getMessage() or "connect" in warnings[0].getMessage()
    assert sum(1 for r in api if r.levelno == logging.DEBUG and r.exc_info) == 5


def test_the_next_window_reports_how_many_were_quiet(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outages = OutageLog(window_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="ivr_engine.api"):
        for step in (0.0, 1.0, 1.0, 1.0, 60.0):
            now[0] += step
            outages.record("GET /healthz", RuntimeError("refused"))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "GET /healthz: timeline unavailable: refused",
        "GET /healthz: timeline unavailable: refused; 3 more like it in the last 60 s",
    ]

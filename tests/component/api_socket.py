"""Serve an aiohttp app as the engine serves it (``web.AppRunner`` on a real socket, no
access log), for tests that need what aiohttp's ``TestServer`` changes (it cancels the
handler of a client that hangs up)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def served_like_the_engine(app: web.Application) -> AsyncIterator[int]:
    """The app listening on 127.0.0.1; yields its port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()

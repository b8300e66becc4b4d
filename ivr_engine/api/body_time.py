"""How long a request body may take to arrive: ``read_in_time``.

``timeout_s`` (the setting ``http_body_timeout_s``) plus one second for each
``MIN_BODY_RATE`` bytes received so far, so the deadline moves while the body keeps coming
at a real link's pace: a whole-body deadline alone refused a valid body over a slow link
(256 KiB, the API's limit, in 10 s needs 26 KB/s: more than a mobile EDGE link gives). A
stalled body (nothing more comes), a broken chunk (aiohttp's C parser passes nothing on) or
a drip (slowloris, slower than ``MIN_BODY_RATE``) still ends at about ``timeout_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiohttp import web

from ivr_engine.stopping import cancel_and_wait

MIN_BODY_RATE = 1024  # bytes a second (8 kbit/s): each KiB received gives one more second


async def read_in_time(request: web.BaseRequest, read: Awaitable[bytes], timeout_s: float) -> bytes:
    """What ``read`` (of ``request``'s body) returns; ``TimeoutError`` if the body is late
    (see the module). What ``read`` raises is raised."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    reading = asyncio.ensure_future(read)
    try:
        while True:
            received = request.content.total_bytes
            left = start + timeout_s + received / MIN_BODY_RATE - loop.time()
            if left <= 0:
                raise TimeoutError
            done, _ = await asyncio.wait({reading}, timeout=left)
            if done:
                return reading.result()
    finally:
        await cancel_and_wait({reading})


def late_body_message(timeout_s: float) -> str:
    """The 408's message: the deadline as ``read_in_time`` applies it."""
    return f"the body did not arrive whole within {timeout_s:g} s (+1 s per KiB received)"

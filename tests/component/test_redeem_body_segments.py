"""The redeem route reads the whole body, however many TCP segments it arrives in (a slow or
mobile link): real engine, raw socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from tests.component.test_continuation_redeem import PATH, issue, started


async def test_a_body_in_two_tcp_segments_is_read_whole(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    engine = await started(sqlite_url, tmp_path)
    try:
        token = await issue(engine, new_phone())
        body = json.dumps({"token": token}).encode()
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{engine.http_port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.http_port)
        try:
            writer.write(head + body[:10])
            await writer.drain()
            # the server must have read the first segment before the rest exists: a pause
            # (nothing to wait on: the bug was a handler that did not wait)
            await asyncio.sleep(0.3)
            writer.write(body[10:])
            await writer.drain()
            async with asyncio.timeout(10):
                answer = await reader.read()
        finally:
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 200 OK", answer
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["case_id"] == "case-r1"
    finally:
        await engine.stop()

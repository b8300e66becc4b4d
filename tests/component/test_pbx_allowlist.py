"""A FastAGI connection from a host not in pbx_allowlist is closed unread; one from a PBX
it names is served (real engine, real sockets)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from ivr_engine.app import Engine
from tests.component.test_ivr_flow import settings_for


async def agi_session(port: int) -> bytes:
    """Asterisk's side: the header block, then whatever the engine sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        header = "agi_network: yes\nagi_network_script: ivr?menu=main\nagi_callerid: 5550100\n\n"
        writer.write(header.encode())
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.readline()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def test_a_peer_outside_the_allowlist_is_cut_off_and_said_once(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(settings_for(sqlite_url, tmp_path, pbx_allowlist=["192.0.2.0/24"]))
    await engine.start()
    try:
        assert engine.agi is not None
        with caplog.at_level(logging.WARNING):
            assert await agi_session(engine.agi.port) == b""
            assert await agi_session(engine.agi.port) == b""
        refused = [r for r in caplog.records if "not in pbx_allowlist" in r.getMessage()]
        assert len(refused) == 1 and "127.0.0.1" in refused[0].getMessage()
        assert engine.agi.active_calls == 0
    finally:
        await engine.stop()


async def test_a_pbx_the_allowlist_names_is_served(sqlite_url: str, tmp_path: Path) -> None:
    engine = Engine(settings_for(sqlite_url, tmp_path, pbx_allowlist=["127.0.0.0/8"]))
    await engine.start()
    try:
        assert engine.agi is not None
        first = await agi_session(engine.agi.port)
        assert first.startswith(b'EXEC "Read" "IVR_READ,ivr-engine/welcome')
    finally:
        await engine.stop()


async def test_fastagi_open_to_the_network_without_an_allowlist_is_warned_about(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for allowlist, warned in (([], True), (["10.0.0.5"], False)):
        engine = Engine(
            settings_for(sqlite_url, tmp_path, agi_host="0.0.0.0", pbx_allowlist=allowlist)
        )
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            await engine.start()
        await engine.stop()
        said = any("pbx_allowlist not set" in r.getMessage() for r in caplog.records)
        assert said is warned

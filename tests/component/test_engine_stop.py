"""The engine's stop closes every part even when one fails: before, the first failing part
(a recorder whose spool had vanished) ended stop() there, the database's threads stayed
open and the process hung after SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from ivr_engine.app import Engine
from tests.component.test_ivr_flow import settings_for


async def test_a_failing_part_does_not_leave_the_rest_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = set(threading.enumerate())
    engine = Engine(settings_for(f"sqlite:///{tmp_path / 't.db'}", tmp_path))
    await engine.start()
    assert engine.recorder is not None
    database_threads = {
        t for t in set(threading.enumerate()) - before if "connection_worker" in t.name
    }
    assert database_threads  # the timeline's aiosqlite connection

    async def recorder_fails(grace_s: float = 5.0) -> None:
        raise OSError(2, "No such file or directory", "spool/calls.replaying.lock")

    engine.recorder.close = recorder_fails  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="ivr_engine.app"):
        await engine.stop()  # does not raise
    for _ in range(50):
        if not any(t.is_alive() for t in database_threads):
            break
        await asyncio.sleep(0.02)
    assert not any(t.is_alive() for t in database_threads)  # the timeline was closed
    assert any("stopping the call recorder failed" in r.getMessage() for r in caplog.records)

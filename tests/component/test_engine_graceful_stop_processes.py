"""SIGTERM to ``ivr-engine run``: no new calls, the calls in progress may finish for
``shutdown_grace_s``, and a call still running then is ended with ``IVR_OUTCOME=failed``
so the dialplan plays its static menu (``ivr-fail``), not dead air. Before, the grace was a
fixed 5 s and a call still running was cut off with nothing said to the channel. A real
engine process, a real SQLite timeline, FastAGI clients speaking for Asterisk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.component.engine_workers import HeldCall, engine_process

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux only"),
]

GRACE_S = 3.0
LONG_GRACE_S = 300.0  # the most there is: only a second signal ends it within the test


def recorded_outcome(sqlite_url: str, call_id: str) -> str | None:
    """The outcome the timeline holds for the call, None if it holds no such call."""
    path = sqlite_url.removeprefix("sqlite:///")
    pattern = f"voice:{call_id}~%:ivr"  # the call id, then the call's own nonce
    with contextlib.closing(sqlite3.connect(path)) as db:
        sql = "SELECT data FROM timeline_events WHERE event_id LIKE ?"
        row = db.execute(sql, (pattern,)).fetchone()
    return None if row is None else str(json.loads(row[0])["outcome"])


async def test_sigterm_lets_calls_finish_then_ends_the_rest_as_failed(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "engine.yaml"
    settings = {"database_url": sqlite_url, "shutdown_grace_s": GRACE_S}
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    args = ["--config", str(config), "run", "--agi-port", "0", "--http-port", "0"]
    async with engine_process(tmp_path, args) as engine:
        ready = await engine.wait_log(r"engine ready: FastAGI 127\.0\.0\.1:(\d+)")
        port = int(ready[0][1])
        finishing = await HeldCall.open(port, "+15550100001")
        stuck = await HeldCall.open(port, "+15550100002")  # its caller never answers
        engine.process.send_signal(signal.SIGTERM)
        await engine.wait_log(
            r"stopping: no new calls; 2 call\(s\) in progress may finish within 3\.0 s"
        )
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        started = asyncio.get_running_loop().time()
        assert (await finishing.finish("1"))["IVR_OUTCOME"] == "routed"  # within the grace
        async with asyncio.timeout(GRACE_S + 10):
            said = (await stuck.reader.read()).decode()
        waited = asyncio.get_running_loop().time() - started
        assert said == "SET VARIABLE IVR_OUTCOME failed\n"
        assert GRACE_S - 1.5 < waited < GRACE_S + 5  # the grace, from the log line seen
        assert await engine.exit_code() == 0
        assert "1 FastAGI connection(s) still in progress after the 3.0 s grace" in engine.log()


async def test_stop_log_counts_esl_calls_too(sqlite_url: str, tmp_path: Path) -> None:
    """The stop's "N call(s) in progress" line counts every call the grace applies to: the
    FreeSWITCH (ESL) ones as well as the FastAGI ones (it said 1 here before: FastAGI only)."""
    config = tmp_path / "engine.yaml"
    settings = {"database_url": sqlite_url, "shutdown_grace_s": 0.5, "esl_port": 0}
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    args = ["--config", str(config), "run", "--agi-port", "0", "--http-port", "0"]
    async with engine_process(tmp_path, args) as engine:
        esl_port = int((await engine.wait_log(r"outbound socket on 127\.0\.0\.1:(\d+)"))[0][1])
        ready = await engine.wait_log(r"engine ready: FastAGI 127\.0\.0\.1:(\d+)")
        agi_call = await HeldCall.open(int(ready[0][1]), "+15550100003")
        esl_reader, esl_writer = await asyncio.open_connection("127.0.0.1", esl_port)
        async with asyncio.timeout(10):  # the engine waits for the switch's answer
            assert await esl_reader.readuntil(b"\n\n") == b"connect\n\n"
        engine.process.send_signal(signal.SIGTERM)
        await engine.wait_log(r"stopping: no new calls; \d+ call\(s\) in progress")
        assert "stopping: no new calls; 2 call(s) in progress may finish within 0.5 s" in (
            engine.log()
        )
        assert await engine.exit_code() == 0
        for writer in (agi_call.writer, esl_writer):
            writer.close()


async def test_a_second_signal_ends_the_grace_at_once(sqlite_url: str, tmp_path: Path) -> None:
    """SIGTERM starts the grace; a SIGINT (Ctrl-C) then ends it at once: the call left is
    told failed and cancelled, still written to the timeline, and the engine exits. Before,
    the second signal was ignored: only SIGKILL cut a long grace short, losing the calls not
    yet written."""
    config = tmp_path / "engine.yaml"
    settings = {"database_url": sqlite_url, "shutdown_grace_s": LONG_GRACE_S}
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    args = ["--config", str(config), "run", "--agi-port", "0", "--http-port", "0"]
    async with engine_process(tmp_path, args) as engine:
        ready = await engine.wait_log(r"engine ready: FastAGI 127\.0\.0\.1:(\d+)")
        stuck = await HeldCall.open(int(ready[0][1]), "+15550100004")
        engine.process.send_signal(signal.SIGTERM)
        await engine.wait_log(r"stopping: no new calls; 1 call\(s\) in progress")
        engine.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):  # not the 300 s grace
            said = (await stuck.reader.read()).decode()
        assert said == "SET VARIABLE IVR_OUTCOME failed\n"
        assert await engine.exit_code() == 0
        assert "second signal (SIGINT): ending the grace now, 1 call(s) cut" in engine.log()
        assert recorded_outcome(sqlite_url, stuck.uniqueid) == "failed"  # written, not lost

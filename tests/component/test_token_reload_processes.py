"""``kill -HUP`` rotates the HTTP API's tokens of a running ``ivr-engine run``: one process,
and ``--workers 2`` (the supervisor re-reads the file; worker 0 serves the API, and a worker 0
restarted afterwards starts with the new tokens). Real processes, a real SQLite timeline."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.component.engine_workers import EngineProcess, engine_process

TOKEN_A = "token-a-" + "a" * 40
TOKEN_B = "token-b-" + "b" * 40
PREVIEW = "/v1/menu-preview?phone=%2B15550100001&menu=main"

# worker 0 (the API) put the supervisor's new settings in force
IN_WORKER_0 = r"\[worker 0 pid \d+\] [\w.]+: API tokens in force"

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux only"),
]


def write_config(path: Path, url: str, **tokens: object) -> None:
    path.write_text(yaml.safe_dump({"database_url": url, **tokens}), encoding="utf-8")


def run_args(config: Path, *extra: str) -> list[str]:
    return ["--config", str(config), "run", "--agi-port", "0", "--http-port", "0", *extra]


def http_port(engine: EngineProcess) -> int:
    """As logged: ``engine ready: FastAGI ..., HTTP 127.0.0.1:PORT`` (one process, before it
    writes the ready file), else the ready file (workers: written before they log)."""
    said = re.search(r"engine ready: FastAGI \S+, HTTP 127\.0\.0\.1:(\d+)", engine.log())
    return int(said[1]) if said else engine.http_port


async def status(engine: EngineProcess, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{http_port(engine)}") as http,
        http.get(PREVIEW, headers=headers) as response,
    ):
        return response.status


async def rotate_a_to_b(engine: EngineProcess, config: Path, url: str, applied: str) -> None:
    """A works; the file says B, SIGHUP: B works (once ``applied`` is logged), A gets 401;
    then the refused reloads."""
    assert (await status(engine, TOKEN_A), await status(engine, TOKEN_B)) == (200, 401)
    write_config(config, url, api_tokens=[TOKEN_B])
    engine.process.send_signal(signal.SIGHUP)
    await engine.wait_log(applied)
    assert (await status(engine, TOKEN_B), await status(engine, TOKEN_A)) == (200, 401)
    write_config(config, url, api_tokens=["too-short"])  # invalid: B stays
    engine.process.send_signal(signal.SIGHUP)
    await engine.wait_log(r"API tokens NOT reloaded")
    write_config(config, url)  # no token at all: refused, B stays
    engine.process.send_signal(signal.SIGHUP)
    await engine.wait_log(r"API tokens NOT reloaded", count=2)
    assert (await status(engine, TOKEN_B), await status(engine, None)) == (200, 401)
    refusals = [line for line in engine.lines if "API tokens NOT reloaded" in line]
    assert all(str(config) in line and "api_tokens" in line for line in refusals)
    assert "too-short" not in engine.log() and TOKEN_B not in engine.log()


async def test_sighup_rotates_the_tokens_of_one_engine_process(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "engine.yaml"
    write_config(config, sqlite_url, api_tokens=[TOKEN_A])
    async with engine_process(tmp_path, run_args(config)) as engine:
        await engine.wait_log(r"engine ready")
        await rotate_a_to_b(engine, config, sqlite_url, applied=r"API tokens reloaded")


async def test_sighup_rotates_the_tokens_of_the_workers_and_a_restarted_worker_keeps_them(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "engine.yaml"
    write_config(config, sqlite_url, api_tokens=[TOKEN_A])
    async with engine_process(tmp_path, run_args(config, "--workers", "2")) as engine:
        await engine.wait_log(r"engine ready: 2 workers")
        await rotate_a_to_b(engine, config, sqlite_url, applied=IN_WORKER_0)
        worker_0 = engine.worker_pids()["worker 0"]
        os.kill(worker_0, signal.SIGKILL)
        await engine.wait_log(r"worker 0 ready \(pid \d+\)", count=2)
        assert engine.worker_pids()["worker 0"] != worker_0
        assert (await status(engine, TOKEN_B), await status(engine, TOKEN_A)) == (200, 401)

"""A real worker process (``python -m ivr_engine.workers.child``, started as the supervisor
starts it) and its settings pipe (stdin), the test in the supervisor's place: lines that hold
no settings after a reload are skipped and the next one is put in force; the end of the pipe
(the supervisor's end closed) neither stops it serving calls nor makes it spin; a first line
that holds no settings is refused (``refused``, exit 2, through the supervisor's own
``start_worker``) without the line in the log. Real processes, a real SQLite timeline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from ivr_engine.settings import Settings
from ivr_engine.workers.child import EXIT_CONFIG, MAX_SETTINGS_LINE, NO_LINK, settings_json
from ivr_engine.workers.role import WorkerRole
from ivr_engine.workers.worker_process import (
    Worker,
    WorkerFailed,
    same_code_environment,
    start_worker,
)
from tests.component.engine_workers import (
    DEADLINE_S,
    REPO,
    STOP_DEADLINE_S,
    EngineProcess,
    HeldCall,
)

TOKEN_A = "token-a-" + "a" * 40
TOKEN_B = "token-b-" + "b" * 40
TOKEN_C = "token-c-" + "c" * 40
SECRET = "secret-" + "s" * 40  # in bad lines: must never reach the log
PREVIEW = "/v1/menu-preview?phone=%2B15550100001&menu=main"
SKIPPED = "settings line from the supervisor skipped, the tokens in force stay"
IDLE_WINDOW_S = 2.0
IDLE_CPU_S = 0.5  # a worker spinning on its closed stdin burns about IDLE_WINDOW_S

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
]


def worker_line(sqlite_url: str, tmp_path: Path, *tokens: str) -> bytes:
    settings = Settings(
        database_url=sqlite_url,
        agi_port=0,
        http_port=0,
        menus_dir=REPO / "config/menus",
        sounds_dir=REPO / "prompts/en",
        spool_dir=tmp_path / "spool",
        api_tokens=list(tokens),
    )
    return settings_json(settings).encode() + b"\n"


@contextlib.asynccontextmanager
async def worker_process(first_line: bytes) -> AsyncIterator[EngineProcess]:
    """Worker 0 of 1 with no load ledger, as ``spawn_worker`` starts it but with its log
    piped here; ``first_line`` written; on exit SIGTERM (SIGKILL after ``STOP_DEADLINE_S``)
    and reaped."""
    command = [sys.executable, "-P", "-m", "ivr_engine.workers.child", "0", "1"]
    process = await asyncio.create_subprocess_exec(
        *command, str(os.getpid()), NO_LINK,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=same_code_environment(),
    )  # fmt: skip
    worker = EngineProcess.reading(process, Path(os.devnull))
    try:
        assert process.stdin is not None
        process.stdin.write(first_line)
        await process.stdin.drain()
        yield worker
    finally:
        if process.returncode is None:
            process.terminate()
        with contextlib.suppress(TimeoutError):  # the test says whether it had to be killed
            async with asyncio.timeout(STOP_DEADLINE_S):
                await process.wait()
        if process.returncode is None:
            process.kill()
        await worker.exit_code()


async def ports(worker: EngineProcess) -> tuple[int, int]:
    """``ready AGI_PORT HTTP_PORT``, as the worker tells the supervisor."""
    assert worker.process.stdout is not None
    async with asyncio.timeout(DEADLINE_S):
        said = (await worker.process.stdout.readline()).decode().split()
    assert said[:1] == ["ready"], f"{said}:\n{worker.log()}"
    return int(said[1]), int(said[2])


async def statuses(http_port: int, *tokens: str) -> list[int]:
    found = []
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{http_port}") as http:
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(PREVIEW, headers=headers) as response:
                found.append(response.status)
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_a_worker_skips_bad_settings_lines_and_outlives_the_end_of_its_pipe(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    async with worker_process(worker_line(sqlite_url, tmp_path, TOKEN_A)) as worker:
        agi_port, http_port = await ports(worker)
        assert await statuses(http_port, TOKEN_A, TOKEN_B) == [200, 401]
        stdin = worker.process.stdin
        assert stdin is not None
        stdin.write(b"reload " + SECRET.encode() + b"\n")
        stdin.write(b'{"database_url": "sqlite:///x.db", "api_tokens": ["' + SECRET.encode())
        stdin.write(b' x"]}\n')  # a weak token, in two writes
        stdin.write(b" " * (MAX_SETTINGS_LINE + 1) + worker_line(sqlite_url, tmp_path, TOKEN_C))
        stdin.write(worker_line(sqlite_url, tmp_path, TOKEN_B))
        async with asyncio.timeout(DEADLINE_S):  # as the supervisor sends (a worker gone
            await stdin.drain()  # or not reading would leave drain waiting)
        await worker.wait_log(r"API tokens in force")
        assert await statuses(http_port, TOKEN_B, TOKEN_A, TOKEN_C) == [200, 401, 401]
        skipped = [line for line in worker.lines if SKIPPED in line]
        assert [("not JSON" in s, "api_tokens" in s, "longer than" in s) for s in skipped] == [
            (True, False, False),
            (False, True, False),
            (False, False, True),
        ]

        stdin.close()  # the supervisor's end: the worker reads the end of its stdin
        await worker.wait_log(r"settings pipe \(stdin\) is closed")
        before = cpu_seconds(worker.process.pid)
        await asyncio.sleep(IDLE_WINDOW_S)  # measured, not waited on: what it burns idle
        assert cpu_seconds(worker.process.pid) - before < IDLE_CPU_S
        assert worker.process.returncode is None
        assert await statuses(http_port, TOKEN_B, TOKEN_A) == [200, 401]
        call = await HeldCall.open(agi_port, new_phone())
        assert (await call.finish("1"))["IVR_OUTCOME"] == "routed"
        log = worker.log()
        assert SECRET not in log and TOKEN_A not in log and TOKEN_B not in log
    assert worker.process.returncode == 0  # SIGTERM: drained and exited


@pytest.mark.parametrize(
    ("first", "why"),
    [
        (b"settings " + SECRET.encode(), "not JSON"),
        (b'{"api_tokens": ["' + SECRET.encode() + b' x"]}', "not valid settings: api_tokens"),
    ],
    ids=["not JSON", "a weak token"],
)
async def test_a_first_line_without_settings_is_refused_and_not_logged(
    first: bytes, why: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Through the supervisor's own start (``start_worker``): the worker says ``refused``
    and exits 2, a configuration refused; its log says why, not what the line held."""
    worker = Worker(WorkerRole(0, 1))
    with pytest.raises(WorkerFailed, match="refused the configuration") as failed:
        await start_worker(worker, first.decode(), None, asyncio.Event())
    assert failed.value.returncode == EXIT_CONFIG
    assert worker.process is not None and worker.process.returncode == EXIT_CONFIG
    err = capfd.readouterr().err  # the worker's stderr is this process's
    assert "settings from the supervisor not read (worker 0)" in err and why in err, err
    assert SECRET not in err

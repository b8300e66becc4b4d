"""A worker's settings pipe from its supervisor (``child.follow_supervisor``): what the worker
does with each line that comes down it after a token reload, read for real from an OS pipe
(``os.pipe`` + the event loop's pipe transport, as the worker reads its stdin) into a real
``Engine``'s tokens.

A line that holds no settings (not JSON, not UTF-8, JSON but not valid settings, nested too
deeply for the parser, longer than ``MAX_SETTINGS_LINE``) is logged without its content and
skipped: the tokens in force stay and the next line is read. A line that comes in pieces is
one line. The end of the pipe ends the reading (logged), with no last piece applied."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import termios
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr_engine.app import Engine
from ivr_engine.settings import Settings
from ivr_engine.workers.child import MAX_SETTINGS_LINE, follow_supervisor, settings_json

TOKEN_A = "token-a-" + "a" * 40
TOKEN_B = "token-b-" + "b" * 40
TOKEN_C = "token-c-" + "c" * 40
SECRET = "secret-" + "s" * 40  # in bad lines: must never reach the log
DEADLINE_S = 10.0
SKIPPED = "settings line from the supervisor skipped, the tokens in force stay"
IN_FORCE = "API tokens in force"
CLOSED = "settings pipe (stdin) is closed"


class Said(logging.Handler):
    """What ``ivr_engine.workers.child`` logs, as it logs it; ``wait`` for a message."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._new = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self._new.set()

    def count(self, text: str) -> int:
        return sum(text in message for message in self.messages)

    async def wait(self, text: str, count: int = 1) -> None:
        async with asyncio.timeout(DEADLINE_S):
            while self.count(text) < count:
                self._new.clear()
                await self._new.wait()


@pytest.fixture
def said() -> Iterator[Said]:
    logger = logging.getLogger("ivr_engine.workers.child")
    handler, level = Said(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def settings(tmp_path: Path, *tokens: str) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path}/timeline.db", api_tokens=list(tokens))


def line(tmp_path: Path, *tokens: str) -> bytes:
    """A settings line as the supervisor sends it."""
    return settings_json(settings(tmp_path, *tokens)).encode() + b"\n"


@dataclass
class Worker:
    """The worker's end: an engine with TOKEN_A in force, following the read end of a pipe;
    the test writes to the other end as the supervisor does."""

    engine: Engine
    read_end: int
    write_end: int
    following: asyncio.Task[None]

    async def send(self, data: bytes) -> None:
        """All of ``data`` down the pipe (blocking writes, off the loop the worker reads on)."""

        def write_all() -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(self.write_end, view) :]

        await asyncio.to_thread(write_all)

    def hang_up(self) -> None:
        """The supervisor's end closed: the worker reads the end of the pipe."""
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    async def drained(self) -> None:
        """Until the worker has taken everything written out of the pipe."""
        async with asyncio.timeout(DEADLINE_S):
            while unread(self.read_end):  # noqa: ASYNC110 (a kernel counter, no event)
                await asyncio.sleep(0)
        for _ in range(3):  # and its reading task has had its turn with it
            await asyncio.sleep(0)

    def accepts(self, token: str) -> bool:
        return self.engine.tokens.api.match(token) == "api"


def unread(fd: int) -> int:
    """Bytes in the pipe not read yet (FIONREAD)."""
    packed = fcntl.ioctl(fd, termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", packed)[0])


@pytest.fixture
async def worker(tmp_path: Path, said: Said) -> AsyncIterator[Worker]:
    engine = Engine(settings(tmp_path, TOKEN_A))
    engine.use_tokens(engine.settings)  # as the engine's start does
    read_end, write_end = os.pipe()
    pipe = os.fdopen(read_end, "rb", buffering=0)  # closed by the worker's transport
    following = asyncio.create_task(follow_supervisor(engine, pipe))
    worker = Worker(engine, read_end, write_end, following)
    try:
        yield worker
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        worker.hang_up()
        pipe.close()
    assert all(TOKEN_A not in m and TOKEN_B not in m and SECRET not in m for m in said.messages)


BAD_LINES = {
    "not JSON": (b"reload " + SECRET.encode() + b"\n", "not JSON: Expecting value"),
    "not UTF-8": (b'{"api_tokens": ["\xff' + SECRET.encode() + b'"]}\n', "not UTF-8 text"),
    "JSON, not an object": (b'["' + SECRET.encode() + b'"]\n', "<top>: Input should be"),
    "a weak token": (
        b'{"database_url": "sqlite:///x.db", "api_tokens": ["' + SECRET.encode() + b' x"]}\n',
        "not valid settings: api_tokens: token 1 of 1: printable ASCII only",
    ),
    "a key that is no setting": (
        b'{"database_url": "sqlite:///x.db", "' + SECRET.encode() + b'": 1}\n',
        "not valid settings: a key that is no setting",
    ),
    "nested too deeply": (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
    "over the limit": (b'"' + b"x" * (2 * MAX_SETTINGS_LINE) + b'"\n', "longer than"),
}


@pytest.mark.parametrize("kind", BAD_LINES)
async def test_a_bad_line_is_logged_and_skipped_the_tokens_stay_and_the_next_line_is_read(
    worker: Worker, said: Said, tmp_path: Path, kind: str
) -> None:
    bad, why = BAD_LINES[kind]
    await worker.send(bad)
    await said.wait(SKIPPED)
    assert worker.accepts(TOKEN_A) and not worker.accepts(TOKEN_B)
    [error] = [m for m in said.messages if SKIPPED in m]
    assert why in error, error
    await worker.send(line(tmp_path, TOKEN_B))
    await said.wait(IN_FORCE)
    assert worker.accepts(TOKEN_B) and not worker.accepts(TOKEN_A)
    assert said.count(SKIPPED) == 1
    assert not worker.following.done()


@pytest.mark.parametrize("tail_later", [False, True], ids=["at once", "its tail later"])
async def test_a_line_over_the_limit_is_dropped_whole_even_if_its_end_would_be_settings(
    worker: Worker, said: Said, tmp_path: Path, tail_later: bool
) -> None:
    """Blanks over the limit, then settings (TOKEN_C) and the newline: the worker reads to
    the newline and drops it all, whether the end came with the rest or after the worker had
    read past the limit; TOKEN_C never comes in force, the next line (TOKEN_B) does."""
    blanks = b" " * (MAX_SETTINGS_LINE + 1)
    if tail_later:
        await worker.send(blanks)
        await worker.drained()
        assert said.messages == []
        blanks = b""
    await worker.send(blanks + line(tmp_path, TOKEN_C) + line(tmp_path, TOKEN_B))
    await said.wait(IN_FORCE)
    assert worker.accepts(TOKEN_B)
    assert not worker.accepts(TOKEN_C) and not worker.accepts(TOKEN_A)
    assert (said.count(SKIPPED), said.count(IN_FORCE)) == (1, 1)
    assert "longer than" in said.messages[0]


async def test_a_line_that_comes_in_pieces_is_one_line(
    worker: Worker, said: Said, tmp_path: Path
) -> None:
    whole = line(tmp_path, TOKEN_B)
    await worker.send(whole[:50])
    await worker.drained()
    assert said.messages == [] and worker.accepts(TOKEN_A)
    await worker.send(whole[50:-1])
    await worker.drained()
    assert said.messages == [] and worker.accepts(TOKEN_A)
    await worker.send(b"\n")
    await said.wait(IN_FORCE)
    assert worker.accepts(TOKEN_B) and not worker.accepts(TOKEN_A)
    assert said.count(SKIPPED) == 0


async def test_the_end_of_the_pipe_ends_the_reading_and_the_tokens_stay(
    worker: Worker, said: Said
) -> None:
    """The supervisor gone: the reading returns (it does not spin on the closed pipe) and
    says so; the tokens in force stay."""
    worker.hang_up()
    async with asyncio.timeout(DEADLINE_S):
        await worker.following
    assert said.count(CLOSED) == 1 and said.count(SKIPPED) == 0
    assert worker.accepts(TOKEN_A)


async def test_a_last_line_cut_short_by_the_end_of_the_pipe_is_not_applied(
    worker: Worker, said: Said, tmp_path: Path
) -> None:
    """Only a line with its newline is a line: the settings in a piece the pipe's end cut
    off (even whole JSON) do not come in force."""
    await worker.send(line(tmp_path, TOKEN_B)[:-1])
    worker.hang_up()
    async with asyncio.timeout(DEADLINE_S):
        await worker.following
    assert worker.accepts(TOKEN_A) and not worker.accepts(TOKEN_B)
    [error] = [m for m in said.messages if SKIPPED in m]
    assert "cut short by the end of the pipe" in error
    assert said.count(CLOSED) == 1

"""The engine's AMI connection cut while calls end (SIPp caller -> Asterisk 22 -> engine ->
agents' SIPp phones): at its next login the engine lists Asterisk's channels
(``CoreShowChannels``) and ends, in the load view and for the agents, the calls that are gone.

The engine reaches Asterisk's AMI through a TCP relay the test cuts: the engine's AMI
connection drops and its reconnects are refused (a network outage), while Asterisk and the
calls go on. Before the resync, the ringing call stayed in the load view (until
``stale_after_s``, 4 h), its agent ringing, and the answering agent on the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from ami import AmiClient
from conftest import Testbed
from engine_harness import REPO, engine_settings, running_engine
from sipp import run_sipp_call
from test_agent_routing_calls import (
    BILLING_SHORTCUT,
    agents,
    assert_ok,
    billing_caller,
    contact_center,
    make_available,
)

from ivr_engine.agents.model import AgentState
from ivr_engine.app import Engine

S = AgentState
ASTERISK_AMI = ("127.0.0.1", 5038)


class AmiRelay:
    """127.0.0.1:``port`` → Asterisk's AMI, byte for byte, until ``cut()``."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Drop every relayed connection (RST) and refuse new ones."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*ASTERISK_AMI)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(_pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def engine_behind(relay: AmiRelay, tmp_path: Path) -> AsyncIterator[Engine]:
    settings = engine_settings(f"sqlite:///{tmp_path / 'timeline.db'}", tmp_path / "spool")
    settings = settings.model_copy(
        update={
            "agents_file": REPO / "config/agents.yaml",
            "routing_file": REPO / "config/routing.yaml",
            "ami_url": f"ami://ivrtest:ivrtest@127.0.0.1:{relay.port}",
            "ring_timeout_s": 30.0,  # the unanswered agent rings until the caller hangs up
        }
    )
    async with running_engine(settings) as engine:
        ami = contact_center(engine).ami
        assert ami is not None
        await ami.wait_connected(10)
        yield engine


async def test_calls_ended_while_the_engines_ami_was_cut_are_ended_at_its_next_login(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    callers = ["+15551260001", "+15551260002"]
    relay = AmiRelay()
    await relay.open()
    try:
        async with engine_behind(relay, tmp_path) as engine, agents(a1="no_answer"):
            center = contact_center(engine)
            tracker, load = center.tracker, center.load
            assert tracker is not None and load is not None

            async def states() -> dict[str, AgentState]:
                return {a: (await center.agents.get(a)).state for a in ("a1", "a2")}

            async def one_rings_one_talks() -> bool:
                return await states() == {"a1": S.RINGING, "a2": S.ON_CALL}

            for caller in callers:
                await billing_caller(engine, caller)
            await make_available(engine, "a1", "a2")
            calls = [
                asyncio.create_task(
                    run_sipp_call(BILLING_SHORTCUT, caller_id=caller, hangup_after_ms=10_000)
                )
                for caller in callers
            ]
            await until(one_rings_one_talks, 20, "a1 ringing (no answer), a2 on the call")
            assert [call.agent_id for call in load.calls()] == ["a1"]  # answered: not waiting
            resyncs = tracker.resyncs

            await relay.cut()  # both callers hang up while the engine hears nothing
            results = await asyncio.gather(*calls)
            for result in results:
                assert_ok(result)
            for caller in callers:  # seen by the test's own AMI session, not by the engine
                await ami.wait_for_event("Hangup", CallerIDNum=caller)
            assert await one_rings_one_talks() and len(load.calls()) == 1

            await relay.open()  # the engine reconnects (back-off: up to ~16 s here)
            await until(lambda: _above(tracker.resyncs, resyncs), 40, "resync after the login")
            assert await states() == {"a1": S.AVAILABLE, "a2": S.WRAP_UP}
            assert load.calls() == ()
            assert tracker.resync_ended == 2
    finally:
        await relay.cut()


async def _above(value: int, floor: int) -> bool:
    return value > floor

"""AgiChannel + FastAgiServer + classic AGI against a fake Asterisk 22 over real sockets."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ivr_engine.domain.errors import CallerHungUp, ChannelError
from ivr_engine.telephony.agi import (
    AgiChannel,
    AgiProtocolError,
    AgiRequest,
    FastAgiServer,
    GetDataResult,
    InvalidCommand,
    UsageError,
    split_command_args,
)
from ivr_engine.telephony.agi.channel import MSET_MAX_PAIRS, mset_options, read_mset_options
from tests.component.fake_asterisk import (
    DEAD_CHANNEL,
    DROP,
    INVALID_COMMAND,
    USAGE_ERROR,
    FakeAsterisk,
    Transcript,
    asterisk_env,
    header_block,
    read_until_closed,
)
from tests.component.script_runs import classic_headers, start

ROOT = Path(__file__).resolve().parents[2]
FAILED = 'SET VARIABLE "IVR_OUTCOME" "failed"'
MakeServer = Callable[..., Awaitable[FastAgiServer]]
T = TypeVar("T")


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    servers: list[FastAgiServer] = []

    async def make(**options: Any) -> FastAgiServer:
        server = FastAgiServer(
            "127.0.0.1", 0, **({"header_timeout": 0.5, "command_timeout": 2.0} | options)
        )
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close(grace=0)


async def run_call(
    server: FastAgiServer,
    script: Callable[[AgiRequest, AgiChannel], Awaitable[Any]],
    replies: list[bytes | None],
) -> tuple[Transcript, list[Any]]:
    """Register ``script`` as ``ivr``, place one call; returns what Asterisk saw and got."""
    outcome: list[Any] = []
    finished = asyncio.Event()

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        try:
            outcome.append(await script(request, channel))
        except (CallerHungUp, ChannelError) as exc:
            outcome.append(exc)
        finally:
            outcome.append(channel)
            finished.set()

    server.register("ivr", handler)
    transcript = await FakeAsterisk("127.0.0.1", server.port).call(replies)
    await asyncio.wait_for(finished.wait(), 5)
    return transcript, outcome


# ---------------------------------------------------------------------------- normal flow


async def test_normal_call_flow(make_server: MakeServer) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        assert (request.script, dict(request.query)) == ("ivr", {"menu": "main"})
        assert request.caller_id == "+15551230001" and request.language == "en"
        assert request.channel is not None and request.channel.startswith("PJSIP/sipp-caller-")
        await channel.answer()
        results = [
            await channel.stream_file("welcome", "12"),
            await channel.get_data("menu/intro", 5000, 2),
            await channel.wait_for_digit(3000),
            await channel.get_variable("CALLERID(name)"),
            await channel.get_variable("UNSET_VAR"),
            await channel.exec_app("Playback", "beep"),
        ]
        await channel.verbose('say "hi"', 3)
        await channel.set_variable("IVR_OUTCOME", "routed")
        return results

    transcript, outcome = await run_call(
        server,
        script,
        [
            b"200 result=0\n",
            b"200 result=49 endpos=11360\n",
            b"200 result=42\n",
            b"200 result=0\n",
            b"200 result=1 (SIPp Caller)\n",
            b"200 result=0\n",
            b"200 result=0\n",
            b"200 result=1\n",
            b"200 result=1\n",
        ],
    )
    assert transcript.commands == [
        "ANSWER",
        'STREAM FILE "welcome" "12"',
        'GET DATA "menu/intro" 5000 2',
        "WAIT FOR DIGIT 3000",
        'GET VARIABLE "CALLERID(name)"',
        'GET VARIABLE "UNSET_VAR"',
        'EXEC "Playback" "beep"',
        'VERBOSE "say \\"hi\\"" 3',
        'SET VARIABLE "IVR_OUTCOME" "routed"',
    ]
    assert outcome[0] == ["1", GetDataResult("42", False), None, "SIPp Caller", None, "0"]
    assert transcript.server_closed and not transcript.dropped
    assert outcome[1].commands_sent == 9 and not outcome[1].hung_up


async def test_interim_100_trying_lines_are_skipped(make_server: MakeServer) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        return await channel.get_data("hello", 2000, 4)

    transcript, outcome = await run_call(
        server, script, [b"100 result=0 Trying...\n100 result=0 Trying...\n200 result=12\n"]
    )
    assert outcome[0] == GetDataResult("12", False)
    assert transcript.server_closed


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"200 result= (timeout)\n", GetDataResult("", True)),
        (b"200 result=12 (timeout)\n", GetDataResult("12", True)),
        (b"200 result=#\n", GetDataResult("#", False)),
    ],
)
async def test_get_data_replies(make_server: MakeServer, reply: bytes, expected: object) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        return await channel.get_data("a", 2000, 2)

    _, outcome = await run_call(server, script, [reply])
    assert outcome[0] == expected


# ---------------------------------------------------------------------------- read_digits


READ_OK = b"200 result=0\n"


@pytest.mark.parametrize(
    ("status_reply", "expected"),
    [
        (b"200 result=1 (2|OK)\n", GetDataResult("2", False)),
        (b"200 result=1 (|TIMEOUT)\n", GetDataResult("", True)),
        (b"200 result=1 (40012345|OK)\n", GetDataResult("40012345", False)),
        (b"200 result=1 (12|TIMEOUT)\n", GetDataResult("12", True)),
    ],
)
async def test_read_digits_plays_a_prompt_list_with_exec_read(
    make_server: MakeServer, status_reply: bytes, expected: GetDataResult
) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        return await channel.read_digits(["ivr-engine/welcome", "ivr-engine/opt-1"], 4500, 8)

    transcript, outcome = await run_call(server, script, [READ_OK, status_reply])
    assert outcome[0] == expected
    assert transcript.commands == [
        'EXEC "Read" "IVR_READ,ivr-engine/welcome&ivr-engine/opt-1,8,,1,4.5"',
        'GET FULL VARIABLE "${IVR_READ}|${READSTATUS}"',
    ]


@pytest.mark.parametrize(
    "replies",
    [
        [READ_OK, b"200 result=1 (|HANGUP)\n"],  # Read saw the hangup
        [READ_OK, b"HANGUP\n200 result=1 (|HANGUP)\n"],  # unsolicited HANGUP first
        [b"200 result=-1\n"],  # Read failed on a dead channel
    ],
)
async def test_read_digits_hangup(make_server: MakeServer, replies: list[bytes]) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        return await channel.read_digits(["a"], 1000, 1)

    _, outcome = await run_call(server, script, replies)
    assert isinstance(outcome[0], CallerHungUp) and outcome[1].hung_up


@pytest.mark.parametrize(
    "status_reply",
    [b"200 result=1 (1|WHAT)\n", b"200 result=1 (x1|OK)\n", b"200 result=0\n"],
)
async def test_read_digits_unexpected_outcome_is_a_protocol_error(
    make_server: MakeServer, status_reply: bytes
) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        return await channel.read_digits(["a"], 1000, 1)

    _, outcome = await run_call(server, script, [READ_OK, status_reply])
    assert isinstance(outcome[0], AgiProtocolError)


@pytest.mark.parametrize(
    ("prompts", "max_digits"),
    [([], 1), (["a,b"], 1), (["a&b"], 1), (["a b"], 1), (["a"], 0), (["a"], 256)],
)
async def test_read_digits_rejects_bad_arguments_before_sending(
    make_server: MakeServer, prompts: list[str], max_digits: int
) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        try:
            return await channel.read_digits(prompts, 1000, max_digits)
        except ValueError as exc:
            return exc

    transcript, outcome = await run_call(server, script, [])
    assert isinstance(outcome[0], ValueError)
    assert transcript.commands == []


# ---------------------------------------------------------------------------- refusals


async def test_multiline_520_is_consumed_and_the_next_command_stays_in_step(
    make_server: MakeServer,
) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        with pytest.raises(UsageError) as refused:
            await channel.send("GET DATA")
        return refused.value.usage, await channel.get_variable("NEXT")

    transcript, outcome = await run_call(server, script, [USAGE_ERROR, b"200 result=1 (second)\n"])
    usage, following = outcome[0]
    assert "Usage: GET DATA <file to be streamed>" in usage and "End of proper" not in usage
    assert following == "second"
    assert transcript.commands == ["GET DATA", 'GET VARIABLE "NEXT"']


async def test_510_invalid_command_then_next_command_works(make_server: MakeServer) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        with pytest.raises(InvalidCommand):
            await channel.send("FROB NICATE")
        return await channel.wait_for_digit(100)

    _, outcome = await run_call(server, script, [INVALID_COMMAND, b"200 result=35\n"])
    assert outcome[0] == "#"


# ---------------------------------------------------------------------------- hangups


@pytest.mark.parametrize(
    "reply",
    [b"HANGUP\n" + DEAD_CHANNEL, b"HANGUP\n200 result=-1\n", b"HANGUP\n200 result=1\n"],
)
async def test_hangup_line_mid_command(make_server: MakeServer, reply: bytes) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        await channel.answer()
        try:
            await channel.set_variable("X", "1")
        except CallerHungUp:
            assert channel.hung_up
            with pytest.raises(CallerHungUp):  # refused at once, nothing written
                await channel.get_data("x", 100, 1)
            raise
        return "no hangup noticed"

    transcript, outcome = await run_call(server, script, [b"200 result=0\n", reply])
    assert isinstance(outcome[0], CallerHungUp), outcome
    assert transcript.commands == ["ANSWER", 'SET VARIABLE "X" "1"']
    assert transcript.server_closed


async def test_hangup_line_between_commands_then_511(make_server: MakeServer) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        await channel.answer()
        await channel.stream_file("x")

    _, outcome = await run_call(server, script, [b"200 result=0\nHANGUP\n", DEAD_CHANNEL])
    assert isinstance(outcome[0], CallerHungUp) and outcome[1].hung_up


@pytest.mark.parametrize(
    "command",
    [
        lambda ch: ch.stream_file("x"),
        lambda ch: ch.get_data("x", 100, 1),
        lambda ch: ch.wait_for_digit(100),
        lambda ch: ch.answer(),
        lambda ch: ch.exec_app("Playback", "x"),
    ],
)
async def test_result_minus_one_is_a_hangup(make_server: MakeServer, command: Any) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        return await command(channel)

    _, outcome = await run_call(server, script, [b"200 result=-1 endpos=0\n"])
    assert isinstance(outcome[0], CallerHungUp)


async def test_eof_mid_command_is_a_hangup(make_server: MakeServer) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        await channel.answer()
        return await channel.get_data("x", 100, 1)

    transcript, outcome = await run_call(server, script, [b"200 result=0\n", DROP])
    assert isinstance(outcome[0], CallerHungUp)
    assert transcript.dropped


async def test_hangup_command_marks_the_channel(make_server: MakeServer) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        await channel.hangup()
        return channel.hung_up

    transcript, outcome = await run_call(server, script, [b"200 result=1\nHANGUP\n"])
    assert outcome[0] is True and transcript.commands == ["HANGUP"]


# ---------------------------------------------------------------------------- broken peers


async def test_oversized_reply_line_breaks_the_connection(make_server: MakeServer) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        with pytest.raises(AgiProtocolError):
            await channel.get_variable("BIG")
        await channel.answer()  # out of step now: refused without writing

    line = b"200 result=1 (" + b"x" * 9000 + b")\n"
    transcript, outcome = await run_call(server, script, [line, b"200 result=0\n"])
    assert isinstance(outcome[0], ChannelError) and not isinstance(outcome[0], CallerHungUp)
    assert transcript.commands == ['GET VARIABLE "BIG"']


async def test_command_timeout_breaks_the_connection(make_server: MakeServer) -> None:
    server = await make_server(command_timeout=0.2)

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        with pytest.raises(ChannelError, match="no AGI reply"):
            await channel.answer()
        await channel.set_variable("X", "1")

    transcript, outcome = await run_call(server, script, [b"", b"200 result=1\n"])
    assert isinstance(outcome[0], ChannelError)
    assert transcript.commands == ["ANSWER"] and transcript.server_closed


# ---------------------------------------------------------------------------- dispatch


async def test_unknown_script_gets_outcome_failed(make_server: MakeServer) -> None:
    server = await make_server()
    fake = FakeAsterisk("127.0.0.1", server.port)
    transcript = await fake.call(
        [b"200 result=1\n", b"200 result=1\n"], env=fake.env("nope?menu=main")
    )
    assert transcript.commands == [FAILED, "VERBOSE \"ivr-engine: no AGI script named 'nope'\" 1"]
    assert transcript.server_closed


async def test_handler_exception_gets_outcome_failed(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server()

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        await channel.answer()
        raise RuntimeError("bug in the flow")

    server.register("ivr", handler)
    with caplog.at_level(logging.ERROR):
        transcript = await FakeAsterisk("127.0.0.1", server.port).call([b"200 result=0\n"] * 2)
    assert transcript.commands == ["ANSWER", FAILED] and transcript.server_closed
    assert any(r.exc_info and "bug in the flow" in str(r.exc_info[1]) for r in caplog.records)


async def test_caller_hangup_in_handler_is_a_normal_end(make_server: MakeServer) -> None:
    server = await make_server()

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        await channel.answer()

    server.register("ivr", handler)
    transcript = await FakeAsterisk("127.0.0.1", server.port).call([DEAD_CHANNEL])
    assert transcript.commands == ["ANSWER"]  # no IVR_OUTCOME=failed for a hangup


async def test_a_finished_call_leaves_nothing_behind_in_the_server(
    make_server: MakeServer,
) -> None:
    """The channel kept for ``_abandon`` goes with its connection: a weak-keyed map whose
    value (the channel) holds its key (the writer) never let go, so every call ever served
    stayed in memory."""
    server = await make_server()
    seen: list[weakref.ref[AgiChannel]] = []

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        seen.append(weakref.ref(channel))
        await channel.answer()

    server.register("ivr", handler)
    for _ in range(3):
        await FakeAsterisk("127.0.0.1", server.port).call([b"200 result=0\n"])
    await server.close(grace=5)  # every connection served to its end
    gc.collect()
    assert len(seen) == 3 and [ref() for ref in seen] == [None, None, None]


async def test_query_string_and_args_reach_the_handler(make_server: MakeServer) -> None:
    server = await make_server()
    seen: list[AgiRequest] = []

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        seen.append(request)

    server.register("ivr", handler)
    fake = FakeAsterisk("127.0.0.1", server.port)
    env = fake.env("ivr?menu=billing&lang=en%2DGB", args=["menu=billing", "x y"])
    await fake.call([], env=env)
    assert dict(seen[0].query) == {"menu": "billing", "lang": "en-GB"}
    assert seen[0].args == ("menu=billing", "x y")


async def test_duplicate_registration_is_refused() -> None:
    server = FastAgiServer("127.0.0.1", 0)

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        return None

    server.register("ivr", handler)
    with pytest.raises(ValueError, match="already registered"):
        server.register("ivr", handler)
    with pytest.raises(ValueError):
        server.register("", handler)
    assert list(server.handlers) == ["ivr"]


# ---------------------------------------------------------------------------- lifecycle


async def test_close_cancels_in_flight_calls(make_server: MakeServer) -> None:
    server = await make_server()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server.register("ivr", handler)
    port = server.port
    call = asyncio.create_task(FakeAsterisk("127.0.0.1", port).call([b"200 result=1\n"]))
    await started.wait()
    assert server.active_calls == 1
    await server.close(grace=0)
    assert cancelled.is_set() and server.active_calls == 0
    transcript = await call  # told to fall back to the static menu, then closed
    assert transcript.commands == ["SET VARIABLE IVR_OUTCOME failed"]
    assert transcript.server_closed
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_close_lets_calls_finish_within_grace(make_server: MakeServer) -> None:
    server = await make_server()
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        started.set()
        await release.wait()
        await channel.set_variable("IVR_OUTCOME", "routed")
        finished.set()

    server.register("ivr", handler)
    call = asyncio.create_task(FakeAsterisk("127.0.0.1", server.port).call([b"200 result=1\n"]))
    await started.wait()
    closing = asyncio.create_task(server.close(grace=5))
    release.set()
    await closing
    assert finished.is_set()
    assert (await call).commands == ['SET VARIABLE "IVR_OUTCOME" "routed"']


async def test_many_concurrent_calls(make_server: MakeServer) -> None:
    server = await make_server()

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        result = await channel.get_data("x", 100, 4)
        await channel.set_variable("DIGITS", result.digits)

    server.register("ivr", handler)
    fake = FakeAsterisk("127.0.0.1", server.port)
    calls = [fake.call([f"200 result={i}\n".encode(), b"200 result=1\n"]) for i in range(100)]
    transcripts = await asyncio.gather(*calls)
    assert [t.commands[1] for t in transcripts] == [
        f'SET VARIABLE "DIGITS" "{i}"' for i in range(100)
    ]


# ---------------------------------------------------------------------------- hostile clients


async def echo_server(make_server: MakeServer, **options: Any) -> FastAgiServer:
    server = await make_server(**options)

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        await channel.set_variable("OK", request.caller_id or "")

    server.register("ivr", handler)
    return server


async def valid_call(server: FastAgiServer) -> Transcript:
    transcript = await FakeAsterisk("127.0.0.1", server.port).call([b"200 result=1\n"])
    assert transcript.commands == ['SET VARIABLE "OK" "+15551230001"'], transcript
    return transcript


class ServerThread:
    """The server on its own event-loop thread: if a bug stalled the server's loop, the test's
    client loop would still run its deadlines and fail the test instead of hanging it."""

    def __init__(self, server: FastAgiServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.run(self.server.start())
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def responsive(self) -> bool:
        """The server loop runs a no-op within 0.5 s (i.e. it is not stalled)."""
        future = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop)
        await asyncio.wait_for(asyncio.wrap_future(future), 0.5)
        return True

    def __exit__(self, *exc_info: object) -> None:
        self.run(self.server.close(grace=0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def threaded_echo_server(**options: Any) -> ServerThread:
    server = FastAgiServer("127.0.0.1", 0, **options)

    async def handler(request: AgiRequest, channel: AgiChannel) -> None:
        if not request.env.get("agi_channel"):
            await channel.answer()
        await channel.set_variable("OK", request.caller_id or "")

    server.register("ivr", handler)
    return ServerThread(server)


@pytest.mark.parametrize("cut", [0, 1, 40, 200])
async def test_client_closing_inside_headers_costs_nothing(cut: int) -> None:
    with threaded_echo_server(header_timeout=30, command_timeout=2) as thread:
        fake = FakeAsterisk("127.0.0.1", thread.server.port, deadline=2)
        partial = header_block(fake.env())[:cut]
        loop = asyncio.get_running_loop()
        started = loop.time()
        replies, _, responsive = await asyncio.gather(
            asyncio.gather(*(fake.exchange(partial) for _ in range(20))),
            valid_call(thread.server),
            thread.responsive(),
        )
        assert replies == [b""] * 20  # dropped silently, long before the 30 s header deadline
        assert responsive and loop.time() - started < 1.5
        assert await thread.responsive()


@pytest.mark.timeout(10)
async def test_header_deadline_frees_a_client_that_never_finishes(
    make_server: MakeServer,
) -> None:
    server = await echo_server(make_server, header_timeout=0.3)
    fake = FakeAsterisk("127.0.0.1", server.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await fake.hold(header_block(fake.env())[:-1])  # no blank line
    await valid_call(server)  # served while the stalled client waits
    assert await asyncio.wait_for(read_until_closed(reader), 3) == b""
    assert 0.29 < loop.time() - started < 2.0
    writer.close()


@pytest.mark.timeout(10)
async def test_header_deadline_is_total_not_per_line(make_server: MakeServer) -> None:
    server = await echo_server(make_server, header_timeout=0.3)
    reader, writer = await FakeAsterisk("127.0.0.1", server.port).hold(b"")
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def trickle() -> None:  # paces a slow client: one header line every 20 ms
        for i in range(500):
            writer.write(f"agi_x{i}: y\n".encode())
            await asyncio.sleep(0.02)

    trickling = asyncio.create_task(trickle())
    assert await asyncio.wait_for(read_until_closed(reader), 3) == b""
    assert loop.time() - started < 1.5
    trickling.cancel()
    writer.close()


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "data",
    [
        b"".join(f"agi_var_{i}: {'v' * 100}\n".encode() for i in range(200)),  # > 16 KiB
        b"agi_request: " + b"x" * 100_000,  # one endless line
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
        b"\n",
        b"agi_channel: x\n\n",  # complete but without agi_request
    ],
)
async def test_bad_headers_are_dropped_without_a_reply(
    make_server: MakeServer, data: bytes
) -> None:
    server = await echo_server(make_server, header_timeout=30)
    fake = FakeAsterisk("127.0.0.1", server.port)
    reader, writer = await fake.hold(data)  # not half-closed: the bound, not EOF, drops it
    assert await asyncio.wait_for(read_until_closed(reader), 3) == b""
    writer.close()
    await valid_call(server)


class _TaskFailures(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "connection task failed" in record.getMessage()


VALID = header_block(asterisk_env("127.0.0.1", 4573))
FRAGMENTS = [
    b"agi_channel: PJSIP/x\n",
    b"agi_network_script: ivr?menu=main\n",
    b"agi_request: agi://h/ivr\n",
    b"\n",
    b"\r\n",
    b"garbage",
    b"\x00\xff\xfe",
    b"HANGUP\n",
    b"520-Invalid\n",
    b"200 result=1\n",
    b"200 result=-1\n",
    b"agi_x:",
    b"a" * 9000,
    VALID,
]
HOSTILE = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map(b"".join),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
    st.binary(max_size=500).map(lambda tail: VALID + tail),
)


def test_fuzz_hostile_client_streams() -> None:
    """Whatever a client sends, the server ends the connection and serves the next call."""
    failures = _TaskFailures()
    logger = logging.getLogger("ivr_engine.telephony.agi")
    logger.addHandler(failures)
    try:
        with (
            threaded_echo_server(header_timeout=1, command_timeout=1) as thread,
            asyncio.Runner() as client,
        ):
            fake = FakeAsterisk("127.0.0.1", thread.server.port, deadline=3)
            examples: list[bytes] = []

            @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
            @given(data=HOSTILE)
            def feed(data: bytes) -> None:
                examples.append(data)
                client.run(fake.exchange(data))
                client.run(valid_call(thread.server))

            feed()
            assert len(examples) >= 80
    finally:
        logger.removeHandler(failures)
    assert failures.count == 0


# ---------------------------------------------------------------------------- classic AGI

STDIO_SCRIPT = """
import asyncio, logging, sys
from ivr_engine.telephony.agi import run_stdio_agi

async def handler(request, channel):
    print("stray print must not reach the AGI channel")
    logging.getLogger("t").warning("log line for stderr")
    await channel.answer()
    result = await channel.get_data("hello", 1000, 2)
    await channel.set_variable("ARGS", ",".join(request.args) + "/" + result.digits)
    if request.args and request.args[0] == "boom":
        raise RuntimeError("boom")

logging.basicConfig(stream=sys.stderr)
asyncio.run(run_stdio_agi(handler))
"""


async def run_stdio(stdin: bytes) -> tuple[bytes, bytes, int]:
    proc = await start([sys.executable, "-c", STDIO_SCRIPT], env={"PYTHONPATH": str(ROOT)})
    async with asyncio.timeout(15):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return out, err, proc.returncode


async def test_stdio_agi_runs_the_handler_over_stdin_stdout() -> None:
    replies = b"200 result=0\n200 result=12 (timeout)\n200 result=1\n"
    out, err, code = await run_stdio(header_block(classic_headers()) + replies)
    assert code == 0, err
    assert out == b'ANSWER\nGET DATA "hello" 1000 2\nSET VARIABLE "ARGS" "menu=main/12"\n'
    assert b"log line for stderr" in err and b"stray print" not in out + err


async def test_stdio_agi_failure_and_hangup() -> None:
    replies = b"200 result=0\n200 result=1\n200 result=1\n200 result=1\n"
    out, err, code = await run_stdio(header_block(classic_headers(args=["boom"])) + replies)
    assert code == 0, err
    assert out.splitlines()[-1].decode() == FAILED
    out, err, code = await run_stdio(header_block(classic_headers(args=[])) + b"200 result=-1\n")
    assert code == 0, err
    assert out == b"ANSWER\n"


async def test_stdio_agi_sighup_marks_the_call_hung_up() -> None:
    proc = await start([sys.executable, "-c", STDIO_SCRIPT], env={"PYTHONPATH": str(ROOT)})
    assert proc.stdin is not None and proc.stdout is not None
    async with asyncio.timeout(15):
        proc.stdin.write(header_block(classic_headers(args=[])))
        assert await proc.stdout.readline() == b"ANSWER\n"  # handler installed, command sent
        proc.send_signal(signal.SIGHUP)  # Asterisk's classic-AGI hangup notice
        _, err = await proc.communicate(b"200 result=0\n")
    assert proc.returncode == 0, err  # SIGHUP marked the call hung up instead of killing it


async def test_set_variables_sends_every_value_in_the_one_mset_with_the_outcome(
    make_server: MakeServer,
) -> None:
    """An agent's endpoint (``/``), the tried list (``,``), quotes, ``|``: all in the ONE
    ``MSet`` that carries the outcome, so a dialplan never sees the endpoint without it (was:
    each such value in its own ``SET VARIABLE`` first, the outcome after)."""
    server = await make_server()
    values = {
        "IVR_AGENT_ENDPOINT": "PJSIP/agent-1",
        "IVR_TRIED_AGENTS": "a1,a2",
        "IVR_CASE_ID": "say \"hi\" (1, [2]) \\ | 'x' = ${X}",
        "IVR_AGENT_ID": "",
        "IVR_OUTCOME": "routed",
    }

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        await channel.set_variables(values)

    transcript, outcome = await run_call(server, script, [b"200 result=0\n"])
    assert outcome[0] is None
    (command,) = transcript.commands
    assert command.startswith(
        'EXEC "MSet" "IVR_AGENT_ENDPOINT=PJSIP/agent-1,IVR_TRIED_AGENTS=a1\\\\,a2,'
    )
    assert read_mset_options(split_command_args(command)[2]) == values


async def test_set_variables_one_value_is_one_set_variable(make_server: MakeServer) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        await channel.set_variables({"C": "a, b"})

    transcript, _ = await run_call(server, script, [b"200 result=1\n"])
    assert transcript.commands == ['SET VARIABLE "C" "a, b"']


@given(
    st.dictionaries(
        st.text("ABZ_az09", min_size=1, max_size=8).filter(lambda s: not s[0].isdigit()),
        st.text(st.characters(blacklist_characters="\r\n\x00")),
        max_size=MSET_MAX_PAIRS,
    )
)
@example({f"V{n}": ")" for n in range(MSET_MAX_PAIRS)})  # the 24th would stay "\\)"
def test_mset_options_read_back_as_the_values(values: dict[str, str]) -> None:
    """Whatever a value holds, MSet (as Asterisk parses it) sets exactly it."""
    assert read_mset_options(mset_options(values)) == values


def test_mset_options_refuses_a_pair_asterisk_would_read_unescaped() -> None:
    """Asterisk's MSet parses at most 24 arguments, the 24th being the rest of the string as
    it is (escapes kept): 23 pairs is the most one MSet carries exactly."""
    with pytest.raises(ValueError, match="at most 23"):
        mset_options({f"V{n}": "x" for n in range(24)})


async def test_set_variables_beyond_one_mset_sends_them_in_order(make_server: MakeServer) -> None:
    server = await make_server()
    values = {f"V{n}": f"a,{n}" for n in range(30)}

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        await channel.set_variables(values)

    transcript, _ = await run_call(server, script, [b"200 result=0\n"] * 2)
    first, second = (read_mset_options(split_command_args(c)[2]) for c in transcript.commands)
    assert list(first) == [f"V{n}" for n in range(23)]
    assert {**first, **second} == values

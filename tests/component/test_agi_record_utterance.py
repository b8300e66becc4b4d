"""``AgiChannel.record_utterance`` (``RECORD FILE``) against a fake Asterisk 22 over real
sockets: each reply res_agi.c's ``handle_recordfile`` sends, and what the flow gets."""

from __future__ import annotations

from typing import Any

import pytest

from ivr_engine.domain.errors import CallerHungUp, RecordingFailed
from ivr_engine.telephony.agi import AgiChannel, AgiProtocolError, AgiRequest
from tests.component.fake_asterisk import DEAD_CHANNEL
from tests.component.test_agi_channel_server import MakeServer, make_server, run_call

__all__ = ["make_server"]  # the fixture, used by name

RECORD = 'RECORD FILE "/var/spool/asterisk/ivr-speech/x1" "wav" "0123456789*" 5000 "s=2"'


async def record(make_server: MakeServer, replies: list[bytes | None]) -> tuple[list[str], Any]:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        return await channel.record_utterance("/var/spool/asterisk/ivr-speech/x1", 5000, 2)

    transcript, outcome = await run_call(server, script, replies)
    return transcript.commands, outcome


@pytest.mark.parametrize(
    "reply",
    [
        b"200 result=0 (timeout) endpos=12800\n",  # silence ended it (or listen_ms)
        b"200 result=0 (timeout) endpos=0\n",  # nothing said at all
    ],
)
async def test_silence_or_time_ends_the_recording_with_no_key(
    make_server: MakeServer, reply: bytes
) -> None:
    commands, outcome = await record(make_server, [reply])
    assert commands == [RECORD]
    assert outcome[0] is None


async def test_a_key_pressed_while_recorded_is_returned(make_server: MakeServer) -> None:
    _, outcome = await record(make_server, [b"200 result=54 (dtmf) endpos=4000\n"])
    assert outcome[0] == "6"


async def test_a_hangup_while_recorded_is_the_callers_hangup(make_server: MakeServer) -> None:
    _, outcome = await record(make_server, [b"200 result=-1 (hangup) endpos=8000\n"])
    assert isinstance(outcome[0], CallerHungUp) and outcome[1].hung_up


async def test_a_file_asterisk_cannot_write_is_a_failed_recording_not_a_hangup(
    make_server: MakeServer,
) -> None:
    _, outcome = await record(make_server, [b"200 result=-1 (writefile)\n"])
    assert isinstance(outcome[0], RecordingFailed) and not outcome[1].hung_up


async def test_a_random_error_checks_the_channel_then_is_a_failed_recording(
    make_server: MakeServer,
) -> None:
    commands, outcome = await record(
        make_server, [b"200 result=-1 (randomerror) endpos=0\n", b"200 result=6\n"]
    )
    assert commands == [RECORD, "CHANNEL STATUS"]
    assert isinstance(outcome[0], RecordingFailed) and not outcome[1].hung_up


async def test_a_random_error_on_a_dead_channel_is_a_hangup(make_server: MakeServer) -> None:
    _, outcome = await record(
        make_server, [b"200 result=-1 (randomerror) endpos=0\n", DEAD_CHANNEL]
    )
    assert isinstance(outcome[0], CallerHungUp)


async def test_an_unknown_reply_is_a_protocol_error(make_server: MakeServer) -> None:
    _, outcome = await record(make_server, [b"200 result=0 (what) endpos=1\n"])
    assert isinstance(outcome[0], AgiProtocolError)


@pytest.mark.parametrize(
    ("path", "max_ms", "silence_s"),
    [("relative/x", 5000, 2), ("/a b", 5000, 2), ("/a\nHANGUP", 5000, 2), ("/x", 0, 2)],
)
async def test_bad_arguments_are_refused_before_anything_is_sent(
    make_server: MakeServer, path: str, max_ms: int, silence_s: int
) -> None:
    server = await make_server()

    async def script(request: AgiRequest, channel: AgiChannel) -> Any:
        with pytest.raises(ValueError):
            await channel.record_utterance(path, max_ms, silence_s)
        return channel.commands_sent

    _, outcome = await run_call(server, script, [])
    assert outcome[0] == 0

"""The Event Socket wire format: pure parsing and framing, including hostile input."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Coroutine
from typing import Any, cast
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_engine.telephony.esl import (
    EslConnection,
    EslDisconnected,
    EslLimits,
    EslProtocolError,
    body_length,
    decode_channel_data,
    decode_event_json,
    decode_event_plain,
    encode_command,
    parse_header_block,
    read_arg,
)
from ivr_engine.telephony.esl.protocol import EslFrame, check_frame, execute_headers


def test_header_block_and_content_length() -> None:
    headers = parse_header_block(b"Content-Type: api/response\nContent-Length: 7\n\n")
    assert headers == {"Content-Type": "api/response", "Content-Length": "7"}
    assert body_length(headers) == 7
    assert body_length({"Content-Type": "command/reply"}) == 0
    assert parse_header_block(b"Reply-Text:+OK\r\n\r\n") == {"Reply-Text": "+OK"}


@pytest.mark.parametrize(
    "raw",
    [b"\n\n", b"no colon here\n\n", b": empty name\n\n", b"Bad Name: x\n\n", b"A" * 70_000],
)
def test_malformed_header_blocks_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(EslProtocolError):
        parse_header_block(raw)


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "12x", "99999999999", "", "2097152"])
def test_bad_or_huge_content_length_is_refused_before_reading(value: str) -> None:
    with pytest.raises(EslProtocolError):
        body_length({"Content-Length": value}, limit=1024 * 1024)


def test_a_frame_needs_a_content_type() -> None:
    with pytest.raises(EslProtocolError, match="without Content-Type"):
        check_frame({"Content-Length": "5"})


def test_event_plain_is_url_decoded_and_carries_its_own_body() -> None:
    body = (
        b"Event-Name: CUSTOM\nEvent-Subclass: ivr_engine%3A%3Arouted\n"
        b"Channel-Name: sofia/internal/1000%40192.0.2.2\nCaller-Caller-ID-Name: Ada%20L.\n"
        b"Content-Length: 11\n\nhello world"
    )
    event = decode_event_plain(body)
    assert event.name == "CUSTOM" and event.subclass == "ivr_engine::routed"
    assert event.get("Channel-Name") == "sofia/internal/1000@192.0.2.2"
    assert event.get("Caller-Caller-ID-Name") == "Ada L."
    assert event.body == "hello world"


def test_broken_url_encoding_is_kept_literal_never_an_error() -> None:
    event = decode_event_plain(b"Event-Name: X\nA: 100%\nB: %zz%4\nC: %C3%28\n\n")
    assert (event.get("A"), event.get("B")) == ("100%", "%zz%4")
    assert event.get("C") == "\ufffd("  # invalid UTF-8 becomes U+FFFD


@pytest.mark.parametrize(
    "body",
    [
        b"Event-Name: X\nContent-Length: 50\n\nshort",  # truncated inner body
        b"Unique-ID: 1\n\n",  # no Event-Name
        b"Event-Name: X\nContent-Length: nope\n\n",
        b"garbage without colon\n\n",
    ],
)
def test_bad_event_plain_bodies(body: bytes) -> None:
    with pytest.raises(EslProtocolError):
        decode_event_plain(body)


def test_event_json() -> None:
    doc = {"Event-Name": "DTMF", "DTMF-Digit": "5", "_body": "b", "Multi": ["a", "b"]}
    event = decode_event_json(json.dumps(doc).encode())
    assert (event.name, event.get("DTMF-Digit"), event.body) == ("DTMF", "5", "b")
    assert event.get("Multi") == '["a", "b"]'
    for bad in (b"{", b"[1]", b'{"Event-Name": 3}', b"\xff"):
        with pytest.raises(EslProtocolError):
            decode_event_json(bad)


def test_connect_reply_is_url_encoded_channel_data() -> None:
    headers = {
        "Content-Type": "command/reply",
        "Reply-Text": "%2BOK%0A",
        "Unique-ID": "d0b1da34-a727-11e4-9728-6f83a2e5e50a",
        "Caller-Caller-ID-Number": "%2B15551230001",
        "Channel-Name": "sofia/external/100%40192.168.50.4",
        "variable_IVR_MENU": "main",
    }
    data = decode_channel_data(EslFrame(headers))
    assert data.caller_id == "+15551230001"
    assert data.channel_name == "sofia/external/100@192.168.50.4"
    assert data.variable("IVR_MENU") == "main"
    with pytest.raises(EslProtocolError, match="refused"):
        decode_channel_data(EslFrame({**headers, "Reply-Text": "-ERR no"}))
    with pytest.raises(EslProtocolError, match="Unique-ID"):
        decode_channel_data(EslFrame({"Content-Type": "command/reply", "Reply-Text": "+OK"}))


def test_commands_are_one_block_and_refuse_injection() -> None:
    headers = execute_headers("set", "IVR_OUTCOME=routed", "u-1")
    assert encode_command("sendmsg", headers) == (
        b"sendmsg\ncall-command: execute\nexecute-app-name: set\n"
        b"execute-app-arg: IVR_OUTCOME=routed\nevent-lock: true\nEvent-UUID: u-1\n\n"
    )
    for line, extra in (("api status\n\nexit", []), ("sendmsg", [("a", "b\nexit")])):
        with pytest.raises(ValueError):
            encode_command(line, extra)


def test_read_arg_plays_a_prompt_list() -> None:
    arg = read_arg(["ivr-engine/welcome", "digits/1"], 5000, 1, ".wav")
    assert arg == "1 1 file_string://ivr-engine/welcome.wav!digits/1.wav IVR_READ 5000 #"
    for prompts in ([], ["a b"], ["a!b"]):
        with pytest.raises(ValueError):
            read_arg(prompts, 5000, 1, ".wav")


# ---------------------------------------------------------------------------- properties

header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,30}", fullmatch=True)


@given(st.dictionaries(header_names, st.text(max_size=60), max_size=12))
def test_url_encoded_events_round_trip(values: dict[str, str]) -> None:
    headers = {"Event-Name": "CUSTOM", **{k: v for k, v in values.items() if k != "Event-Name"}}
    headers.pop("Content-Length", None)
    body = "".join(f"{k}: {quote(v, safe='')}\n" for k, v in headers.items()) + "\n"
    assert dict(decode_event_plain(body.encode()).headers) == headers


@given(st.binary(max_size=400))
def test_any_bytes_raise_only_protocol_errors(data: bytes) -> None:
    for parse in (parse_header_block, decode_event_plain, decode_event_json):
        with contextlib.suppress(EslProtocolError):
            parse(data)


async def _frames(data: bytes, limits: EslLimits) -> int:
    reader = asyncio.StreamReader(limit=limits.stream_limit)
    reader.feed_data(data)
    reader.feed_eof()
    conn = EslConnection(reader, cast(asyncio.StreamWriter, None), limits)
    count = 0
    while True:
        try:
            await conn.read_frame()
        except (EslProtocolError, EslDisconnected):
            return count
        count += 1


frame_parts = st.sampled_from(
    [
        b"Content-Type: command/reply\nReply-Text: +OK\n\n",
        b"Content-Type: api/response\nContent-Length: 3\n\nabc",
        b"Content-Length: 15\nContent-Type: text/event-plain\n\nEvent-Name: X\n\n",
        b"Content-Length: 999999999\n",
        b"\n\n",
        b"Content-Type",
        b": x\n",
        b"\xff\xfe",
    ]
)


@settings(deadline=None, max_examples=200)
@given(st.lists(frame_parts | st.binary(max_size=40), max_size=8))
def test_hostile_streams_end_with_a_typed_error(parts: list[bytes]) -> None:
    limits = EslLimits(max_header_bytes=256, max_body_bytes=64)
    count = asyncio.run(asyncio.wait_for(_frames(b"".join(parts), limits), 5))
    assert count <= len(parts)


def test_truncated_body_and_oversized_header_block() -> None:
    limits = EslLimits(max_header_bytes=64, max_body_bytes=1024)
    truncated = b"Content-Type: api/response\nContent-Length: 10\n\nabc"
    assert asyncio.run(_frames(truncated, limits)) == 0
    assert asyncio.run(_frames(b"X-Long: " + b"a" * 200 + b"\n\n", limits)) == 0


class _Writer:
    """A writer that only records: the replies come from the reader fed by the test."""

    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        return None


def _api(body: bytes) -> bytes:
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body


async def _replies_after_an_undecodable_event() -> list[str]:
    bad_body = b"Event-Name: CHANNEL_CREATE\nContent-Length: 99\n\nabc"  # its own body: short
    bad = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(bad_body) + bad_body
    reader = asyncio.StreamReader()
    reader.feed_data(bad + _api(b"status reply") + _api(b"version reply"))
    conn = EslConnection(reader, cast(asyncio.StreamWriter, _Writer()))
    outcomes = []
    for command in ("status", "version"):
        try:
            outcomes.append(await conn.api(command))
        except EslProtocolError as exc:
            outcomes.append(f"EslProtocolError: {exc}")
    return outcomes


def test_an_undecodable_event_before_a_reply_never_shifts_the_replies() -> None:
    """The event is well framed, so the frame read succeeded; the command's reply is still
    unread: the next command must not take it as its own."""
    status, version = asyncio.run(_replies_after_an_undecodable_event())
    assert status.startswith("EslProtocolError: event body truncated")
    assert version.startswith("EslProtocolError: ESL stream out of step")


def test_max_header_bytes_above_the_default_is_honoured() -> None:
    """The outbound ``connect`` reply carries every channel variable: a site with bigger
    channel dumps raises ``EslLimits.max_header_bytes``, and the parser must follow it."""
    big = b"Content-Type: command/reply\nX-Vars: " + b"a" * 80_000 + b"\n\n"
    assert asyncio.run(_frames(big, EslLimits(max_header_bytes=128 * 1024))) == 1
    assert asyncio.run(_frames(big, EslLimits())) == 0  # the 64 KiB default still refuses it
    with pytest.raises(EslProtocolError, match="larger than 100 bytes"):
        parse_header_block(b"X-A: " + b"a" * 100 + b"\n\n", 100)


async def _cancelled(conn: EslConnection, waiting: Coroutine[Any, Any, object]) -> None:
    """Run ``waiting`` until it blocks on the stream, then cancel it."""
    task = asyncio.create_task(waiting)
    for _ in range(5):
        await asyncio.sleep(0)  # a few loop turns: it is waiting on the reader now
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _after_a_cancel(head: bytes, command: bool) -> str:
    """Cancel a wait for an event (``command``: for a reply) once ``head`` has come, then
    send one command whose reply follows: what it gets."""
    reader = asyncio.StreamReader()
    reader.feed_data(head)
    conn = EslConnection(reader, cast(asyncio.StreamWriter, _Writer()))
    await _cancelled(conn, conn.api("status") if command else conn.next_event())
    reader.feed_data(_api(b"version reply"))
    try:
        return await conn.api("version")
    except EslProtocolError as exc:
        return f"EslProtocolError: {exc}"


def test_a_cancel_before_a_frame_began_leaves_the_stream_in_step() -> None:
    """A call cut by the stop while it waits for an event (a ``read`` playing) can still
    tell the channel it failed: nothing of a frame was taken. The stream used to be marked
    out of step at any cancel."""
    assert asyncio.run(_after_a_cancel(b"", command=False)) == "version reply"


@pytest.mark.parametrize(
    ("head", "command"),
    [
        (b"Content-Type: api/response\nContent-Length: 10\n\nabc", False),  # inside a body
        (b"", True),  # a command's reply still owed
    ],
)
def test_a_cancel_inside_a_frame_or_before_a_reply_leaves_it_out_of_step(
    head: bytes, command: bool
) -> None:
    assert asyncio.run(_after_a_cancel(head, command)).startswith(
        "EslProtocolError: ESL stream out of step"
    )

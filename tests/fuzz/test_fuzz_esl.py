"""Targeted property tests: ESL parsers with structured hostile input. The module
promises ``EslProtocolError`` only, "never ValueError/UnicodeError from hostile bytes"."""

from __future__ import annotations

import contextlib
import json

from hypothesis import example, given
from hypothesis import strategies as st

from ivr_engine.telephony.esl.errors import EslProtocolError
from ivr_engine.telephony.esl.protocol import (
    ContentType,
    EslFrame,
    body_length,
    decode_channel_data,
    decode_event,
    decode_event_json,
    decode_event_plain,
    parse_header_block,
    parse_header_lines,
)

_json_atoms = st.sampled_from(
    [b"[", b"]", b"{", b"}", b'"Event-Name"', b":", b",", b'"X"', b"1e999", b"NaN", b"-0",
     b"9" * 30, b'"\\ud800"', b"\xff", b"null", b"true", b'"_body"', b" "]
)  # fmt: skip


@given(st.lists(_json_atoms, max_size=40).map(b"".join), st.integers(0, 3000))
@example(b"", 1000)
def test_event_json_raises_only_protocol_errors(tail: bytes, depth: int) -> None:
    body = b'{"Event-Name":"X","a":' + b"[" * depth + tail
    with contextlib.suppress(EslProtocolError):
        event = decode_event_json(body)
        assert event.name == "X"
        for key, value in event.headers.items():
            assert isinstance(key, str) and isinstance(value, str)


@given(st.integers(1, 5000), st.sampled_from([b"[", b"{", b'{"a":']))
def test_deeply_nested_event_json_is_a_protocol_error(depth: int, opener: bytes) -> None:
    """The event-json body comes off the socket: any depth is refused or read, never
    ``RecursionError``."""
    with contextlib.suppress(EslProtocolError):
        decode_event_json(opener * depth)


_head_text = st.text(alphabet="Event-Name:Content-Length %0a1\r\n\t\x00\xe9\ud800", max_size=60)


@given(_head_text, st.binary(max_size=30))
def test_event_plain_raises_only_protocol_errors(head: str, rest: bytes) -> None:
    body = head.encode("utf-8", "surrogatepass") + b"\n\n" + rest
    with contextlib.suppress(EslProtocolError):
        event = decode_event_plain(body)
        assert event.name
        assert len(event.body) <= body_length(event.headers)  # a character per byte at most


@given(st.text(max_size=30))
def test_body_length_is_total(raw: str) -> None:
    with contextlib.suppress(EslProtocolError):
        length = body_length({"Content-Length": raw})
        assert length >= 0


@given(st.dictionaries(st.sampled_from(["Reply-Text", "Unique-ID", "Content-Type", "X"]),
                       st.text(alphabet="+OK%zZ0a \xe9", max_size=12)))  # fmt: skip
def test_channel_data_raises_only_protocol_errors(headers: dict[str, str]) -> None:
    frame = EslFrame({**headers, "Content-Type": ContentType.COMMAND_REPLY})
    with contextlib.suppress(EslProtocolError):
        data = decode_channel_data(frame)
        assert data.unique_id


@given(st.binary(max_size=200), st.sampled_from(list(ContentType)))
def test_decode_event_any_frame(body: bytes, content_type: ContentType) -> None:
    with contextlib.suppress(EslProtocolError):
        decode_event(EslFrame({"Content-Type": content_type}, body))


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
        min_size=1,
        max_size=6,
    )
)
def test_event_json_round_trips_strings(headers: dict[str, str]) -> None:
    doc = {"Event-Name": "X", **headers}
    event = decode_event_json(json.dumps(doc).encode())
    assert dict(event.headers) == {k: v for k, v in doc.items() if k != "_body"} or "_body" in doc


@given(st.binary(max_size=300))
def test_header_block_and_lines_raise_only_protocol_errors(raw: bytes) -> None:
    with contextlib.suppress(EslProtocolError):
        parse_header_block(raw)
    with contextlib.suppress(EslProtocolError):
        parse_header_lines(raw.decode("utf-8", "replace"), url_decoded=True)

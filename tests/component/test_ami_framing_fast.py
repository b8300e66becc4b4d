"""The framer's fast path (whole messages in Asterisk's own form) gives exactly what the
line-at-a-time reference gives, for any mix of forms, any bytes and any way they arrive."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_engine.telephony.ami.errors import AmiProtocolError
from ivr_engine.telephony.ami.framing import AmiFramer
from tests.component.test_ami_protocol import _line_by_line

Framed = list[list[tuple[str, str]]]


def _framed(data: bytes, cuts: list[int], max_line: int = 64 * 1024) -> Framed:
    framer = AmiFramer(max_line_bytes=max_line, max_message_bytes=4 * 1024 * 1024)
    framed: Framed = []
    start = 0
    for cut in sorted({c for c in cuts if c < len(data)}):
        framed += framer.feed(data[start:cut])
        start = cut
    return framed + framer.feed(data[start:])


def _outcome(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except AmiProtocolError:
        return AmiProtocolError


_key = st.sampled_from(["Event", "Uniqueid", "Cause-txt", "X", "Key Name", "a:b", "", " K"])
_value = st.sampled_from(["", "1", "a: b", " two", "Jos\u00e9", "x\ry", "v\r", "\u00ff"])
_sep = st.sampled_from([": ", ":", ":  ", " : "])
_end = st.sampled_from(["\r\n", "\n", "\r\r\n"])
_line = st.one_of(
    st.just(""),
    st.tuples(_key, _sep, _value, _end).map("".join),
    st.just("\r\n"),
    st.just("\n"),
)
_raw = st.sampled_from([b"\xff", b"\xc3", b"\xc3\xa9", b"\r", b"\n", b"\r\n\r\n", b": ", b"K"])


@settings(max_examples=400)
@given(
    st.lists(
        st.one_of(
            st.lists(_line, max_size=6).map(lambda ls: "".join(ls) + "\r\n").map(str.encode),
            st.lists(_raw, max_size=8).map(b"".join),
        ),
        max_size=12,
    ),
    st.lists(st.integers(0, 300), max_size=6),
)
def test_any_stream_any_cuts_same_as_line_at_a_time(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    assert _outcome(lambda: _framed(data, cuts)) == _outcome(lambda: _line_by_line(data))


@given(st.lists(st.integers(0, 2000), max_size=4))
def test_asterisk_shaped_events_are_framed_whole(cuts: list[int]) -> None:
    event = (
        "Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/trunk-00000001\r\n"
        "CallerIDName: Jos\u00e9\r\nAccountCode: \r\nUniqueid: 1700000000.1\r\n\r\n"
    ).encode()
    data = event * 5
    assert _framed(data, cuts) == _line_by_line(data)
    assert len(_framed(data, cuts)) == 5


def test_a_long_line_in_a_whole_message_is_still_refused() -> None:
    data = b"Event: A\r\nX: " + b"y" * 300 + b"\r\n\r\n"
    assert _outcome(lambda: _framed(data, [], max_line=200)) is AmiProtocolError
    assert _framed(data, [], max_line=400) == [[("Event", "A"), ("X", "y" * 300)]]


def test_a_cr_and_an_lf_apart_inside_a_value_are_not_a_crlf() -> None:
    # Found by the property test above: without the key and value characters the CR of
    # "x\ry" and the LF after "y" stand side by side and looked like one CRLF, so the fast
    # path took the block as plain and failed with a ValueError instead of framing it.
    data = b"Event: x\ry\nEvent: \r\n\r\n"
    assert _framed(data, []) == _line_by_line(data) == [[("Event", "x\ry"), ("Event", "")]]
    assert _framed(data, [9, 14]) == _line_by_line(data)

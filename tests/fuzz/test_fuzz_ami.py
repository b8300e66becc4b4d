"""Targeted property tests: AMI framing under SMALL limits.

The existing framing properties run with 64 KiB lines and 4 MiB messages, so the limit
checks of the fast path (whole messages in one chunk) and of the line-at-a-time path are
never compared. Here the same stream is fed whole, in random pieces and one byte at a time
(which never takes the fast path), with limits near the messages' sizes: the outcome must
not depend on how the bytes arrive."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from ivr_engine.telephony.ami.errors import AmiProtocolError
from ivr_engine.telephony.ami.framing import AmiFramer
from ivr_engine.telephony.ami.messages import AmiEvent
from ivr_engine.telephony.ami.parsing import build_message, build_plain

Framed = list[list[tuple[str, str]]]


def _feed(data: bytes, cuts: list[int], max_line: int, max_message: int) -> object:
    framer = AmiFramer(max_line_bytes=max_line, max_message_bytes=max_message)
    framed: Framed = []
    start = 0
    try:
        for cut in sorted({c for c in cuts if 0 < c < len(data)}):
            framed += framer.feed(data[start:cut])
            start = cut
        framed += framer.feed(data[start:])
    except AmiProtocolError:
        return AmiProtocolError
    return framed


_key = st.sampled_from(["Event", "X", "Key-Name", "a", "Uniqueid"])
_value = st.sampled_from(["", "1", "ab", "abcdef", "x" * 13, "Jos\u00e9", "a b"])
_line = st.tuples(_key, st.sampled_from([": ", ":"]), _value, st.sampled_from(["\r\n", "\n"]))
_message = st.lists(_line.map("".join), min_size=1, max_size=4).map(
    lambda ls: ("".join(ls) + "\r\n").encode()
)
_stream = st.lists(st.one_of(_message, _message, st.just(b"\r\n")), min_size=1, max_size=4).map(
    b"".join
)


def _near(data: bytes, offset: int, lines: bool) -> int:
    """A limit ``offset`` bytes from the stream's longest line or longest message: where an
    off-by-one in either path shows."""
    pieces = data.split(b"\n") if lines else data.replace(b"\r\n", b"\n").split(b"\n\n")
    return max(2, max(len(p) for p in pieces) + offset)


@given(
    _stream,
    st.integers(-4, 6),
    st.integers(-4, 8),
    st.booleans(),
    st.lists(st.integers(0, 200)),
)
@example(b"A: 1\r\n\r\n", 2, 3, False, [])  # max_message 7: whole 1 message, bytewise error
def test_limits_do_not_depend_on_how_the_bytes_arrive(
    data: bytes, line_offset: int, message_offset: int, swap: bool, cuts: list[int]
) -> None:
    max_line = _near(data, line_offset, lines=True)
    max_message = _near(data, message_offset, lines=False)
    if swap:  # also the case where the line limit is the smaller one
        max_line, max_message = max_message, max_line
    whole = _feed(data, [], max_line, max_message)
    bytewise = _feed(data, list(range(len(data))), max_line, max_message)
    pieces = _feed(data, cuts, max_line, max_message)
    assert whole == bytewise == pieces, (max_line, max_message)


@given(st.text(alphabet="EvntRspoAcID:\r\n \t", max_size=40))
def test_build_plain_agrees_with_build_message(text: str) -> None:
    """``build_plain`` on any text the framer would hand it (it only takes ``plain_text``
    output) classifies like ``build_message`` on the same headers."""
    from ivr_engine.telephony.ami.framing import plain_text

    plain = plain_text(text.encode())
    if plain is None:
        return
    from ivr_engine.telephony.ami.messages import plain_headers

    headers = list(plain_headers(plain))
    expected = build_message(headers)
    got = build_plain(plain)
    assert type(got) is type(expected)
    if isinstance(got, AmiEvent):
        assert got == expected and got.name == expected.name  # type: ignore[union-attr]

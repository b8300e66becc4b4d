"""Plain messages (kept as their text, looked up by searching it) answer exactly like
messages built from the line-at-a-time reference's headers: same headers, equality, hash,
repr, and the same answer to every lookup, for any bytes and any key."""

from __future__ import annotations

import copy
import pickle

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ivr_engine.telephony.ami.errors import AmiProtocolError
from ivr_engine.telephony.ami.framing import AmiFramer, plain_text
from ivr_engine.telephony.ami.messages import AmiEvent, AmiMessage, AmiResponse
from ivr_engine.telephony.ami.parsing import build_message, build_plain
from tests.component.test_ami_fake_peer import encode
from tests.component.test_ami_protocol import _line_by_line as reference_headers
from tests.component.test_call_bridge_fakes import Switch

Built = AmiResponse | AmiEvent | None


def _reference(data: bytes) -> list[Built]:
    return [build_message(headers) for headers in reference_headers(data)]


def _framed(data: bytes, cuts: list[int]) -> list[Built]:
    framer = AmiFramer(max_line_bytes=64 * 1024, max_message_bytes=4 * 1024 * 1024)
    raws: list[str | list[tuple[str, str]]] = []
    start = 0
    for cut in sorted({c for c in cuts if c < len(data)}):
        raws += framer.feed_raw(data[start:cut])
        start = cut
    raws += framer.feed_raw(data[start:])
    return [build_plain(r) if isinstance(r, str) else build_message(r) for r in raws]


_LOOKUPS = [
    "Event", "event", "EVENT", "Response", "ActionID", "Uniqueid", "uniqueid", "Cause-txt",
    "Key Name", "K", "k", "\u212a", "\u0130", "\u0131", "X", "x", "", " Event", "Event ",
    "a:b", "a", "b", "Jos\u00e9", "Event:", "x\r\ny", "\n", "Output", "EventList",
]  # fmt: skip


def _answers(message: AmiMessage | None) -> object:
    if message is None:
        return None
    lookups = _LOOKUPS + [k for k, _ in message.headers] + [k.upper() for k, _ in message]
    answers: list[object] = [
        type(message),
        message.headers,
        hash(message),
        repr(message),
        message.to_dict(),
        message.action_id,
        message.name if isinstance(message, AmiEvent) else message.response,
    ]
    for key in lookups:
        answers += [message.get(key), message.get(key, "-"), message.get_all(key), key in message]
    return answers


def _outcome(data: bytes, cuts: list[int]) -> object:
    try:
        return [_answers(m) for m in _framed(data, cuts)]
    except AmiProtocolError:
        return AmiProtocolError


def _expected(data: bytes) -> object:
    try:
        return [_answers(m) for m in _reference(data)]
    except AmiProtocolError:
        return AmiProtocolError


_key = st.sampled_from(
    ["Event", "Response", "ActionID", "Uniqueid", "X", "K\u212a", "\u0130d", "Key Name", "a:b",
     "", " K", "K ", "K\t", "\x1cK", "K\x1f", "\x85K", "K\u00a0", "Output", "event", "x"]
)  # fmt: skip
_value = st.sampled_from(
    ["", "1", "a: b", "a:b", " two", "two ", "Jos\u00e9", "x\ry", "v\r", "\u00ff", "Newchannel",
     "Success", "\x00", ":", "z:", " "]
)  # fmt: skip
_sep = st.sampled_from([": ", ": ", ":", ":  ", " : ", ":\t"])
_end = st.sampled_from(["\r\n", "\r\n", "\r\n", "\n", "\r\r\n"])
_line = st.tuples(_key, _sep, _value, _end).map("".join)
_message = st.lists(_line, min_size=1, max_size=6).map(lambda ls: ("".join(ls) + "\r\n").encode())
# mostly the plain form, with at most one odd line: where the two paths must meet
_good_key = st.sampled_from(["Event", "Response", "ActionID", "X", "Key-Name", "x", "EventList"])
_plain_key = st.one_of(_good_key, _good_key, _key)
_plain_value = st.one_of(st.sampled_from(["", "1", "two ", " two", "Success", "a b"]), _value)
_plain_line = st.tuples(_plain_key, st.just(": "), _plain_value, st.just("\r\n")).map("".join)


def _with_odd_line(lines: list[str], odd: str, at: int) -> bytes:
    """``lines`` with ``odd`` put in at ``at`` (not at all when ``at`` >= 3)."""
    if at < 3:
        lines = [*lines[:at], odd, *lines[at:]]
    return ("".join(lines) + "\r\n").encode()


_plainish = st.builds(
    _with_odd_line, st.lists(_plain_line, min_size=1, max_size=5), _line, st.integers(0, 6)
)
_raw = st.sampled_from([b"\xff", b"\xc3\xa9", b"\r", b"\n", b"\r\n\r\n", b": ", b"K", b"\r\n"])


@settings(max_examples=600)
@given(
    st.lists(
        st.one_of(_plainish, _plainish, _message, st.lists(_raw, max_size=6).map(b"".join)),
        max_size=8,
    ),
    st.lists(st.integers(0, 400), max_size=4),
)
@example([b"Event:two \r\n\r\n"], [])  # a colon not followed by its blank: not plain
@example([b"Event: a\r\nKey:b c\r\n\r\n"], [])
def test_plain_messages_answer_like_the_reference(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    assert _outcome(data, cuts) == _expected(data)


def test_asterisk_events_of_a_call_are_plain_but_for_a_colon_in_a_value() -> None:
    switch = Switch()
    switch.agent_call("+15554000001", talk_s=20, hold_s=2)
    events = switch.take()
    plain = [plain_text(encode(pairs)[:-4]) is not None for pairs in events]
    colon = [any(":" in v for _, v in pairs) for pairs in events]
    assert plain == [not c for c in colon] and sum(plain) == 14
    data = b"".join(encode(pairs) for pairs in events)
    assert _outcome(data, []) == _expected(data)
    assert [m.headers for m in _framed(data, []) if m] == [tuple(p) for p in events]


def test_plain_text_refuses_what_is_not_plain() -> None:
    for block in [
        b"Event: A\r\nX: a:b",  # a second colon
        b"Event: A\r\nX:b",  # no space after the colon
        b"Event: A\r\n X: b",  # a key starting with a blank
        b"Event: A\r\nX\x1f: b",  # a key ending with a blank
        b"Event: A\r\n: b",  # an empty key
        b"Event: A\nX: b",  # a bare LF
        b"Event: A\r\nX: b\r",  # a bare CR
        b"Event: Jos\xc3\xa9",  # not ASCII
        b"Event: A\r\nKey Name: b",  # a blank inside a key: plain enough, but not taken
        b"",
    ]:
        assert plain_text(block) is None, block
    assert plain_text(b"Event: A\r\nKey: a  b \r\nX: ") == "Event: A\r\nKey: a  b \r\nX: "


def test_messages_are_immutable_and_compare_by_class_and_headers() -> None:
    text = "Event: Hangup\r\nUniqueid: 1.1"
    plain = build_plain(text)
    built = AmiEvent((("Event", "Hangup"), ("Uniqueid", "1.1")))
    assert plain == built and hash(plain) == hash(built) and repr(plain) == repr(built)
    assert plain != AmiResponse(built.headers) and plain != built.headers
    for message in (plain, built):
        try:
            message.x = 1  # type: ignore[union-attr]
        except AttributeError:
            pass
        else:
            raise AssertionError("a message took a new attribute")


def test_messages_copy_and_pickle_like_messages_built_from_headers() -> None:
    plain = build_plain("Event: Hangup\r\nUniqueid: 1.1")
    assert plain is not None
    for copied in (copy.copy(plain), copy.deepcopy(plain), pickle.loads(pickle.dumps(plain))):
        assert type(copied) is AmiEvent and copied == plain and copied.name == "Hangup"

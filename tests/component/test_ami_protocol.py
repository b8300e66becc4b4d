"""The AMI wire format (pure functions), bounded framing of received bytes, and back-off."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_engine.telephony.ami import (
    AmiConnectionLost,
    AmiEvent,
    AmiLimits,
    AmiProtocolError,
    AmiResponse,
    Backoff,
    InvalidAction,
    format_action,
    parse_message,
)
from ivr_engine.telephony.ami.actions import MAX_ACTION_HEADERS
from ivr_engine.telephony.ami.backoff import make_backoff
from ivr_engine.telephony.ami.framing import AmiFramer
from ivr_engine.telephony.ami.parsing import (
    build_message,
    decode_line,
    parse_banner,
    parse_header_line,
)

# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Channel: PJSIP/a-1", ("Channel", "PJSIP/a-1")),
        ("Channel:PJSIP/a-1", ("Channel", "PJSIP/a-1")),
        ("Output:   indented", ("Output", "  indented")),  # only Asterisk's one space goes
        ("Message: a: b: c", ("Message", "a: b: c")),
        ("AccountCode: ", ("AccountCode", "")),
        ("Trailing: x  ", ("Trailing", "x  ")),
    ],
)
def test_parse_header_line(line: str, expected: tuple[str, str]) -> None:
    assert parse_header_line(line) == expected


@pytest.mark.parametrize("line", ["no colon here", ": value without key", "   : x", "\x00\ufffd"])
def test_parse_header_line_rejects_non_ami(line: str) -> None:
    with pytest.raises(AmiProtocolError, match="not 'Key: Value'"):
        parse_header_line(line)


def test_banner() -> None:
    assert parse_banner("Asterisk Call Manager/11.0.0") == "11.0.0"
    for bad in (
        "SSH-2.0-OpenSSH_9.2",
        "",
        "asterisk call manager/1.0",
        "Asterisk Call Manager/" + "9" * 300,
    ):
        with pytest.raises(AmiProtocolError, match="banner"):
            parse_banner(bad)


def test_decode_line_keeps_going_on_non_utf8() -> None:
    assert decode_line(b"CallerIDName: Jos\xe9\r\n") == "CallerIDName: Jos\ufffd"
    assert decode_line(b"Key: caf\xc3\xa9\n") == "Key: café"


def test_messages_are_classified_by_their_first_header() -> None:
    response = parse_message(["Response: Success", "ActionID: 3", "Ping: Pong"])
    assert isinstance(response, AmiResponse) and response.ok and response.action_id == "3"
    event = parse_message(["Event: Hangup", "Channel: PJSIP/a"])
    assert isinstance(event, AmiEvent) and event.name == "Hangup"
    assert parse_message(["Channel: PJSIP/a", "Event: Hangup"]) is None
    assert build_message([]) is None
    error = parse_message(["Response: Error", "Message: Authentication failed"])
    assert isinstance(error, AmiResponse) and not error.ok and error.message.startswith("Auth")
    goodbye = parse_message(["Response: Goodbye", "Message: Thanks for all the fish."])
    assert isinstance(goodbye, AmiResponse) and goodbye.ok


def test_repeated_and_case_insensitive_headers() -> None:
    message = parse_message(
        ["Response: Success", "Message: Command output follows", "Output: a", "output: b"]
    )
    assert message is not None
    assert message.get_all("OUTPUT") == ("a", "b")
    assert message.get("output") == "a" and message["Output"] == "a"
    assert "message" in message and "Missing" not in message and 3 not in message
    assert message.get("Missing") is None and message.get("Missing", "x") == "x"
    assert message.get_all("Missing") == ()
    with pytest.raises(KeyError):
        message["Missing"]
    assert message.to_dict() == {
        "Response": "Success",
        "Message": "Command output follows",
        "Output": ["a", "b"],
    }
    assert list(message)[2] == ("Output", "a")


def test_list_markers() -> None:
    start = parse_message(["Response: Success", "EventList: start"])
    done = parse_message(["Event: QueueStatusComplete", "EventList: Complete"])
    assert isinstance(start, AmiResponse) and start.starts_list
    assert isinstance(done, AmiEvent) and done.ends_list


# --- formatting ---------------------------------------------------------------------------


def test_format_action_bytes() -> None:
    data = format_action(
        "Originate",
        "ivr-7",
        {"Channel": "PJSIP/a", "Priority": 1, "Async": True, "Variable": ["A=1", "B=2"]},
    )
    assert data == (
        b"Action: Originate\r\nActionID: ivr-7\r\nChannel: PJSIP/a\r\nPriority: 1\r\n"
        b"Async: true\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    )
    assert format_action("Ping", "1", {}) == b"Action: Ping\r\nActionID: 1\r\n\r\n"


@pytest.mark.parametrize(
    ("name", "headers", "match"),
    [
        ("Originate", {"Channel": "a\r\nAction: Command"}, "CR, LF and NUL"),
        ("Originate", {"Channel": "a\nb"}, "CR, LF and NUL"),
        ("Originate", {"Channel": "a\rb"}, "CR, LF and NUL"),
        ("Originate", {"Channel": "a\0b"}, "CR, LF and NUL"),
        ("Originate", {"Variable": ["A=1", "B=2\r\nAction: Logoff"]}, "CR, LF and NUL"),
        ("Originate", {"Bad Key": "x"}, "header name"),
        ("Originate", {"Key:": "x"}, "header name"),
        ("Ping", {"actionid": "x"}, "set by the client"),
        ("Ping", {"Action": "Logoff"}, "set by the client"),
        ("Ping\r\nAction: Logoff", {}, "action name"),
        ("Originate", {"Data": "x" * 1100}, "drops lines over 1024"),
        ("Originate", {"Variable": [f"V{n}=1" for n in range(MAX_ACTION_HEADERS)]}, "at most 128"),
        ("Originate", {"Variable": [1, 2]}, "list of str, not list"),
        ("Originate", {"Timeout": 1.5}, "not float"),
        ("Originate", {"Data": b"bytes"}, "not bytes"),
    ],
)
def test_format_action_refuses_what_cannot_be_sent_safely(
    name: str, headers: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidAction, match=match):
        format_action(name, "1", headers)  # type: ignore[arg-type]


_keys = (
    st.tuples(
        st.sampled_from(string.ascii_letters),
        st.text(string.ascii_letters + string.digits + "_-", max_size=20),
    )
    .map("".join)
    .filter(lambda k: k.lower() not in ("action", "actionid"))
)
_values = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0"), max_size=60
)


@given(st.dictionaries(_keys, _values, max_size=12))
def test_format_then_parse_round_trips(headers: dict[str, str]) -> None:
    data = format_action("UserEvent", "ivr-1", headers)
    lines = [decode_line(line) for line in data.split(b"\r\n")[:-2]]
    message = parse_message(lines)
    assert message is None  # an action is neither a response nor an event...
    pairs = [parse_header_line(line) for line in lines]
    assert pairs == [("Action", "UserEvent"), ("ActionID", "ivr-1"), *headers.items()]


@given(_values, st.sampled_from(["\r", "\n", "\0"]), _values)
def test_no_value_can_inject_a_line(before: str, bad: str, after: str) -> None:
    with pytest.raises(InvalidAction):
        format_action("UserEvent", "1", {"Body": before + bad + after})


@given(st.binary(max_size=200))
def test_parsing_arbitrary_bytes_raises_only_protocol_errors(raw: bytes) -> None:
    for line in raw.split(b"\n"):
        text = decode_line(line)
        try:
            key, value = parse_header_line(text)
        except AmiProtocolError:
            assert ":" not in text or not text.partition(":")[0].strip()
        else:
            assert key and "\n" not in key + value


# --- bounded framing of received bytes ---------------------------------------------------


def _framer(limits: AmiLimits = AmiLimits()) -> AmiFramer:  # noqa: B008 - frozen, shared
    return AmiFramer(
        max_line_bytes=limits.max_line_bytes, max_message_bytes=limits.max_message_bytes
    )


def test_framing_skips_blank_lines_and_accepts_bare_lf() -> None:
    framer = _framer()
    data = b"\r\n\r\nEvent: A\r\nX: 1\r\n\r\nEvent: B\nY: 2\n\n"
    assert framer.feed(data) == [[("Event", "A"), ("X", "1")], [("Event", "B"), ("Y", "2")]]
    assert "by the peer" in str(framer.eof_error())


def test_framing_eof_inside_a_message() -> None:
    for data in (b"Event: A\r\nX: 1\r\n", b"Event: A\r\nX: partial"):
        framer = _framer()
        assert framer.feed(data) == []
        error = framer.eof_error()
        assert isinstance(error, AmiConnectionLost)
        assert "middle of a message" in str(error)


def test_framing_keeps_a_character_split_across_reads() -> None:
    framer = _framer()
    data = "Event: A\r\nCallerIDName: Jos\u00e9\r\n\r\n".encode()
    cut = data.index(b"\xc3") + 1
    assert framer.feed(data[:cut]) == []
    assert framer.feed(data[cut:]) == [[("Event", "A"), ("CallerIDName", "Jos\u00e9")]]


def test_legacy_follows_command_output_is_refused_as_asterisk_13() -> None:
    """Asterisk <= 13 answers ``Command`` with raw output lines; 14+ sends ``Output:``."""
    legacy = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\n"
        b"Asterisk 13.38.3 built by root @ host on a x86_64 running Linux\r\n"
        b"--END COMMAND--\r\n\r\n"
    )
    for chunk in (legacy, legacy.replace(b"\r\n", b"\n")):
        with pytest.raises(AmiProtocolError, match=r"Asterisk >= 14"):
            AmiFramer(max_line_bytes=1024, max_message_bytes=4096).feed(chunk)
    assert not AmiResponse([("Response", "Follows")]).ok  # not an answer the client reads
    with pytest.raises(AmiProtocolError, match="not 'Key: Value'"):  # other lines: as before
        AmiFramer(max_line_bytes=1024, max_message_bytes=4096).feed(b"Response: Success\nx\n")


def test_framing_limits() -> None:
    limits = AmiLimits(max_line_bytes=1024)
    with pytest.raises(AmiProtocolError, match="longer than 1024"):
        _framer(limits).feed(b"Event: A\r\nX: " + b"y" * 5000 + b"\r\n\r\n")
    unfinished = _framer(limits)  # a line that never ends is refused before it grows further
    unfinished.feed(b"Event: A\r\nX: " + b"y" * 600)
    with pytest.raises(AmiProtocolError, match="longer than 1024"):
        unfinished.feed(b"y" * 600)
    big = b"Event: A\r\n" + b"X: 123456789\r\n" * 100 + b"\r\n"
    with pytest.raises(AmiProtocolError, match="larger than 500"):
        _framer(AmiLimits(max_message_bytes=500)).feed(big)
    with pytest.raises(AmiProtocolError, match="not 'Key: Value'"):
        _framer().feed(b"Event: A\r\n\xff\xfe\x00garbage\r\n\r\n")


def _line_by_line(data: bytes) -> list[list[tuple[str, str]]]:
    """The reference framing: one line at a time, as a line reader would."""
    messages, headers = [], []
    for raw in data.split(b"\n")[:-1]:
        line = decode_line(raw)
        if line:
            headers.append(parse_header_line(line))
        elif headers:
            messages.append(headers)
            headers = []
    return messages


_stream_lines = st.lists(
    st.one_of(
        st.just(""),
        st.tuples(_keys, _values).map(lambda kv: f"{kv[0]}: {kv[1]}"),
    ),
    max_size=40,
)


@given(_stream_lines, st.sampled_from(["\r\n", "\n"]), st.lists(st.integers(0, 400)))
def test_framing_does_not_depend_on_how_the_bytes_arrive(
    lines: list[str], ending: str, cuts: list[int]
) -> None:
    data = "".join(line + ending for line in lines).encode()
    framer = _framer()
    framed: list[list[tuple[str, str]]] = []
    start = 0
    for cut in sorted(c for c in cuts if c < len(data)):
        framed += framer.feed(data[start:cut])
        start = cut
    framed += framer.feed(data[start:])
    assert framed == _line_by_line(data)


@given(st.lists(st.text(st.characters(exclude_characters="\n"), max_size=30), max_size=12))
def test_framing_parses_odd_lines_like_the_line_parser(lines: list[str]) -> None:
    """Keys with spaces or tabs around them, empty keys, no colon: same answer or same error."""
    data = "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogatepass")
    try:
        expected: object = _line_by_line(data)
    except AmiProtocolError:
        expected = AmiProtocolError
    try:
        got: object = _framer().feed(data)
    except AmiProtocolError:
        got = AmiProtocolError
    assert got == expected


# --- back-off -----------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_then_resets() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    assert backoff.cap_delay() == 30.0
    assert backoff.next_delay() == 30.0  # after a refused login, stays at the cap
    assert Backoff(jitter=0.0).delay_for(10_000) == 30.0  # no overflow


def test_backoff_jitter_only_shortens_within_bounds() -> None:
    low = Backoff(base_s=1.0, cap_s=8.0, jitter=0.25, rand=lambda: 1.0)
    high = Backoff(base_s=1.0, cap_s=8.0, jitter=0.25, rand=lambda: 0.0)
    assert [low.next_delay() for _ in range(5)] == [0.75, 1.5, 3.0, 6.0, 6.0]
    assert [high.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    default = Backoff()
    assert all(0.4 <= default.delay_for(0) <= 0.5 for _ in range(200))


def test_backoff_validation() -> None:
    with pytest.raises(ValueError, match="base <= cap"):
        Backoff(base_s=5, cap_s=1)
    with pytest.raises(ValueError, match="base <= cap"):
        Backoff(base_s=0, cap_s=1)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)
    assert make_backoff((0.1, 2.0)).cap_s == 2.0

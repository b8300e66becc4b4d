"""The AGI wire format: header lines, requests, replies, status codes, argument quoting."""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ivr_engine.domain.errors import CallerHungUp, ChannelError
from ivr_engine.telephony.agi.protocol import (
    MAX_LINE_CHARS,
    AgiHeaderError,
    AgiProtocolError,
    AgiReply,
    InvalidCommand,
    UsageError,
    check_command,
    format_command,
    multiline_code,
    parse_header_line,
    parse_reply,
    parse_request,
    quote_arg,
    reply_error,
    split_command_args,
)

ASTERISK_22 = {
    "agi_network": "yes",
    "agi_network_script": "ivr?menu=main",
    "agi_request": "agi://127.0.0.1:4573/ivr?menu=main",
    "agi_channel": "PJSIP/sipp-caller-00000001",
    "agi_language": "en",
    "agi_type": "PJSIP",
    "agi_uniqueid": "1732440000.1",
    "agi_version": "22.1.0",
    "agi_callerid": "+15551230001",
    "agi_calleridname": "SIPp Caller",
    "agi_context": "ivr-entry",
    "agi_extension": "2000",
    "agi_priority": "2",
    "agi_enhanced": "0.0",
    "agi_accountcode": "",
    "agi_threadid": "139872342345280",
    "agi_arg_1": "menu=main",
    "agi_arg_2": "second arg",
}


# ---------------------------------------------------------------------------- header lines


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("agi_channel: PJSIP/sipp-caller-00000001", ("agi_channel", "PJSIP/sipp-caller-00000001")),
        ("agi_channel: PJSIP/x\n", ("agi_channel", "PJSIP/x")),
        ("agi_channel: PJSIP/x\r\n", ("agi_channel", "PJSIP/x")),
        ("agi_priority:2", ("agi_priority", "2")),  # no space after the colon
        ("agi_accountcode: ", ("agi_accountcode", "")),
        ("agi_accountcode:", ("agi_accountcode", "")),
        ("agi_request: agi://127.0.0.1:4573/ivr", ("agi_request", "agi://127.0.0.1:4573/ivr")),
        ("agi_calleridname: Jürgen Müller", ("agi_calleridname", "Jürgen Müller")),
        ("agi_arg_12: a: b", ("agi_arg_12", "a: b")),
    ],
)
def test_parse_header_line(line: str, expected: tuple[str, str]) -> None:
    assert parse_header_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        ": value",
        "agi_: value",
        "channel: x",
        "AGI channel: x",
        "agi_bad key: x",
        "agi_x\x00: y",
        "agi_x: a\rb",
        "agi_x: a\nagi_y: b",
        "HANGUP",
        "200 result=1",
        "agi_" + "k" * 65 + ": v",
        "agi_x: " + "v" * MAX_LINE_CHARS,
    ],
)
def test_parse_header_line_rejects_garbage(line: str) -> None:
    with pytest.raises(AgiHeaderError):
        parse_header_line(line)


@given(st.text(max_size=200))
@example("agi_x:" + "\udcff")
def test_parse_header_line_raises_only_typed_errors(line: str) -> None:
    try:
        key, value = parse_header_line(line)
    except AgiHeaderError:
        return
    assert key.startswith("agi_") and "\n" not in value and "\r" not in value


@given(
    st.from_regex(r"agi_[a-z0-9_]{1,20}", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_characters="\r\n\0"), max_size=100),
)
def test_parse_header_line_round_trips(key: str, value: str) -> None:
    assert parse_header_line(f"{key}: {value}\n") == (key, value.strip(" \t"))


# ---------------------------------------------------------------------------- requests


def test_parse_request_from_asterisk_22_fastagi_headers() -> None:
    request = parse_request(ASTERISK_22)
    assert request.script == "ivr"
    assert dict(request.query) == {"menu": "main"}
    assert request.args == ("menu=main", "second arg")
    assert request.caller_id == "+15551230001"
    assert request.channel == "PJSIP/sipp-caller-00000001"
    assert request.uniqueid == "1732440000.1"
    assert request.extension == "2000"
    assert request.context == "ivr-entry"
    assert request.language == "en"
    assert request.env["agi_type"] == "PJSIP"


def test_parse_request_is_immutable_and_detached_from_its_input() -> None:
    env = dict(ASTERISK_22)
    request = parse_request(env)
    env["agi_channel"] = "changed"
    assert request.channel == "PJSIP/sipp-caller-00000001"
    with pytest.raises(TypeError):
        request.env["agi_channel"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        request.query["menu"] = "x"  # type: ignore[index]


CLASSIC = "/usr/share/asterisk/agi-bin/ivr_agi.py"


@pytest.mark.parametrize(
    ("env", "script", "query"),
    [
        ({"agi_request": "agi://10.0.0.1/ivr?lang=en"}, "ivr", {"lang": "en"}),
        ({"agi_request": "agi://h:4573/ivr"}, "ivr", {}),
        ({"agi_request": "agi://h:4573"}, "", {}),
        ({"agi_request": "agi://h/a/b?x=1&x=2"}, "a/b", {"x": "2"}),
        ({"agi_request": "agi://[::1]:4573/ivr?menu=vip"}, "ivr", {"menu": "vip"}),
        ({"agi_request": "agi://[::1/ivr?"}, "ivr", {}),
        ({"agi_request": CLASSIC}, CLASSIC.lstrip("/"), {}),
        (
            {"agi_network_script": "ivr?name=J%C3%BCrgen&q=a+b&e="},
            "ivr",
            {"name": "Jürgen", "q": "a b", "e": ""},
        ),
        (
            {"agi_network_script": "ivr?menu=main#frag", "agi_request": "agi://h/other"},
            "ivr",
            {"menu": "main"},
        ),
        ({"agi_network_script": "ivr?%zz=%ff"}, "ivr", {"%zz": "\ufffd"}),
    ],
)
def test_parse_request_script_and_query(
    env: dict[str, str], script: str, query: dict[str, str]
) -> None:
    request = parse_request(env)
    assert (request.script, dict(request.query)) == (script, query)


def test_parse_request_needs_a_script() -> None:
    with pytest.raises(AgiHeaderError):
        parse_request({"agi_channel": "PJSIP/x"})


@pytest.mark.parametrize("value", ["unknown", "Unknown", ""])
def test_caller_id_unknown_or_empty_is_none(value: str) -> None:
    assert parse_request({"agi_request": "x", "agi_callerid": value}).caller_id is None


def test_missing_properties_are_none_and_args_stop_at_a_gap() -> None:
    request = parse_request({"agi_request": "x", "agi_arg_1": "a", "agi_arg_3": "c"})
    assert (request.channel, request.uniqueid, request.language) == (None, None, None)
    assert request.args == ("a",)


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=10))
def test_parse_request_raises_only_typed_errors(env: dict[str, str]) -> None:
    try:
        request = parse_request(env)
    except AgiHeaderError:
        assert not (env.get("agi_network_script") or "agi_request" in env)
        return
    assert not request.script.startswith("/")


# ---------------------------------------------------------------------------- replies


@pytest.mark.parametrize(
    ("line", "code", "result", "data", "extras"),
    [
        ("200 result=1", 200, "1", None, {}),
        ("200 result=1\n", 200, "1", None, {}),
        ("200 result=1\r\n", 200, "1", None, {}),
        ("200 result=0 endpos=11360", 200, "0", None, {"endpos": "11360"}),
        ("200 result=-1 endpos=0", 200, "-1", None, {"endpos": "0"}),
        ("200 result=1 (timeout) endpos=11360", 200, "1", "timeout", {"endpos": "11360"}),
        ("200 result= (timeout)", 200, "", "timeout", {}),
        ("200 result=12 (timeout)", 200, "12", "timeout", {}),
        ("200 result=1 (value with spaces)", 200, "1", "value with spaces", {}),
        ("200 result=1 (a (nested) value)", 200, "1", "a (nested) value", {}),
        ("200 result=1 (a b=c)", 200, "1", "a b=c", {}),
        ("200 result=1 ()", 200, "1", "", {}),
        ("200 result=0 (dtmf) endpos=5 x_y=z", 200, "0", "dtmf", {"endpos": "5", "x_y": "z"}),
        ("510 Invalid or unknown command", 510, "", None, {}),
        ("511 Command Not Permitted on a dead channel or intercepted channel", 511, "", None, {}),
        ("520 End of proper usage.", 520, "", None, {}),
        ("100 result=0 Trying...", 100, "", None, {}),
    ],
)
def test_parse_reply(
    line: str, code: int, result: str, data: str | None, extras: dict[str, str]
) -> None:
    reply = parse_reply(line)
    assert (reply.code, reply.result, reply.data, dict(reply.extras)) == (
        code,
        result,
        data,
        extras,
    )
    assert reply.line == line.rstrip("\r\n")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "HANGUP",
        "garbage",
        "200",
        "200 ",
        "200 foo",
        "200 result",
        "200result=1",
        "200-result=1",
        "2000 result=1",
        "20 result=1",
        "600 x",
        "099 x",
        " 200 result=1",
        "200 result=1 (unclosed",
        "200 result=1 trailing",
        "200 result=1  endpos=1",
        "٢٠٠ result=1",
        "200 result=1 " + "x" * MAX_LINE_CHARS,
    ],
)
def test_parse_reply_rejects_garbage(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        parse_reply(line)


@given(st.text(max_size=300))
@example("200 result=1 (" + ") a=)" * 500 + " !")
def test_parse_reply_raises_only_typed_errors(line: str) -> None:
    try:
        reply = parse_reply(line)
    except AgiProtocolError:
        return
    assert 100 <= reply.code <= 599
    assert all(" " not in key and " " not in value for key, value in reply.extras.items())


@given(
    result=st.one_of(st.integers(-2, 255).map(str), st.text(alphabet="0123456789*#", max_size=8)),
    data=st.none() | st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=40),
    extras=st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
        st.text(alphabet=string.ascii_letters + string.digits + "-.(", max_size=10),
        max_size=3,
    ),
)
def test_parse_reply_round_trips(result: str, data: str | None, extras: dict[str, str]) -> None:
    line = f"200 result={result}"
    line += f" ({data})" if data is not None else ""
    line += "".join(f" {key}={value}" for key, value in extras.items())
    reply = parse_reply(line)
    assert (reply.result, reply.data, dict(reply.extras)) == (result, data, extras)


def test_result_int() -> None:
    assert parse_reply("200 result=-1").result_int() == -1
    with pytest.raises(AgiProtocolError):
        parse_reply("200 result=abc").result_int()


def test_multiline_code() -> None:
    assert multiline_code("520-Invalid command syntax.  Proper usage follows:") == 520
    assert multiline_code("520 End of proper usage.") is None
    assert multiline_code("HANGUP") is None
    assert multiline_code("5a0-x") is None


# ---------------------------------------------------------------------------- status codes


def test_reply_error_maps_status_codes() -> None:
    assert reply_error(parse_reply("200 result=1")) is None
    invalid = reply_error(parse_reply("510 Invalid or unknown command"))
    assert isinstance(invalid, InvalidCommand) and isinstance(invalid, ChannelError)
    assert isinstance(reply_error(parse_reply("511 Command Not Permitted")), CallerHungUp)
    usage = reply_error(AgiReply(520, data=" Usage: GET DATA <file>", line="520-Invalid"))
    assert isinstance(usage, UsageError) and isinstance(usage, ChannelError)
    assert usage.usage == " Usage: GET DATA <file>"
    single = reply_error(parse_reply("520 Invalid command syntax.  Proper usage not available."))
    assert isinstance(single, UsageError) and "not available" in single.usage
    other = reply_error(parse_reply("503 Service unavailable"))
    assert type(other) is ChannelError
    assert type(reply_error(parse_reply("100 result=0 Trying..."))) is ChannelError


@given(st.integers(100, 599))
def test_reply_error_is_total(code: int) -> None:
    error = reply_error(AgiReply(code, line=f"{code} x"))
    assert (error is None) == (code == 200)
    assert error is None or isinstance(error, CallerHungUp | ChannelError)


# ---------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("hello", '"hello"'),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a&b", '"a&b"'),
    ],
)
def test_quote_arg(value: str, quoted: str) -> None:
    assert quote_arg(value) == quoted


@pytest.mark.parametrize("value", ["a\nb", "x\r", "\n", "nul\0", 'x"\nHANGUP'])
def test_quote_arg_rejects_line_breaks(value: str) -> None:
    with pytest.raises(ValueError):
        quote_arg(value)


def test_format_command() -> None:
    assert format_command("GET DATA", "a&b", 5000, 1) == 'GET DATA "a&b" 5000 1'
    assert format_command("ANSWER") == "ANSWER"
    assert format_command("STREAM FILE", "hello", "") == 'STREAM FILE "hello" ""'
    with pytest.raises(ValueError):
        format_command("SET VARIABLE", "X", 'v"\nEXEC System "rm -rf /"')
    with pytest.raises(ValueError):
        format_command("ANSWER\nHANGUP")


@pytest.mark.parametrize("command", ["", "ANSWER\n", "A\rB", "A\0"])
def test_check_command_rejects(command: str) -> None:
    with pytest.raises(ValueError):
        check_command(command)


@pytest.mark.parametrize(
    ("line", "args"),
    [
        ('STREAM FILE hello ""', ["STREAM", "FILE", "hello", ""]),
        ('GET DATA "a b" 100', ["GET", "DATA", "a b", "100"]),
        ("a\\ b  c", ["a b", "c"]),
        ('ab"cd ef"g', ["abcd efg"]),
        ('"\\"\\\\"', ['"\\']),
        ("  ", []),
    ],
)
def test_split_command_args_follows_asterisk(line: str, args: list[str]) -> None:
    assert split_command_args(line) == args


ARG = st.text(alphabet=st.characters(blacklist_characters="\r\n\0"), max_size=30)


@given(ARG)
def test_quote_arg_round_trips(value: str) -> None:
    quoted = quote_arg(value)
    assert "\n" not in quoted and "\r" not in quoted
    assert split_command_args(quoted) == [value]


@given(st.lists(ARG, max_size=6))
def test_format_command_round_trips(values: list[str]) -> None:
    command = format_command("SET VARIABLE", *values)
    assert split_command_args(command) == ["SET", "VARIABLE", *values]


@given(st.text(max_size=40))
def test_quote_arg_never_yields_a_line_break(value: str) -> None:
    try:
        quoted = quote_arg(value)
    except ValueError:
        assert any(c in value for c in "\r\n\0")
        return
    assert "\n" not in quoted and "\r" not in quoted and "\0" not in quoted

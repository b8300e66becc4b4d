"""Targeted property tests: AGI wire format, with strategies aimed at the parsers'
edges (whitespace other than a space, parentheses, ``=``, status codes) rather than at
uniform random text, which almost never forms a ``200 result=...`` line."""

from __future__ import annotations

import asyncio
from typing import cast

from hypothesis import example, given
from hypothesis import strategies as st

from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.telephony.agi.channel import AgiChannel
from ivr_engine.telephony.agi.protocol import (
    AgiHeaderError,
    AgiProtocolError,
    parse_header_line,
    parse_reply,
    parse_request,
    split_command_args,
)

# every kind of character str.split()/strip()/isspace() treat specially, plus the syntax
_BLANKS = " \t\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000"
_SYNTAX = "()=-_ 0123456789aZ\r\n"
_reply_tail = st.text(alphabet=_BLANKS + _SYNTAX, max_size=40)
_prefix = st.sampled_from(
    ["200 result=", "200 result=1 ", "200 result=1 (x) ", "200 result=-1 ", "200 ", "520 ", ""]
)


@given(_prefix, _reply_tail)
@example("200 result=", " a=\tb")
def test_parse_reply_on_reply_shaped_text_raises_only_protocol_errors(
    prefix: str, tail: str
) -> None:
    line = prefix + tail
    try:
        reply = parse_reply(line)
    except AgiProtocolError:
        return
    assert 100 <= reply.code <= 599
    for key, value in reply.extras.items():  # a value is everything up to the next space
        assert key and " " not in key + value and "=" not in key, (key, value)


@given(
    st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
    st.text(alphabet=_BLANKS.replace(" ", "") + "abc=().", max_size=12),
)
def test_parse_reply_extras_keep_their_value_or_refuse(key: str, value: str) -> None:
    """``200 result=1 key=value``: the extra comes back exactly (a value is everything up to
    the next space, tabs and other blanks included), or the line is refused."""
    try:
        reply = parse_reply(f"200 result=1 {key}={value}")
    except AgiProtocolError:
        return
    assert reply.data is None and dict(reply.extras) == {key: value}


_header_text = st.text(alphabet=_BLANKS + "agi_xyz:\r\n\0é", max_size=40)


@given(_header_text)
def test_parse_header_line_on_header_shaped_text(line: str) -> None:
    try:
        key, value = parse_header_line(line)
    except AgiHeaderError:
        return
    assert key.startswith("agi_") and not any(c in value for c in "\r\n\0")


_url = st.text(alphabet="agi:/?#&=%+[]@.h0-9é\x00 \t", max_size=50)


@given(_url, st.booleans())
def test_parse_request_takes_any_script_url(raw: str, network: bool) -> None:
    env = {"agi_network_script" if network else "agi_request": raw}
    try:
        request = parse_request(env)
    except AgiHeaderError:
        assert network and not raw  # an empty agi_network_script, no agi_request
        return
    assert not request.script.startswith("/")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in request.query.items())


@given(st.text(alphabet=' \t"\\ab', max_size=30))
def test_split_command_args_never_yields_an_unquoted_blank(line: str) -> None:
    """Splitting is total; re-quoting what it gives and splitting again is stable."""
    args = split_command_args(line)
    from ivr_engine.telephony.agi.protocol import format_command

    if args:
        again = split_command_args(format_command("X", *args))
        assert again == ["X", *args]


class _NullWriter:
    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


async def _send(reply: bytes) -> object:
    reader = asyncio.StreamReader()
    reader.feed_data(reply)
    reader.feed_eof()
    channel = AgiChannel(reader, cast(asyncio.StreamWriter, _NullWriter()), command_timeout=5)
    try:
        return await channel.send("ANSWER")
    except IvrEngineError as exc:
        return type(exc)


@given(_prefix, _reply_tail)
@example("200 result=", " a=\tb")
def test_a_channel_turns_any_reply_into_a_reply_or_an_engine_error(prefix: str, tail: str) -> None:
    """Whatever line Asterisk (or something pretending) answers, a handler sees a reply or
    an ``IvrEngineError`` (which the IVR flows handle), never a ``ValueError``."""
    data = (prefix + tail).replace("\n", " ") + "\n"
    asyncio.run(_send(data.encode()))

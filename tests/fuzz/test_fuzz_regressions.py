"""Regression tests, one section per bug that targeted property tests (``tests/fuzz``) found
on 2026-11-30: each failed before its fix, with the minimal input hypothesis shrank to."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_bridge.calls.esl_normalise import event_time
from crm_bridge.calls.esl_resync import ChannelRow, _created
from crm_bridge.webhooks.retry import Outcome, classify_status, parse_retry_after
from crm_bridge.webhooks.subscriptions import parse_subscriptions
from ivr_engine.contact_center.agents_csv import records_from_csv
from ivr_engine.contact_center.agents_file import parse_agent_profiles
from ivr_engine.contact_center.device_state import device_state_name
from ivr_engine.desktop.directory import parse_agent_directory
from ivr_engine.domain.errors import ConfigError
from ivr_engine.identity import (
    InvalidIdentity,
    normalize_caller_id,
    normalize_identity,
    normalize_phone,
)
from ivr_engine.menu_config import parse_menu
from ivr_engine.omni.redeem_api import redeem_routes
from ivr_engine.routing.config import parse_routing_config
from ivr_engine.telephony.agi.protocol import parse_reply
from ivr_engine.telephony.ami.errors import AmiProtocolError
from ivr_engine.telephony.ami.framing import AmiFramer
from ivr_engine.telephony.esl.errors import EslProtocolError
from ivr_engine.telephony.esl.protocol import EslEvent, decode_event_json

# ---------------------------------------------------------------- 1. AGI reply extras


@pytest.mark.parametrize(
    ("line", "extras"),
    [
        ("200 result= a=\tb", {"a": "\tb"}),  # was: ValueError from dict()
        ("200 result=1 (x) endpos=5\x1fz", {"endpos": "5\x1fz"}),  # was: ValueError
        ("200 result=1 a=b\xa0c=d", {"a": "b\xa0c=d"}),  # was: {"a": "b", "c": "d"}
        ("200 result=1 _=\x1f", {"_": "\x1f"}),  # was: {"_": ""}
    ],
)
def test_reply_extras_are_split_at_spaces_only(line: str, extras: dict[str, str]) -> None:
    assert dict(parse_reply(line).extras) == extras


# ---------------------------------------------------------------- 2. AMI framer message limit


def _frame(data: bytes, max_message: int, *, bytewise: bool) -> object:
    framer = AmiFramer(max_line_bytes=1000, max_message_bytes=max_message)
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    try:
        return [message for piece in pieces for message in framer.feed(piece)]
    except AmiProtocolError:
        return AmiProtocolError


@pytest.mark.parametrize("max_message", [6, 7, 8, 9])
def test_the_message_limit_does_not_depend_on_how_the_bytes_arrive(max_message: int) -> None:
    # 8 bytes on the wire (the blank line included, as the line-at-a-time path counts them);
    # whole in one read the fast path took it with max_message_bytes=7
    data = b"A: 1\r\n\r\n"
    whole = _frame(data, max_message, bytewise=False)
    assert whole == _frame(data, max_message, bytewise=True)
    assert (whole is AmiProtocolError) == (max_message < 8)


# ---------------------------------------------------------------- 3. ESL event-json nesting


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"a":' * 5000, b'{"Event-Name":"X","a":' + b"[" * 5000 + b"]" * 5000 + b"}"],
)
def test_deeply_nested_event_json_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(EslProtocolError):
        decode_event_json(body)


# ---------------------------------------------------------------- 4. YAML config loaders

NOT_YAML_VALUES = ["x: 2024-02-30\n", "x: !!int x\n", "x: " + "[" * 5000]


@pytest.mark.parametrize("text", NOT_YAML_VALUES)
@pytest.mark.parametrize(
    "parse",
    [
        lambda text: parse_menu(Path("m.yaml"), text),
        lambda text: parse_routing_config(Path("r.yaml"), text),
        lambda text: parse_agent_directory(Path("d.yaml"), text),
        lambda text: parse_agent_profiles(Path("a.yaml"), text),
        lambda text: parse_subscriptions("s.yaml", text, {}),
    ],
    ids=["menu", "routing", "directory", "agents", "subscriptions"],
)
def test_yaml_the_loader_refuses_is_a_config_error(parse: Any, text: str) -> None:
    with pytest.raises(ConfigError):
        parse(text)


# the settings file and the prompt texts: test_fuzz_config_yaml.py


# ---------------------------------------------------------------- 5. redeem endpoint


async def test_a_deeply_nested_redeem_body_is_a_400() -> None:
    app = web.Application()
    app.add_routes(redeem_routes(cast(Any, None), cast(Any, None), lambda: datetime.now(UTC)))
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/v1/continuations/redeem", data=b"[" * 4000)
        assert response.status == 400


# ---------------------------------------------------------------- 6. isdigit() then int()

AT = datetime(2024, 1, 1, tzinfo=UTC)


def test_a_retry_after_of_other_digits_is_ignored() -> None:
    assert parse_retry_after("²", 0.0) is None
    assert classify_status(503, "²", "", 0.0).outcome is Outcome.RETRY


def test_a_queue_member_status_of_other_digits_is_no_state() -> None:
    assert device_state_name("²") is None


def test_an_esl_timestamp_of_other_digits_falls_back() -> None:
    assert event_time(EslEvent({"Event-Date-Timestamp": "²"}), AT) == AT
    assert _created(ChannelRow({"created_epoch": "²"}), AT) == AT


def test_agents_csv_numbers_of_other_digits_are_config_errors() -> None:
    for text in (
        "agent_id,name,sip_endpoint,skills\na1,Ann,PJSIP/a1,billing:²\n",
        "agent_id,name,sip_endpoint,max_concurrent\na1,Ann,PJSIP/a1,²\n",
    ):
        with pytest.raises(ConfigError):
            records_from_csv(text)


@pytest.mark.parametrize("value", ["²", "①", "1²"])
def test_account_numbers_are_decimal_digits(value: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize_identity("account", value)


def test_account_numbers_in_other_scripts_become_ascii() -> None:
    # one account, one identity: what a caller keys in (DTMF, ASCII) finds it
    assert normalize_identity("account", "\u0661\u0662\u0663") == "123"


# ---------------------------------------------------------------- 7. E.164 length


@pytest.mark.parametrize(("raw", "region"), [("10000000000000", "JP"), ("0301234567890123", "DE")])
def test_phone_numbers_longer_than_e164_allows_are_refused(raw: str, region: str) -> None:
    # libphonenumber calls these "possible" (JP/DE national lengths up to 16-17 digits),
    # but +81 10000000000000 has 16 digits and E.164 allows at most 15
    with pytest.raises(InvalidIdentity):
        normalize_phone(raw, region)
    assert normalize_caller_id(raw, region) is None

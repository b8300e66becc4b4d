"""``esl_resync``: FreeSWITCH's channel list against the bridge's live calls (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from crm_bridge.calls.esl_resync import ChannelRow, parse_channels, reconcile_channels
from crm_bridge.calls.resync import begin_resync
from crm_bridge.calls.state import BridgeState, CallState, NormaliserConfig

NOW = datetime(2024, 11, 24, 9, 30, tzinfo=UTC)


def listing(*rows: dict[str, str]) -> str:
    doc: dict[str, object] = {"row_count": len(rows)}
    if rows:
        doc["rows"] = list(rows)
    return json.dumps(doc) + "\n"


def row(uuid: str, **extra: str) -> dict[str, str]:
    return {
        "uuid": uuid,
        "direction": "inbound",
        "created_epoch": str(int(NOW.timestamp()) - 90),
        "name": "sofia/external/+15551230001@198.51.100.7",
        "state": "CS_EXECUTE",
        "cid_num": "+15551230001",
        "cid_name": "Ada",
        "dest": "2000",
        "context": "ivr-engine",  # transferred there since
        "initial_context": "public",
        "callstate": "ACTIVE",
        "call_uuid": "",
        **extra,
    }


def state() -> BridgeState:
    return BridgeState(NormaliserConfig(source="fs1", inbound_contexts=("public",)))


def live_call(bridge: BridgeState, call_id: str) -> CallState:
    call = CallState(call_id, "sofia/x", "+15551230001", NOW, NOW)
    bridge.add(call)
    return call


def test_parse_accepts_an_empty_list_without_rows() -> None:
    assert parse_channels('{"row_count":0}\n') == []


@pytest.mark.parametrize(
    "output",
    ["-ERR show Command not found!\n", "", "[]", '{"row_count":2,"rows":[{}]}', '{"rows":[]}'],
)
def test_parse_refuses_what_is_not_a_channel_list(output: str) -> None:
    with pytest.raises(ValueError):
        parse_channels(output)


def test_inbound_call_created_in_an_inbound_context_is_adopted_with_its_start() -> None:
    bridge = state()
    (started,) = reconcile_channels(bridge, parse_channels(listing(row("u1"))), [], at=NOW)
    assert started.event_id == "esl:fs1:u1:call.started:1"
    assert started.occurred_at == datetime.fromtimestamp(NOW.timestamp() - 90, UTC)
    assert started.data["context"] == "public" and started.data["recovered"] is True
    assert bridge.calls["u1"].recovered and bridge.calls["u1"].last_event_at == NOW


@pytest.mark.parametrize(
    "extra",
    [
        {"direction": "outbound"},  # an agent leg
        {"initial_context": "default"},  # not a caller from the trunk
        {"callstate": "HANGUP"},  # hanging up, listed until destroyed
        {"call_uuid": "someone-else"},  # a leg of another call
    ],
)
def test_other_channels_are_not_adopted(extra: dict[str, str]) -> None:
    bridge = state()
    assert reconcile_channels(bridge, parse_channels(listing(row("u1", **extra))), [], at=NOW) == []
    assert bridge.calls == {}


def test_without_initial_columns_the_current_context_decides() -> None:
    old = {k: v for k, v in row("u1", context="public").items() if k != "initial_context"}
    (started,) = reconcile_channels(state(), parse_channels(listing(old)), [], at=NOW)
    assert started.data["context"] == "public"


def test_a_suspect_not_listed_ends_once_and_is_never_adopted_again() -> None:
    bridge = state()
    live_call(bridge, "u1")
    (ended,) = reconcile_channels(bridge, [], begin_resync(bridge), at=NOW)
    assert ended.event_id == "esl:fs1:u1:call.ended:1" and ended.data["approximate"] is True
    stale = parse_channels(listing(row("u1")))
    assert reconcile_channels(bridge, stale, begin_resync(bridge), at=NOW) == []


def test_a_listed_suspect_goes_on_without_its_gone_legs() -> None:
    bridge = state()
    call = live_call(bridge, "u1")
    call.agents = {"agent-leg": NOW.replace(minute=29)}
    call.first_agent_at = call.agents["agent-leg"]
    call.ringing = ["ringing-leg"]
    rows = [ChannelRow({"uuid": "u1", "state": "CS_EXCHANGE_MEDIA"})]
    assert reconcile_channels(bridge, rows, begin_resync(bridge), at=NOW) == []
    assert call.agents == {} and call.talk_ms == 60_000 and call.ringing == []

"""Which key the AMI tracker's agent events go under (``agent_call_timeline``): the call's
own key (``IVR_CALL_KEY``, ``<uniqueid>~<nonce>``) when the event carried it, else the
uniqueid. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_engine.contact_center.agent_call_timeline import (
    AgentLeg,
    agent_call_key,
    agent_event_id,
)
from ivr_engine.contact_center.call_resync import ChannelList
from ivr_engine.flows.call_record import IncomingCall
from ivr_engine.telephony.ami import AmiEvent
from ivr_engine.telephony.ami.parsing import build_message

NOW = datetime(2026, 1, 1, tzinfo=UTC)
UID = "1733000000.42"


def incoming(call_id: str) -> IncomingCall:
    return IncomingCall(call_id, "+15551230001", "PJSIP/trunk-1", "main", NOW)


def leg(call_key: str, agent_id: str = "a1") -> AgentLeg:
    return AgentLeg(UID, agent_id, "c-1", "+15551230001", NOW, call_key=call_key)


@given(st.sampled_from(["1733000000.42", "pbx-eu-1-1733000000.42", "a~b-1.2", "x"]))
def test_the_key_the_engine_set_for_the_call_is_taken(call_id: str) -> None:
    call = incoming(call_id)
    assert agent_call_key(call_id, call.call_key) == call.call_key


def test_two_calls_sharing_a_uniqueid_get_two_keys_and_two_event_ids() -> None:
    one, two = incoming(UID), incoming(UID)
    ids = {agent_event_id(leg(c.call_key), "answered") for c in (one, two)}
    assert ids == {f"voice:{one.call_key}:answered:a1", f"voice:{two.call_key}:answered:a1"}


def test_the_same_fact_seen_again_has_the_same_event_id() -> None:
    key = incoming(UID).call_key
    assert agent_event_id(leg(key), "missed:NOANSWER") == agent_event_id(
        leg(key), "missed:NOANSWER"
    )


def test_the_event_id_starts_as_the_calls_ivr_event_does() -> None:
    """The screen pop and anyone matching a call's events by ``voice:<key>:`` find it."""
    key = incoming(UID).call_key
    assert agent_event_id(leg(key), "ended").startswith(f"voice:{key}:")


@pytest.mark.parametrize(
    "channel_key",
    [
        "",  # not routed by the engine, or manager.conf without channelvars
        UID,  # no nonce
        f"{UID}~",  # empty nonce
        "1733000000.41~0123456789abcdef",  # another call's key (a variable left over)
        f"x{UID}~0123456789abcdef",
        f"{UID}~0123:456789abcdef",  # a ':' would shift what the id's parts mean
        f"{UID}~" + "a" * 65,  # longer than any nonce
        f"{UID}~01 23",
    ],
)
def test_no_key_of_this_call_falls_back_to_the_uniqueid(channel_key: str) -> None:
    assert agent_call_key(UID, channel_key) == UID
    assert agent_event_id(leg(channel_key), "answered") == f"voice:{UID}:answered:a1"


def listed(uniqueid: str, *variables: tuple[str, str]) -> AmiEvent:
    """A ``CoreShowChannel`` item, ``variables`` as manager.conf ``channelvars`` adds them."""
    headers = [("Event", "CoreShowChannel"), ("Uniqueid", uniqueid), ("CallerIDNum", "1")]
    event = build_message(headers + [("ChanVariable", f"{n}={v}") for n, v in variables])
    assert isinstance(event, AmiEvent)
    return event


def test_the_channel_list_reads_each_channels_call_key() -> None:
    key = incoming(UID).call_key
    events = [listed(UID, ("OTHER", "x"), ("IVR_CALL_KEY", key)), listed("1733000000.43")]
    channels = ChannelList.from_events(events, NOW)
    assert channels.call_key(UID) == key
    assert channels.call_key("1733000000.43") == ""
    assert channels.call_key("1733000000.44") == ""

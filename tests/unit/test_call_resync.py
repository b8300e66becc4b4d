"""The pure decisions of the AMI resync (``ivr_engine/contact_center/call_resync.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ivr_engine.agents.model import AgentSnapshot, AgentState, Reservation
from ivr_engine.contact_center.call_resync import (
    ChannelList,
    Holding,
    gone_calls,
    holdings,
    is_asterisk_uniqueid,
    plan_agents,
)
from ivr_engine.contact_center.load_view import WaitingCall
from ivr_engine.telephony.ami import AmiEvent
from ivr_engine.telephony.ami.parsing import build_message

ASKED = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
BEFORE, AFTER = ASKED - timedelta(seconds=1), ASKED + timedelta(milliseconds=1)


def listed(*uniqueids: str) -> ChannelList:
    return ChannelList(ASKED, frozenset(uniqueids), {u: "" for u in uniqueids})


def channel(uniqueid: str, caller: str) -> AmiEvent:
    event = build_message(
        [("Event", "CoreShowChannel"), ("ActionID", "7"), ("Channel", "PJSIP/trunk-1"),
         ("CallerIDNum", caller), ("Uniqueid", uniqueid), ("Linkedid", uniqueid)]
    )  # fmt: skip
    assert isinstance(event, AmiEvent)
    return event


def test_asterisk_uniqueids_are_told_apart_from_ids_asterisk_never_lists() -> None:
    assert is_asterisk_uniqueid("1732440000.17")
    assert is_asterisk_uniqueid("pbx-eu-1-1732440000.17")  # asterisk.conf systemname
    assert not is_asterisk_uniqueid("6f1c2a9e-3f5b-4c1a-9d2e-7b8c9d0e1f2a")  # FreeSWITCH
    assert not is_asterisk_uniqueid("agi-140000000")  # a request without agi_uniqueid
    assert not is_asterisk_uniqueid("")


def test_the_channel_list_keeps_uniqueids_and_callers() -> None:
    channels = ChannelList.from_events(
        [channel("1.1", "+15551230001"), channel("1.2", "<unknown>")], ASKED
    )
    assert channels.uniqueids == {"1.1", "1.2"}
    assert (channels.caller("1.1"), channels.caller("1.2"), channels.caller("9.9")) == (
        "+15551230001",
        "",
        "",
    )
    assert channels.gone("1.3") and not channels.gone("1.1")
    assert not channels.gone("esl-uuid")  # never listed by Asterisk: never "gone"


def test_only_calls_waiting_since_before_the_request_and_unlisted_end() -> None:
    calls = [
        WaitingCall("1.1", "billing", BEFORE),  # listed: still up
        WaitingCall("1.2", "billing", BEFORE, "a1"),  # gone
        WaitingCall("1.3", "billing", AFTER),  # routed after the request: kept
        WaitingCall("1.4", "billing", ASKED),  # at the very instant: kept
        WaitingCall("6f1c2a9e-3f5b-4c1a-9d2e-7b8c9d0e1f2a", "billing", BEFORE),
    ]
    assert gone_calls(calls, listed("1.1")) == ["1.2"]


def _agent(
    agent_id: str, state: AgentState, interactions: tuple[str, ...], reserved: str | None
) -> AgentSnapshot:
    reservation = None if reserved is None else Reservation(reserved, None)
    return AgentSnapshot(agent_id, state, BEFORE, None, interactions, 2, reservation)


def test_holdings_are_reservations_and_interactions() -> None:
    agents = {
        "a2": _agent("a2", AgentState.RINGING, (), "1.5"),
        "a1": _agent("a1", AgentState.ON_CALL, ("1.1", "1.2"), "1.3"),
        "a3": _agent("a3", AgentState.AVAILABLE, (), None),
    }
    assert holdings(agents) == [
        Holding("a1", "1.3", False, BEFORE),
        Holding("a1", "1.1", True, BEFORE),
        Holding("a1", "1.2", True, BEFORE),
        Holding("a2", "1.5", False, BEFORE),
    ]


def test_the_plan_ends_gone_legs_releases_unknown_gone_holdings_and_adopts_live_ones() -> None:
    suspects = {"1.1": "", "1.2": "2.2", "1.3": "2.3", "1.4": ""}
    known = {**suspects, "1.4": "2.4", "1.9": ""}  # 1.4 was answered meanwhile: left alone
    held = [
        Holding("a1", "1.1", False, BEFORE),  # the tracker's: decided by its leg
        Holding("a5", "1.5", True, BEFORE),  # unknown, gone
        Holding("a6", "1.6", False, BEFORE),  # unknown, still up
        Holding("a7", "1.6", False, BEFORE),  # the same call twice: adopted once
    ]
    plan = plan_agents(listed("1.2", "1.3", "2.3", "1.6"), suspects, known, held)
    # 1.1: caller gone; 1.2: its agent's channel gone; 1.3: both up
    assert plan.end == ("1.1", "1.2")
    assert plan.release == (Holding("a5", "1.5", True, BEFORE),)
    assert plan.adopt == (Holding("a6", "1.6", False, BEFORE),)


call_ids = st.integers(1, 8).map(lambda n: f"1700000000.{n}")
moments = st.sampled_from([BEFORE, ASKED, AFTER])


@given(
    live=st.frozensets(call_ids),
    calls=st.lists(st.tuples(call_ids, moments), unique_by=lambda c: c[0]),
    suspects=st.dictionaries(call_ids, st.sampled_from(["", "1700000000.90"])),
    held=st.lists(st.tuples(st.sampled_from(["a1", "a2"]), call_ids, st.booleans())),
)
def test_nothing_listed_or_routed_after_the_request_is_ever_ended(
    live: frozenset[str],
    calls: list[tuple[str, datetime]],
    suspects: dict[str, str],
    held: list[tuple[str, str, bool]],
) -> None:
    channels = ChannelList(ASKED, live | {"1700000000.90"}, {})
    waiting = [WaitingCall(call_id, "billing", since) for call_id, since in calls]
    for call_id in gone_calls(waiting, channels):
        assert call_id not in live
        assert next(since for c, since in calls if c == call_id) < ASKED
    holds = [Holding(agent, call_id, answered, BEFORE) for agent, call_id, answered in held]
    plan = plan_agents(channels, suspects, suspects, holds)
    assert not set(plan.end) & live and set(plan.end) <= set(suspects)
    assert not {h.call_id for h in plan.release} & (live | set(suspects))
    assert {h.call_id for h in plan.adopt} <= live - set(suspects)

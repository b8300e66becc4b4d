"""The pure core of the call bridge: ``normalise`` and ``reconcile`` over AMI transcripts
written by the fake switch (the same events the fake AMI peer sends in the other tests)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.bus.model import encode_event
from crm_bridge.calls import (
    BridgeState,
    CallEventKind,
    CallState,
    NormalisedEvent,
    NormaliserConfig,
    begin_resync,
    normalise,
    reconcile,
)
from crm_bridge.calls.model import InvalidBusEvent
from ivr_engine.domain.models import CountryCodeWithoutPlus
from ivr_engine.telephony.ami import AmiEvent
from tests.component.test_call_bridge_fakes import T0, Switch

K = CallEventKind
RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)  # never used when events carry Timestamp


def run(events: Sequence[AmiEvent], state: BridgeState | None = None) -> list[NormalisedEvent]:
    state = state or BridgeState()
    out: list[NormalisedEvent] = []
    for event in events:
        out += normalise(event, state, at=RECEIVED)
    return out


def kinds(events: Sequence[NormalisedEvent]) -> list[str]:
    return [e.kind.value for e in events]


def test_agent_call_gives_each_fact_once_with_exact_durations() -> None:
    switch = Switch()
    ch = switch.agent_call("+1 (555) 123-0001", talk_s=60, hold_s=20)
    out = run(switch.take_events())
    assert kinds(out) == [
        "call.started", "call.ivr_routed", "call.transferred", "call.answered_by_agent",
        "call.held", "call.resumed", "call.ended",
    ]  # fmt: skip
    assert [e.seq for e in out] == list(range(1, 8))
    assert {e.call_id for e in out} == {ch.uniqueid}
    assert all(e.caller == "+15551230001" for e in out)
    assert out[0].event_id == f"ami:asterisk:{ch.uniqueid}:call.started:1"
    assert out[0].occurred_at == datetime.fromtimestamp(T0, UTC)
    assert out[1].intent == "billing" and out[1].data["target"] == "queue:billing"
    assert out[2].data == {"via": "ivr", "agent_id": "a-1", "engine_customer_id": None}
    assert out[3].data["ring_ms"] == 4000 and out[3].data["agent_id"] == "a-1"
    assert out[5].data["held_ms"] == 20_000
    ended = out[-1].data
    assert (ended["cause"], ended["cause_txt"]) == (16, "Normal Clearing")
    assert ended["ring_ms"] == 500  # until the switch answered
    assert ended["wait_ms"] == 12_500  # until the agent answered
    assert ended["talk_ms"] == 80_000 and ended["hold_ms"] == 20_000
    assert ended["total_ms"] == 92_500 and ended["answered_by_agent"] is True
    assert "approximate" not in ended


def test_a_caller_id_with_the_country_code_without_plus_is_read_by_the_setting() -> None:
    """``4915112345678`` from a German trunk is +49 151..., unless the setting says never."""
    readings: tuple[tuple[CountryCodeWithoutPlus, str], ...] = (
        ("auto", "+4915112345678"),
        ("never", "+494915112345678"),
    )
    for rule, expected in readings:
        switch = Switch()
        switch.inbound("4915112345678")
        config = NormaliserConfig(default_region="DE", country_code_without_plus=rule)
        [started] = run(switch.take_events(), BridgeState(config))
        assert started.caller == expected


def test_fallback_call_that_the_caller_abandons() -> None:
    switch = Switch()
    ch = switch.inbound("+15551230002")
    switch.answer(ch)
    switch.fallback(ch)
    switch.advance(7)
    switch.hangup(ch, 0, "Unknown")  # as observed when the caller's BYE ends Background()
    out = run(switch.take_events())
    assert kinds(out) == ["call.started", "call.ivr_fallback", "call.ended"]
    assert out[1].data == {"agi_status": "FAILURE", "outcome": None}
    assert out[2].data["cause"] == 0 and out[2].data["talk_ms"] is None
    assert out[2].data["wait_ms"] is None and out[2].data["total_ms"] == 7000


def test_a_plain_dial_is_a_transfer_and_ring_all_is_one_transfer() -> None:
    switch = Switch()
    ch = switch.inbound("+15551230003")
    first = switch.dial(ch, "agent-1")
    second = switch.dial(ch, "agent-2")
    switch.advance(3)
    switch.dial_end(ch, first, "CANCEL")
    switch.dial_end(ch, second)
    switch.bridge(second, ch)
    out = run(switch.take_events())
    assert kinds(out) == ["call.started", "call.transferred", "call.answered_by_agent"]
    assert out[1].data["via"] == "dial" and out[1].data["dial_string"] == "agent-1"
    assert out[2].data["agent_channel"] == second.name and out[2].data["ring_ms"] == 3000


def test_a_bridge_without_dial_end_counts_as_answered_once() -> None:
    """A queue member answering shows as BridgeEnter (AgentConnect), without DialEnd."""
    switch = Switch()
    ch = switch.inbound("+15551230004")
    leg = switch.dial(ch)
    switch.bridge(leg, ch)
    switch.bridge(leg, ch)  # entering again (e.g. after a transfer bridge) changes nothing
    out = run(switch.take_events())
    assert kinds(out) == ["call.started", "call.transferred", "call.answered_by_agent"]
    assert out[-1].data["via"] == "bridge" and out[-1].data["agent_channel"] == leg.name


def test_only_inbound_caller_channels_start_calls() -> None:
    switch = Switch()
    switch.inbound("+15551230005", context="from-agents")  # not an inbound context
    ch = switch.inbound("+15551230006")
    switch.dial(ch)  # its Newchannel has the caller's Linkedid: an agent leg
    config = NormaliserConfig(inbound_contexts=("from-trunk",))
    out = run(switch.take_events(), BridgeState(config))
    assert kinds(out) == ["call.started", "call.transferred"]


def test_withheld_caller_id_is_none_and_stragglers_after_the_end_are_ignored() -> None:
    switch = Switch()
    ch = switch.inbound("anonymous")
    switch.hangup(ch)
    events = switch.take_events()
    state = BridgeState()
    out = run(events, state)
    assert kinds(out) == ["call.started", "call.ended"] and out[0].caller is None
    assert run(events, state) == []  # the same events again: the call has ended


def test_replaying_a_transcript_gives_the_same_keys() -> None:
    switch = Switch()
    for n in range(5):
        switch.agent_call(f"+1555123{n:04d}", hold_s=5)
    events = switch.take_events()
    first, second = run(events), run(events)
    assert first == second
    assert len({e.event_id for e in first}) == len(first) == 35


def test_bus_form_round_trips_and_rejects_foreign_entries() -> None:
    switch = Switch()
    switch.agent_call("+15551230007")
    for event in run(switch.take_events()):
        assert NormalisedEvent.from_bus(event.to_bus()) == event
    for bad in ({"event_id": "x"}, {**event.to_bus(), "kind": "chat.message"}):
        try:
            NormalisedEvent.from_bus(bad)
        except InvalidBusEvent:
            continue
        raise AssertionError(f"accepted {bad}")


@settings(max_examples=200, deadline=None)
@given(
    when=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))])),
    data=st.dictionaries(
        st.text(), st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text())
    ),
)
def test_the_bus_text_is_what_encode_event_writes(when: datetime, data: dict[str, object]) -> None:
    """``to_bus_json`` (orjson, the time included) gives ``encode_event``'s text exactly."""
    event = NormalisedEvent("e:1", "c.1", CallEventKind.HELD, 3, when, "+1555", "billing", data)
    assert event.to_bus_json() == encode_event(event.to_bus())[1]


def _interleave(calls: list[list[AmiEvent]], order: list[int]) -> list[AmiEvent]:
    queues = [list(c) for c in calls]
    out = []
    for pick in order:
        live = [q for q in queues if q]
        if not live:
            break
        out.append(live[pick % len(live)].pop(0))
    return out + [e for q in queues for e in q]


@settings(max_examples=60, deadline=None)
@given(order=st.lists(st.integers(0, 5), max_size=120), cut=st.integers(0, 100))
def test_per_call_results_do_not_depend_on_interleaving_or_a_restart(
    order: list[int], cut: int
) -> None:
    """Any interleaving of three calls' events, with the state saved to JSON and restored
    at any point (a bridge restart), gives each call the events it gets alone."""
    calls = []
    alone: dict[str, list[NormalisedEvent]] = {}
    for n, (talk, hold) in enumerate([(10, 0), (20, 4), (0, 0)]):
        switch = Switch(prefix=f"{n}0")
        if talk:
            ch = switch.agent_call(f"+1555000{n:04d}", talk_s=talk, hold_s=hold)
        else:
            ch = switch.inbound(f"+1555000{n:04d}")
            switch.answer(ch)
            switch.fallback(ch)
            switch.hangup(ch)
        events = switch.take_events()
        calls.append(events)
        alone[ch.uniqueid] = run(events)
    mixed = _interleave(calls, order)
    cut = cut % (len(mixed) + 1)
    state = BridgeState()
    out = run(mixed[:cut], state)
    restored = BridgeState.restore(
        state.config, [CallState.from_json(c.to_json()) for c in state.calls.values()]
    )
    out += run(mixed[cut:], restored)
    for call_id, expected in alone.items():
        assert [e for e in out if e.call_id == call_id] == expected


def test_reconcile_closes_calls_gone_and_adopts_calls_started_unseen() -> None:
    switch = Switch()
    gone = switch.inbound("+15551230010")
    kept = switch.inbound("+15551230011")
    state = BridgeState()
    run(switch.take_events(), state)
    suspects = begin_resync(state)
    switch.advance(30)
    switch.hangup(gone)  # not seen: the bridge was disconnected
    switch.take()
    new = switch.inbound("+15551230012")
    switch.answer(new, "ivr-fail")
    switch.take()
    switch.advance(5)
    switch.dial(kept)  # an agent leg: never adopted
    switch.take()
    listed = [AmiEvent(tuple(row)) for row in switch.core_show_channels("a")]
    now = datetime.fromtimestamp(switch.t, UTC)
    out = reconcile(state, listed, suspects, at=now)
    assert kinds(out) == ["call.ended", "call.started"]
    ended, adopted = out
    assert ended.call_id == gone.uniqueid and ended.data["approximate"] is True
    assert ended.data["cause"] is None and ended.data["total_ms"] == 35_000
    assert ended.data["ended_between"] == [
        datetime.fromtimestamp(T0, UTC).isoformat(),
        now.isoformat(),
    ]
    assert adopted.call_id == new.uniqueid and adopted.data["recovered"] is True
    assert adopted.occurred_at == datetime.fromtimestamp(T0 + 30, UTC)  # from Duration 00:00:05
    assert adopted.event_id.endswith(":call.started:1")  # the key it would have had
    assert set(state.calls) == {kept.uniqueid, new.uniqueid}
    assert reconcile(state, listed, begin_resync(state), at=now) == []  # nothing new


def test_reconcile_never_adopts_a_call_that_just_ended() -> None:
    switch = Switch()
    ch = switch.inbound("+15551230013")
    listed = [AmiEvent(tuple(row)) for row in switch.core_show_channels("a")]
    switch.hangup(ch)
    state = BridgeState()
    run(switch.take_events(), state)  # seen start and end, then the (older) list
    assert reconcile(state, listed, begin_resync(state), at=RECEIVED) == []


def test_values_are_made_to_fit_the_timeline() -> None:
    """Free text from the dialplan cannot make a batch the database refuses for ever."""
    switch = Switch(prefix="x" * 180)  # longer than Asterisk's 150: a custom system name
    ch = switch.inbound("+15551230014")
    switch.routed(ch, "b" * 100, "queue:\x00billing")
    events = switch.take_events()
    out = run(events)
    assert all(len(e.event_id) <= 200 and ":sha1-" in e.event_id for e in out)
    assert [e.event_id for e in run(events)] == [e.event_id for e in out]  # still stable
    assert out[1].intent == "b" * 64
    assert out[1].data["target"] == "queue:billing"

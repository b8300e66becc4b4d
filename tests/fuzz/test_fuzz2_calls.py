"""Second-round property tests: the call-event bridge's normalisers and resync.

AMI and ESL events in any order, with arbitrary header values, never make ``normalise`` /
``normalise_esl`` raise, and everything they emit goes through the outbox and the bus:
``to_bus_json`` works, equals ``encode_event``'s text, decodes back (``decode_event``,
``from_bus``), and every changed ``CallState`` survives ``to_json`` / ``from_json``.
``show channels as json`` output: ``parse_channels`` raises only ``ValueError``, and what
``reconcile_channels`` makes of the rows serialises the same way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from crm_bridge.bus.model import decode_event, encode_event
from crm_bridge.calls.esl_normalise import normalise_esl
from crm_bridge.calls.esl_resync import parse_channels, reconcile_channels
from crm_bridge.calls.model import NormalisedEvent
from crm_bridge.calls.normalise import normalise
from crm_bridge.calls.state import BridgeState, CallState, NormaliserConfig
from ivr_engine.telephony.ami import AmiEvent
from ivr_engine.telephony.esl import EslEvent

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_IDS = ["1.1", "1.2", "1.3", "2.1", ""]
_odd = st.sampled_from(
    ["", " ", "²", "٣", "-1", "0", "1e999", "nan", "inf", "99999999999999999999", "1714564800",
     "1714564800.5", "1714564800000000", "6", "16", "Up", "ANSWER", "answer", "BUSY", "x" * 300,
     "\x00", "\u2028", "İ", "+14155550100", "4155550100", "from-trunk", "ivr-main", "public",
     "inbound", "outbound", "a,b,,c", "IvrRouted", "IvrAgentDial", "IvrFallback",
     "IvrOverflow", "ivr_engine::routed", "ivr_engine::agent_dial", "ivr_engine::overflow",
     "ivr_engine::fallback", "b1", "b2", "billing", "NORMAL_CLEARING"]
)  # fmt: skip
_value = st.one_of(st.sampled_from(_IDS), _odd, st.text(max_size=12))

_AMI_NAMES = [
    "Newchannel",
    "Newstate",
    "UserEvent",
    "DialBegin",
    "DialEnd",
    "BridgeEnter",
    "BridgeLeave",
    "Hold",
    "Unhold",
    "Hangup",
    "hangup",
    "FullyBooted",
    "Other",
]
_AMI_HEADERS = ["Uniqueid", "Linkedid", "Context", "Channel", "CallerIDNum", "CallerIDName",
                "Exten", "ChannelState", "UserEvent", "DestUniqueid", "DestChannel",
                "DialString", "DialStatus", "BridgeUniqueid", "MusicClass", "Cause",
                "Cause-txt", "Timestamp", "Target", "Decision", "Outcome", "AgiStatus",
                "Agent", "Customer", "Tried", "Intent"]  # fmt: skip
_ESL_NAMES = [
    "CHANNEL_CREATE",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_HOLD",
    "CHANNEL_UNHOLD",
    "CHANNEL_HANGUP_COMPLETE",
    "CUSTOM",
    "HEARTBEAT",
]
_ESL_HEADERS = ["Unique-ID", "Channel-Call-UUID", "Other-Leg-Unique-ID", "Call-Direction",
                "Caller-Context", "Channel-Name", "Caller-Caller-ID-Number",
                "Caller-Caller-ID-Name", "Caller-Destination-Number", "Event-Date-Timestamp",
                "Event-Subclass", "Hangup-Cause", "variable_hangup_cause_q850",
                "variable_call_uuid", "variable_IVR_AGENT_ID", "Other-Leg-Channel-Name",
                "Target", "Decision", "Outcome", "Agent", "Customer", "Tried", "Intent",
                "Caller", "variable_ivr_engine_intent"]  # fmt: skip


def _headers(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(names), _value, max_size=8)


_id = st.sampled_from(_IDS[:4])
_ctx = st.sampled_from(["from-trunk", "public", "other"])
# most events name calls of a small pool consistently, so handlers see each other's state
_ami_base = st.fixed_dictionaries(
    {"Uniqueid": _id, "Linkedid": st.sampled_from(["1.1", "2.1", "1.2"]), "Context": _ctx,
     "DestUniqueid": _id,
     "BridgeUniqueid": st.sampled_from(["b1", "b2"]),
     "ChannelState": st.sampled_from(["6", "4"]),
     "DialStatus": st.sampled_from(["ANSWER", "BUSY"]),
     "UserEvent": st.sampled_from(["IvrRouted", "IvrAgentDial", "IvrFallback", "IvrOverflow"])}
)  # fmt: skip
_esl_base = st.fixed_dictionaries(
    {"Unique-ID": _id, "Channel-Call-UUID": _id, "Other-Leg-Unique-ID": _id,
     "Call-Direction": st.sampled_from(["inbound", "outbound"]), "Caller-Context": _ctx,
     "Event-Subclass": st.sampled_from(["ivr_engine::routed", "ivr_engine::agent_dial",
                                        "ivr_engine::overflow", "ivr_engine::fallback"])}
)  # fmt: skip


def _merged(
    base: st.SearchStrategy[dict[str, str]], names: list[str]
) -> st.SearchStrategy[dict[str, str]]:
    return st.builds(lambda b, h: {**b, **h}, base, _headers(names))


def _check_out(
    events: list[NormalisedEvent], state: BridgeState, seen: dict[str, int] | None = None
) -> None:
    """``seen``: event ids so far → none may repeat (consumers dedupe on them); per call,
    ``seq`` only grows."""
    seen = {} if seen is None else seen
    for event in events:
        assert event.event_id not in seen, event.event_id
        seen[event.event_id] = event.seq
        last = seen.get("#" + event.call_id, 0)
        assert event.seq > last, (event, last)
        seen["#" + event.call_id] = event.seq
        text = event.to_bus_json()
        assert text == encode_event(event.to_bus())[1]
        doc = decode_event(text)
        assert NormalisedEvent.from_bus(doc).event_id == event.event_id
        event.timeline_row("c1")
    for call in state.take_changes().saved:
        again = CallState.from_json(call.to_json())
        assert again.call_id == call.call_id


def _state() -> BridgeState:
    return BridgeState(NormaliserConfig(source="pbx1", inbound_contexts=("from-trunk", "public")))


_AMI_EVENTS = st.lists(
    st.tuples(st.sampled_from(_AMI_NAMES), _merged(_ami_base, _AMI_HEADERS)), max_size=30
)
_ESL_EVENTS = st.lists(
    st.tuples(st.sampled_from(_ESL_NAMES), _merged(_esl_base, _ESL_HEADERS)), max_size=30
)
_STEPS = st.lists(st.integers(-5, 10**6), min_size=30, max_size=30)


@given(_AMI_EVENTS, _STEPS)
def test_ami_events_in_any_order_normalise_and_serialise(
    events: list[tuple[str, dict[str, str]]], steps: list[int]
) -> None:
    state, seen = _state(), dict[str, int]()
    at = AT
    starts = [("Newchannel", {"Uniqueid": c, "Linkedid": c, "Context": "from-trunk"})
              for c in ("1.1", "2.1")]  # fmt: skip
    for (name, headers), step in zip([*starts, *events], [0, 0, *steps], strict=False):
        at += timedelta(milliseconds=step)  # the receive clock may even step back
        event = AmiEvent((("Event", name), *headers.items()))
        _check_out(normalise(event, state, at=at), state, seen)


@given(_ESL_EVENTS, _STEPS)
def test_esl_events_in_any_order_normalise_and_serialise(
    events: list[tuple[str, dict[str, str]]], steps: list[int]
) -> None:
    state, seen = _state(), dict[str, int]()
    at = AT
    starts = [("CHANNEL_CREATE", {"Unique-ID": c, "Call-Direction": "inbound",
                                  "Caller-Context": "public"}) for c in ("1.1", "2.1")]  # fmt: skip
    for (name, headers), step in zip([*starts, *events], [0, 0, *steps], strict=False):
        at += timedelta(milliseconds=step)
        event = EslEvent({"Event-Name": name, **headers})
        _check_out(normalise_esl(event, state, at=at), state, seen)


_ROW_KEYS = ["uuid", "call_uuid", "direction", "state", "callstate", "created_epoch", "name",
             "cid_num", "cid_name", "dest", "context", "initial_context", "initial_cid_name",
             "initial_cid_num", "initial_dest", "presence_data"]  # fmt: skip
_json_value = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _value,
                        st.lists(st.integers(), max_size=2))  # fmt: skip


@given(st.lists(st.dictionaries(st.sampled_from(_ROW_KEYS), _json_value, max_size=10),
                max_size=4),
       st.booleans())  # fmt: skip
def test_channel_list_rows_adopt_and_serialise(rows: list[dict[str, object]], lie: bool) -> None:
    for row in rows:  # make adoption likely
        row.setdefault("uuid", "1.1")
        row.setdefault("direction", "inbound")
        row.setdefault("initial_context", "public")
    output = json.dumps({"row_count": len(rows) + lie, "rows": rows})
    try:
        parsed = parse_channels(output)
    except ValueError:
        assert lie
        return
    state = _state()
    _check_out(reconcile_channels(state, parsed, [], at=AT), state)


# A JSON ``\\ud800`` escape is valid JSON and ``json.loads`` gives a lone surrogate, which
# orjson (to_bus_json, to_json, timeline_row) refused to write: the reader used to stop.
def test_channel_list_with_an_escaped_lone_surrogate_is_refused_or_serialises() -> None:
    output = (
        '{"row_count":1,"rows":[{"uuid":"u1","direction":"inbound",'
        '"initial_context":"public","cid_name":"\\ud800"}]}'
    )
    try:
        rows = parse_channels(output)
    except ValueError:
        return
    state = _state()
    _check_out(reconcile_channels(state, rows, [], at=AT), state)

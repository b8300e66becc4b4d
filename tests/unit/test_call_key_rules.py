"""The call's timeline identity: a key per call, replays told from collisions (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from ivr_engine.flows.call_identity import fresh_event_id, resolve_stored, same_event
from ivr_engine.flows.call_record import (
    EVENT_ID_MAX,
    CallRecord,
    CallWrite,
    IncomingCall,
    to_write,
)
from ivr_engine.ports import NewTimelineEvent, StoredCallEvent

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def write(event_id: str, caller: str = "PJSIP/a", customer: str | None = None) -> CallWrite:
    data = {"outcome": "routed", "channel_name": caller, "ms": 1.5}
    event = NewTimelineEvent(
        event_id, customer or "", NOW, "voice", "call.ivr", "billing", None, data
    )
    return CallWrite(customer, "+15550100001", (event,), ())


def stored(w: CallWrite, customer: str = "c-1") -> StoredCallEvent:
    e = w.events[0]
    return StoredCallEvent(customer, e.occurred_at, e.channel, e.event_type, e.intent,
                           e.case_id, dict(e.data))  # fmt: skip


def test_each_call_gets_its_own_key_and_keeps_it() -> None:
    a = IncomingCall("1700000100.1", "+1", "PJSIP/a", "main", NOW)
    b = IncomingCall("1700000100.1", "+1", "PJSIP/a", "main", NOW)
    assert a.call_key != b.call_key and a.call_key.startswith("1700000100.1~")
    record = CallRecord(a)
    assert to_write(record).events == to_write(record).events  # the same on every write
    assert to_write(record).events[0].data["call_id"] == "1700000100.1"


def test_a_long_call_id_keeps_its_nonce_in_the_digest() -> None:
    a = IncomingCall("x" * 300, None, "", "main", NOW)
    b = IncomingCall("x" * 300, None, "", "main", NOW)
    ids = {to_write(CallRecord(c)).events[0].event_id for c in (a, b)}
    assert len(ids) == 2 and all(len(i) <= EVENT_ID_MAX for i in ids)


def test_same_event_ignores_the_customer_and_the_time_zone() -> None:
    w = write("voice:1.1:ivr")
    copy = stored(w, "merged-into")._replace(
        occurred_at=NOW.astimezone(timezone(timedelta(hours=2)))
    )
    assert same_event(w.events[0], copy)
    assert not same_event(w.events[0], stored(write("voice:1.1:ivr", "PJSIP/b")))


def test_fresh_event_ids_fit_and_differ() -> None:
    long = "voice:" + "y" * 190 + ":ivr"
    ids = {fresh_event_id(long) for _ in range(3)}
    assert len(ids) == 3 and all(len(i) <= EVENT_ID_MAX and i.endswith(":ivr") for i in ids)
    assert fresh_event_id("voice:1.1:ivr").startswith("voice:1.1~r")


def test_a_replay_goes_to_the_customer_that_has_it() -> None:
    w = write("voice:1.1~ab:ivr")
    resolved = resolve_stored([w], {"voice:1.1~ab:ivr": stored(w, "c-9")})
    assert resolved.collisions == []
    assert resolved.writes == [CallWrite("c-9", w.phone, w.events, w.fields)]


def test_another_calls_id_is_rekeyed_in_the_store_and_in_the_batch() -> None:
    first, second, third = write("voice:1.1:ivr"), write("voice:1.1:ivr", "PJSIP/b"), write("x:1")
    resolved = resolve_stored([second, first, first, third], {"voice:1.1:ivr": stored(first)})
    fresh = resolved.writes[0].events[0].event_id
    assert fresh != "voice:1.1:ivr" and resolved.collisions == [("voice:1.1:ivr", fresh)]
    assert resolved.writes[0].customer_id is None  # found by phone: a new customer's key
    assert [w.customer_id for w in resolved.writes[1:3]] == ["c-1", "c-1"]  # replays
    assert resolved.writes[3] == third
    other = write("voice:2.2:ivr", "PJSIP/b")
    clash = resolve_stored([write("voice:2.2:ivr"), other], {})  # both spooled, one id
    assert clash.writes[0].events[0].event_id == "voice:2.2:ivr"
    assert clash.writes[1].events[0].event_id != "voice:2.2:ivr" and len(clash.collisions) == 1

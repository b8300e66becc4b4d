"""The spool replay and the call's timeline identity (real recorder, real writer; SQLite and
PostgreSQL): a replay of the same record stays idempotent (its key is in the line, chosen
when the call started); spool lines of the older format (``voice:<uniqueid>:ivr``) replay
as they are, and one whose event id holds ANOTHER call (two PBXs without their own
``systemname``) is logged and stored under a fresh key, never on the other caller."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from ivr_engine.flows.call_record import CallRecord, to_write
from ivr_engine.flows.recorder import SPOOL_FILE, CallRecorder
from ivr_engine.flows.spool_lines import write_to_json
from ivr_engine.ports import Customer, Identity
from ivr_engine.timeline import Timeline
from tests.component.recorder_support import record

OLD_ID = "voice:1700000100.1:ivr"  # how an older version keyed every call with this uniqueid


def caller(phone: str, postcode: str | None = None) -> CallRecord:
    rec = record(phone, call_id="1700000100.1")
    if postcode is not None:
        rec.entered = {"postcode": postcode}
    return rec


def line(rec: CallRecord, event_id: str | None = None) -> str:
    """The record's spool line; ``event_id``: as an older version wrote it."""
    raw = json.loads(write_to_json(to_write(rec)))
    if event_id is not None:
        raw["events"][0]["event_id"] = event_id
    return json.dumps(raw)


def write_spool(spool_dir: Path, lines: list[str]) -> None:
    spool_dir.mkdir(exist_ok=True)
    (spool_dir / SPOOL_FILE).write_text("".join(f"{t}\n" for t in lines))


async def replay(timeline: Timeline, spool_dir: Path, lines: list[str]) -> None:
    write_spool(spool_dir, lines)
    recorder = CallRecorder(timeline.store, spool_dir, fast=timeline.writer)
    try:
        assert await recorder.replay_spool() == len(lines)
    finally:
        await recorder.close()
    assert not spooled(spool_dir)


def spooled(spool_dir: Path) -> bool:
    return (spool_dir / SPOOL_FILE).exists()


async def only_customer(timeline: Timeline, phone: str) -> Customer:
    [customer] = await timeline.store.find_customers(Identity("phone", phone))
    return customer


async def call_events(timeline: Timeline, customer: Customer) -> list[str]:
    page = await timeline.store.timeline(customer.customer_id)
    return [e.event_id for e in page.events if e.event_type == "call.ivr"]


async def test_a_replay_of_the_same_record_stores_it_once(
    timeline: Timeline, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """The spool holds a call already written (a write that timed out after its commit),
    twice: one event, one customer, the field once."""
    phone = new_phone()
    spooled = line(caller(phone, "1234"))
    for _ in range(2):
        await replay(timeline, tmp_path / "spool", [spooled, spooled])
    customer = await only_customer(timeline, phone)
    [event_id] = await call_events(timeline, customer)
    assert event_id == json.loads(spooled)["events"][0]["event_id"]
    assert event_id.startswith("voice:1700000100.1~")
    assert customer.known_fields["postcode"].value == "1234"


async def test_an_old_format_line_already_written_is_not_written_again(
    timeline: Timeline, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    spooled = line(caller(phone), OLD_ID.replace(".1:", f".1-{phone}:"))
    await replay(timeline, tmp_path / "spool", [spooled])
    await replay(timeline, tmp_path / "spool", [spooled])
    customer = await only_customer(timeline, phone)
    assert await call_events(timeline, customer) == [OLD_ID.replace(".1:", f".1-{phone}:")]


async def test_old_format_lines_of_two_callers_with_one_uniqueid_stay_two_callers(
    timeline: Timeline,
    tmp_path: Path,
    new_phone: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Both spooled by an older version while the database was down, replayed together;
    then a third one arrives under the same id, once the first is stored."""
    first, second, third = new_phone(), new_phone(), new_phone()
    event_id = OLD_ID.replace(".1:", f".1-{first}:")  # unique to this test's database use
    lines = [line(caller(first), event_id), line(caller(second, "1234"), event_id)]
    with caplog.at_level(logging.ERROR):
        await replay(timeline, tmp_path / "spool", lines)
        await replay(timeline, tmp_path / "spool", [line(caller(third, "5678"), event_id)])
    a, b, c = [await only_customer(timeline, p) for p in (first, second, third)]
    assert len({a.customer_id, b.customer_id, c.customer_id}) == 3
    for customer, phone in ((a, first), (b, second), (c, third)):
        assert [i.value for i in customer.identities] == [phone]
    assert "postcode" not in a.known_fields
    assert b.known_fields["postcode"].value == "1234"
    assert c.known_fields["postcode"].value == "5678"
    assert await call_events(timeline, a) == [event_id]
    for customer in (b, c):
        [fresh] = await call_events(timeline, customer)
        assert fresh != event_id and fresh.endswith(":ivr")
    collisions = [r for r in caplog.records if "is another call's" in r.getMessage()]
    assert len(collisions) == 2

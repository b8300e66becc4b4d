"""A first-time caller with a withheld (or shared) number whose event write failed after
their customer was made: the retry (a replay) finds that customer again instead of making
a second one with no event (real SQLite and PostgreSQL). The new customer's id derives
from the call's event id and is inserted only if absent."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ivr_engine.flows.call_record import to_write
from ivr_engine.flows.call_writer import CallBatchWriter
from ivr_engine.ports import Identity
from ivr_engine.timeline import FastCallWriter, Timeline
from tests.component.recorder_support import DOWN, Switchable, count, event_ids, record


async def test_a_retried_new_caller_gets_one_customer(
    timeline: Timeline, database_url: str, new_phone: Callable[[], str]
) -> None:
    shared = new_phone()
    for name in ("Ann", "Ben"):  # two customers share this number: a new one is made
        await timeline.store.create_customer(name, [Identity("phone", shared)])
    tag = uuid.uuid4().hex[:8]
    calls = [
        to_write(record(None, call_id=f"{tag}-withheld")),
        to_write(record(shared, f"{tag}-s")),
    ]
    real = FastCallWriter(database_url)
    writer = Switchable(real)
    batch = CallBatchWriter(None, writer, write_timeout_s=5)  # type: ignore[arg-type]
    before = await count(database_url, "customers")
    try:
        writer.fail_writes = DOWN  # customers made, then the event write fails
        failed, rejected = await batch.write(calls)
        assert (len(failed), rejected) == (2, [])
        writer.fail_writes = None
        assert await batch.write(failed) == ([], [])  # the replay
    finally:
        await real.close()
    assert await count(database_url, "customers") == before + 2  # not + 4
    assert sum(tag in e for e in await event_ids(database_url)) == 2

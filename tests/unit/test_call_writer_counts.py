"""``CallBatchWriter.written`` counts each call once: a batch whose known callers were
committed before its first-time callers' part was refused is retried one call at a time
(the committed calls again: idempotent writes), and was counted twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from ivr_engine.domain.errors import TimelineDataRejected
from ivr_engine.flows.call_record import CallWrite
from ivr_engine.flows.call_writer import CallBatchWriter
from ivr_engine.ports import CustomerWrite, NewTimelineEvent

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def call(name: str, customer_id: str | None) -> CallWrite:
    event = NewTimelineEvent(
        f"voice:{name}:ivr", customer_id or "", NOW, "voice", "x", None, None, {}
    )
    return CallWrite(customer_id, "+15550000001", (event,), ())


class RefusesOneCall:
    """Stands for a database that stores every call but ``voice:bad:ivr`` (refused data)."""

    def __init__(self) -> None:
        self.stored: set[str] = set()

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        ids = {e.event_id for w in batch for e in w.events}
        if "voice:bad:ivr" in ids:
            raise TimelineDataRejected("refused: value too long")
        self.stored |= ids
        return set()

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        return {}

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]:
        return ["new"] * len(phones)


async def test_a_partly_committed_refused_batch_counts_each_written_call_once() -> None:
    database = RefusesOneCall()
    writer = CallBatchWriter(None, database, 1.0)  # type: ignore[arg-type]
    result = await writer.write([call("k1", "c1"), call("k2", "c1"), call("bad", None)])
    assert [w.events[0].event_id for w in result.rejected] == ["voice:bad:ivr"]
    assert result.failed == []
    assert database.stored == {"voice:k1:ivr", "voice:k2:ivr"}
    assert writer.written == 2

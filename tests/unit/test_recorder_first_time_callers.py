"""The engine's recorder (a store AND the raw writer): first-time callers of a batch are
stored through the writer's directory together (one owners query, one creation), not one
by one through the SQLAlchemy store, whose ~4 ms of event-loop CPU each held up the calls
arriving meanwhile. Same customers as the store's rules give."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr_engine.flows.call_record import CallRecord
from ivr_engine.flows.recorder import CallRecorder
from tests.unit.test_classic_agi_recorder import FakeDirectory, record


class CountingDirectory(FakeDirectory):
    def __init__(self, owners: dict[str, list[str]] | None = None) -> None:
        super().__init__(owners)
        self.owner_queries: list[list[str]] = []
        self.creations: list[list[str | None]] = []

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        self.owner_queries.append(list(phones))
        return await super().phone_owners(phones)

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]:
        self.creations.append(list(phones))
        return await super().create_customers(phones, keys)


class UnusedStore:
    """Any use of the SQLAlchemy store is a test failure."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used ({name})")


async def one_batch(directory: CountingDirectory, spool: Path, *records: CallRecord) -> None:
    """Submitted before the recorder starts, so its first batch holds them all."""
    recorder = CallRecorder(UnusedStore(), spool, fast=directory, write_timeout_s=1)  # type: ignore[arg-type]
    for r in records:
        recorder.submit(r)
    await recorder.start()
    await recorder.close(grace_s=2)
    assert recorder.written == len(records) and recorder.spooled == 0


async def test_first_time_callers_go_through_the_directory_together(tmp_path: Path) -> None:
    directory = CountingDirectory({"+15550001": ["c1"], "+15550009": ["a", "b"]})
    await one_batch(
        directory,
        tmp_path,
        record("+15550001", "c1"),  # known: the plain write
        record("+15550002"),
        record("+15550003"),
        record("+15550002"),  # the same new number twice in the batch
        record("+15550001"),  # the lookup missed it (static menu): its one owner
        record("+15550009"),  # shared: a customer of its own, without identities
        record(None),  # withheld: the same
    )
    assert directory.owner_queries == [["+15550001", "+15550002", "+15550003", "+15550009"]]
    assert directory.creations == [["+15550002", "+15550003", "+15550002", None, None]]
    written = [w.customer_id for w in directory.written]
    (new2,), (new3,) = directory.owners["+15550002"], directory.owners["+15550003"]
    assert written[:3] == ["c1", new2, new3] and written[3:5] == [new2, "c1"]
    assert len(set(written[5:]) | {"a", "b", "c1", new2, new3}) == 7


async def test_a_customer_gone_since_the_call_joins_the_batch_by_phone(tmp_path: Path) -> None:
    directory = CountingDirectory()
    await one_batch(directory, tmp_path, record("+15550005", "deleted"), record("+15550006"))
    assert directory.creations == [["+15550005", "+15550006"]]
    assert [w.customer_id for w in directory.written] == [
        *directory.owners["+15550005"],
        *directory.owners["+15550006"],
    ]

"""The recorder without a store (the classic AGI script: no SQLAlchemy): first-time callers
are found and created through the raw writer's directory, by the store's rules, and a call
that cannot be written is spooled and written later."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.flows.call_record import CallRecord, IncomingCall
from ivr_engine.flows.recorder import SPOOL_FILE, CallRecorder
from ivr_engine.ports import CustomerWrite


class FakeDirectory:
    """``FastCallWriter``'s write / phone_owners / create_customers over dicts."""

    def __init__(self, owners: dict[str, list[str]] | None = None) -> None:
        self.owners = owners or {}
        self.customers = {c for ids in self.owners.values() for c in ids}
        self.written: list[CustomerWrite] = []
        self.created: list[str | None] = []
        self.down = False

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        self._check()
        self.written += [w for w in batch if w.customer_id in self.customers]
        return {w.customer_id for w in batch} - self.customers

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        self._check()
        return {p: sorted(self.owners[p]) for p in phones if p in self.owners}

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]:
        self._check()
        ids = []
        for phone in phones:
            self.created.append(phone)
            found = self.owners.get(phone, []) if phone else []
            customer_id = found[0] if len(found) == 1 else str(uuid.uuid4())
            self.customers.add(customer_id)
            if phone and not found:
                self.owners[phone] = [customer_id]
            ids.append(customer_id)
        return ids

    def _check(self) -> None:
        if self.down:
            raise TimelineUnavailable("down")


def record(caller: str | None, customer_id: str | None = None) -> CallRecord:
    call = IncomingCall(str(uuid.uuid4()), caller, "PJSIP/x", "main", datetime.now(UTC))
    return CallRecord(call, phone=caller, customer_id=customer_id, intent="billing")


async def recorded(directory: FakeDirectory, spool: Path, *records: CallRecord) -> CallRecorder:
    recorder = CallRecorder(None, spool, fast=directory, write_timeout_s=1)
    await recorder.start()
    for r in records:
        recorder.submit(r)
    await recorder.close(grace_s=2)
    return recorder


async def test_known_customer_is_written_without_directory_lookups(tmp_path: Path) -> None:
    directory = FakeDirectory({"+15550001": ["c1"]})
    await recorded(directory, tmp_path, record("+15550001", "c1"))
    assert [w.customer_id for w in directory.written] == ["c1"]
    assert directory.created == []


async def test_new_number_gets_a_customer_owning_it(tmp_path: Path) -> None:
    directory = FakeDirectory()
    recorder = await recorded(directory, tmp_path, record("+15550002"))
    assert directory.created == ["+15550002"]
    (owner,) = directory.owners["+15550002"]
    assert [w.customer_id for w in directory.written] == [owner]
    assert recorder.written == 1


async def test_the_one_owner_of_a_number_gets_the_call(tmp_path: Path) -> None:
    directory = FakeDirectory({"+15550003": ["c3"]})
    await recorded(directory, tmp_path, record("+15550003"))  # lookup missed it (static menu)
    assert [w.customer_id for w in directory.written] == ["c3"]
    assert directory.created == []


@pytest.mark.parametrize(("caller", "owners"), [("+15550004", ["a", "b"]), (None, [])])
async def test_shared_or_withheld_number_gets_a_customer_without_identities(
    tmp_path: Path, caller: str | None, owners: list[str]
) -> None:
    directory = FakeDirectory({caller: owners} if caller else {})
    await recorded(directory, tmp_path, record(caller))
    assert directory.created == [None]
    assert directory.written[0].customer_id not in owners


async def test_a_customer_gone_since_the_call_is_stored_by_phone(tmp_path: Path) -> None:
    directory = FakeDirectory()
    await recorded(directory, tmp_path, record("+15550005", "deleted"))
    assert directory.created == ["+15550005"]
    assert [w.customer_id for w in directory.written] == directory.owners["+15550005"]


async def test_database_down_spools_and_the_next_process_writes_it(tmp_path: Path) -> None:
    directory = FakeDirectory()
    directory.down = True
    first = await recorded(directory, tmp_path, record("+15550006"))
    assert first.spooled == 1 and "+15550006" in (tmp_path / SPOOL_FILE).read_text()
    directory.down = False
    await recorded(directory, tmp_path, record("+15550007"))  # the next call's process
    written = [w.customer_id for w in directory.written]
    assert written == directory.owners["+15550006"] + directory.owners["+15550007"]
    assert not (tmp_path / SPOOL_FILE).exists()


def test_without_a_store_the_writer_must_create_customers(tmp_path: Path) -> None:
    class WriteOnly:
        async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
            return set()

    with pytest.raises(TypeError, match="create customers"):
        CallRecorder(None, tmp_path, fast=WriteOnly())

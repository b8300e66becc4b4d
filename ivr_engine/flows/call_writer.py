"""Writes a batch of recorded calls to the timeline, each call the cheapest way it allows.

Calls of known customers go through the raw-driver ``fast`` writer. First-time callers
(and customers gone since the call) go through the writer's own customer directory when it
has one (``FastCallWriter``), a batch at a time with the store's rules: one query for who
owns their numbers, one transaction creating the customers needed, one write
(``customers_by_phone``). Through the SQLAlchemy ``store`` (``store_call``) each of them
cost ~4 ms of event-loop CPU in a handful of statements, during which the calls arriving
waited for their decision; the store is used only with a writer that has no directory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from ivr_engine.domain.errors import IvrEngineError, TimelineDataRejected
from ivr_engine.flows.call_customers import (
    CustomerDirectory,
    FastWriter,
    customers_by_phone,
    store_call,
)
from ivr_engine.flows.call_identity import resolve_stored
from ivr_engine.flows.call_record import CallWrite
from ivr_engine.ports import (
    ConversationReader,
    CustomerWrite,
    StoredCallEvent,
    TimelineStore,
)

log = logging.getLogger(__name__)
UNAVAILABLE = (TimeoutError, IvrEngineError, OSError)  # but TimelineDataRejected: the data


@runtime_checkable
class StoredEvents(Protocol):
    """A writer that reads back stored events by id (``FastCallWriter``)."""

    async def stored_events(self, event_ids: Sequence[str]) -> dict[str, StoredCallEvent]: ...


class Written(NamedTuple):
    """What became of a batch: the calls to spool (the timeline is down or slow) and the
    calls the database refuses (``rejected``: retrying them would fail for ever)."""

    failed: list[CallWrite]
    rejected: list[CallWrite]


class CallBatchWriter:
    """Writes batches of calls within ``write_timeout_s``; hands back the calls not written.

    ``store`` may be ``None`` only when ``fast`` is a ``CustomerDirectory``.

    A batch the database refuses for its data (``TimelineDataRejected``) or that fails in
    a way no database outage explains (a bug) is tried again one call at a time, so one
    odd call costs only itself: it is rejected, the others are written.
    """

    def __init__(
        self, store: TimelineStore | None, fast: FastWriter | None, write_timeout_s: float
    ) -> None:
        self._store = store
        self._directory = fast if isinstance(fast, CustomerDirectory) else None
        if store is None and self._directory is None:
            raise TypeError("without a store, `fast` must create customers (FastCallWriter)")
        self._fast = fast
        self._write_timeout_s = write_timeout_s
        self.written = 0

    async def write(self, batch: Sequence[CallWrite], *, replayed: bool = False) -> Written:
        """Write ``batch``; returns the writes that failed (to be spooled), in order, and
        those the database refused. ``replayed`` (calls from the spool): first look their
        event ids up, so a call already stored is written again on the customer that has
        it, and one whose event id holds another call (a spool line of an older version,
        keyed by the switch's uniqueid alone) is logged and stored under a fresh key."""
        written_before = self.written
        if replayed:
            try:
                async with asyncio.timeout(self._write_timeout_s):
                    batch = await self._resolve_stored(batch)
            except TimelineDataRejected:
                raise
            except UNAVAILABLE as exc:
                return Written(_Down(exc, batch).unwritten, [])
        try:
            return Written(await self._write(batch), [])
        except _Down as down:
            return Written(down.unwritten, [])
        except Exception as exc:  # the database refuses the data, or a bug
            if len(batch) > 1:
                log.warning("%d call(s) refused (%r); writing them one by one", len(batch), exc)
        self.written = written_before  # each call is counted once, by the writes below
        failed: list[CallWrite] = []
        rejected: list[CallWrite] = []
        for index, write in enumerate(batch):
            try:
                failed += await self._write([write])
            except _Down:
                failed += batch[index:]
                break
            except Exception as exc:
                ids = ", ".join(e.event_id for e in write.events)
                log.error("call %s rejected (%r): moved to the rejected calls", ids, exc)
                rejected.append(write)
        return Written(failed, rejected)

    async def _resolve_stored(self, batch: Sequence[CallWrite]) -> list[CallWrite]:
        ids = sorted({e.event_id for w in batch for e in w.events})
        stored = await self._stored_events(ids)
        resolved = resolve_stored(batch, stored)
        for taken, fresh in resolved.collisions:
            log.error(
                "call event %s is another call's on the timeline (a different call under the "
                "same switch id: give each PBX its own systemname); stored as %s",
                taken,
                fresh,
            )
        return resolved.writes

    async def _stored_events(self, ids: Sequence[str]) -> dict[str, StoredCallEvent]:
        if isinstance(self._fast, StoredEvents):
            return await self._fast.stored_events(ids)
        if not isinstance(self._store, ConversationReader):
            return {}  # a store that cannot read events back: written as before
        found: dict[str, StoredCallEvent] = {}
        for event_id in ids:  # a store without the raw writer: one look-up each
            event = await self._store.find_event(event_id)
            if event is not None:
                found[event_id] = StoredCallEvent(
                    event.customer_id, event.occurred_at, event.channel, event.event_type,
                    event.intent, event.case_id, event.data,
                )  # fmt: skip
        return found

    async def _write(self, batch: Sequence[CallWrite]) -> list[CallWrite]:
        """Calls whose customer is known go through the fast writer in one transaction; the
        rest (first-time callers, customers gone since the call) together through its
        directory, or one by one on the store when it has none. ``_Down`` when the timeline
        is down or slow (with the calls not written); any other error: the data."""
        pending = list(batch)
        if self._fast is not None:
            known = [w for w in pending if w.customer_id]
            if known:
                try:
                    async with asyncio.timeout(self._write_timeout_s):
                        missing = await self._fast.write(
                            [CustomerWrite(w.customer_id or "", w.events, w.fields) for w in known]
                        )
                except TimelineDataRejected:
                    raise
                except UNAVAILABLE as exc:
                    raise _Down(exc, pending) from exc
                self.written += len(known) - sum(w.customer_id in missing for w in known)
                for customer_id in missing:
                    log.warning("customer %s is gone; storing the call by phone", customer_id)
                pending = [w for w in pending if not w.customer_id or w.customer_id in missing]
        if pending and self._directory is not None:
            return await self._write_by_phone(self._directory, pending)
        for index, write in enumerate(pending):
            try:
                async with asyncio.timeout(self._write_timeout_s):
                    await self._store_call(write)
            except TimelineDataRejected:
                raise
            except UNAVAILABLE as exc:
                raise _Down(exc, pending[index:]) from exc
            self.written += 1
        return []

    async def _store_call(self, write: CallWrite) -> None:
        assert self._store is not None  # checked in __init__: no directory, so a store
        await store_call(self._store, write)

    async def _write_by_phone(
        self, directory: CustomerDirectory, pending: Sequence[CallWrite]
    ) -> list[CallWrite]:
        """Store calls by their caller's number, all at once; returns those to spool (a
        customer deleted between creation and write: that call)."""
        try:
            async with asyncio.timeout(self._write_timeout_s):
                customers = await customers_by_phone(
                    directory,
                    [w.phone for w in pending],
                    [w.events[0].event_id if w.events else None for w in pending],
                )
                missing = await directory.write(
                    [
                        CustomerWrite(customer_id, w.events, w.fields)
                        for customer_id, w in zip(customers, pending, strict=True)
                    ]
                )
        except TimelineDataRejected:
            raise
        except UNAVAILABLE as exc:
            raise _Down(exc, pending) from exc
        failed = [w for c, w in zip(customers, pending, strict=True) if c in missing]
        self.written += len(pending) - len(failed)
        return failed


class _Down(Exception):
    """The timeline is down or slow: ``unwritten`` are to be spooled (logged here)."""

    def __init__(self, exc: BaseException, unwritten: Sequence[CallWrite]) -> None:
        super().__init__(repr(exc))
        self.unwritten = list(unwritten)
        log.warning("timeline write failed (%r); spooling %d call(s)", exc, len(unwritten))

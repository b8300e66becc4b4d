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

from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.flows.call_customers import (
    CustomerDirectory,
    FastWriter,
    customers_by_phone,
    store_call,
)
from ivr_engine.flows.call_record import CallWrite
from ivr_engine.ports import CustomerWrite, TimelineStore

log = logging.getLogger(__name__)


class CallBatchWriter:
    """Writes batches of calls within ``write_timeout_s``; hands back the calls not written.

    ``store`` may be ``None`` only when ``fast`` is a ``CustomerDirectory``.
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

    async def write(self, batch: Sequence[CallWrite]) -> list[CallWrite]:
        """Write ``batch``; returns the writes that failed (to be spooled), in order.

        Calls whose customer is known go through the fast writer in one transaction; the
        rest (first-time callers, customers gone since the call) together through its
        directory, or one by one on the store when it has none.
        """
        pending = list(batch)
        if self._fast is not None:
            known = [w for w in pending if w.customer_id]
            if known:
                try:
                    async with asyncio.timeout(self._write_timeout_s):
                        missing = await self._fast.write(
                            [CustomerWrite(w.customer_id or "", w.events, w.fields) for w in known]
                        )
                except (TimeoutError, IvrEngineError, OSError) as exc:
                    log.warning("timeline write failed (%r); spooling %d call(s)", exc, len(batch))
                    return pending
                self.written += len(known) - sum(w.customer_id in missing for w in known)
                for customer_id in missing:
                    log.warning("customer %s is gone; storing the call by phone", customer_id)
                pending = [w for w in pending if not w.customer_id or w.customer_id in missing]
        if pending and self._directory is not None:
            return await self._write_by_phone(self._directory, pending)
        failed: list[CallWrite] = []
        for index, write in enumerate(pending):
            try:
                async with asyncio.timeout(self._write_timeout_s):
                    await self._store_call(write)
                self.written += 1
            except (TimeoutError, IvrEngineError, OSError) as exc:
                log.warning("timeline write failed (%r); spooling %d call(s)", exc, len(batch))
                failed.extend(pending[index:])
                break
        return failed

    async def _store_call(self, write: CallWrite) -> None:
        assert self._store is not None  # checked in __init__: no directory, so a store
        await store_call(self._store, write)

    async def _write_by_phone(
        self, directory: CustomerDirectory, pending: Sequence[CallWrite]
    ) -> list[CallWrite]:
        """Store calls by their caller's number, all at once; returns those to spool (all of
        them on a failure; a customer deleted between creation and write: that call)."""
        try:
            async with asyncio.timeout(self._write_timeout_s):
                customers = await customers_by_phone(directory, [w.phone for w in pending])
                missing = await directory.write(
                    [
                        CustomerWrite(customer_id, w.events, w.fields)
                        for customer_id, w in zip(customers, pending, strict=True)
                    ]
                )
        except (TimeoutError, IvrEngineError, OSError) as exc:
            log.warning("timeline write failed (%r); spooling %d call(s)", exc, len(pending))
            return list(pending)
        failed = [w for c, w in zip(customers, pending, strict=True) if c in missing]
        self.written += len(pending) - len(failed)
        return failed

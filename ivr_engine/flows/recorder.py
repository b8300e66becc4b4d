"""Writes finished calls to the timeline in the background, so routing never waits on SQL.

No call is lost: a write that fails (database down, slow) goes to a spool file of JSON
lines; the spool is replayed when the database answers again and on start-up. Writes are
idempotent (event ids derive from the call id), so a replay after a partial write is safe.

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
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ivr_engine.domain.errors import CustomerNotFound, IvrEngineError
from ivr_engine.domain.models import KnownField
from ivr_engine.flows.call_record import CallRecord, CallWrite, to_write
from ivr_engine.flows.spool_files import (
    REJECTED_FILE,
    REPLAY_FILE,
    REPLAY_LOCK_FILE,
    SPOOL_FILE,
    FileLock,
    append_text,
    append_to_spool,
    take_spool,
)
from ivr_engine.ports import CustomerWrite, Identity, NewTimelineEvent, TimelineStore

log = logging.getLogger(__name__)

__all__ = ["REJECTED_FILE", "SPOOL_FILE", "CallRecorder"]


def write_to_json(write: CallWrite) -> str:
    def encode(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        raise TypeError(f"cannot encode {type(value).__name__}")

    payload = {
        "customer_id": write.customer_id,
        "phone": write.phone,
        "events": [asdict(e) for e in write.events],
        "fields": [asdict(f) for f in write.fields],
    }
    return json.dumps(payload, default=encode, separators=(",", ":"))


def write_from_json(line: str) -> CallWrite:
    raw = json.loads(line)
    events = tuple(
        NewTimelineEvent(**{**e, "occurred_at": datetime.fromisoformat(e["occurred_at"])})
        for e in raw["events"]
    )
    fields = tuple(
        KnownField(**{**f, "updated_at": datetime.fromisoformat(f["updated_at"])})
        for f in raw["fields"]
    )
    return CallWrite(raw["customer_id"], raw["phone"], events, fields)


async def store_call(store: TimelineStore, write: CallWrite) -> None:
    """Resolve the customer and store the call's events and fields.

    A customer id that no longer exists (deleted since the call) falls back to finding the
    caller by phone, so the call is still stored rather than retried forever.
    """
    if write.customer_id:
        try:
            await _store_for(store, write, write.customer_id)
            return
        except CustomerNotFound:
            log.warning("customer %s is gone; storing the call by phone", write.customer_id)
    await _store_for(store, write, await _customer_for_phone(store, write.phone))


async def _store_for(store: TimelineStore, write: CallWrite, customer_id: str) -> None:
    await store.append_events([_with_customer(e, customer_id) for e in write.events])
    if write.fields:
        await store.save_known_fields(customer_id, write.fields)


async def _customer_for_phone(store: TimelineStore, phone: str | None) -> str:
    """The one customer owning ``phone``, or a new one.

    A number shared by several customers is not guessed at: the call goes to a new customer
    without identities (the event keeps the caller ID) for an agent to merge, so nothing is
    written onto the wrong person's timeline.
    """
    if phone is None:
        return (await store.create_customer(None, ())).customer_id
    identity = Identity("phone", phone)
    found = await store.find_customers(identity)
    if len(found) == 1:
        return found[0].customer_id
    if len(found) > 1:
        return (await store.create_customer(None, ())).customer_id
    return await store.create_customer_for_identity(identity)


def _with_customer(event: NewTimelineEvent, customer_id: str) -> NewTimelineEvent:
    return NewTimelineEvent(**{**asdict(event), "customer_id": customer_id})


class FastWriter(Protocol):
    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        """Store known customers' calls in one go; returns the customer ids not found."""
        ...


@runtime_checkable
class CustomerDirectory(FastWriter, Protocol):
    """A ``FastWriter`` that also finds and creates callers by phone (``FastCallWriter``)."""

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]: ...

    async def create_customers(self, phones: Sequence[str | None]) -> list[str]: ...


async def customers_by_phone(
    directory: CustomerDirectory, phones: Sequence[str | None]
) -> list[str]:
    """The customer of each caller by ``_customer_for_phone``'s rule, for a whole batch: the
    one owner of the number; a shared or withheld number → a new customer without
    identities (one each); an unknown number → a new customer owning it (one per number, or
    the one a concurrent call created a moment ago). One query, then one transaction."""
    wanted = sorted({p for p in phones if p is not None})
    owners = await directory.phone_owners(wanted) if wanted else {}
    found = {phone: ids[0] for phone, ids in owners.items() if len(ids) == 1}
    to_create = [p for p in phones if p is None or p not in found]
    created = iter(
        await directory.create_customers([p if p not in owners else None for p in to_create])
    )
    return [found[p] if p is not None and p in found else next(created) for p in phones]


class CallRecorder:
    """Bounded queue → one writer task → timeline; spool file while the timeline is down.

    First-time callers are stored through ``fast`` when it is a ``CustomerDirectory``
    (``FastCallWriter``), else through ``store``; ``store`` may be ``None`` only with such a
    writer (no SQLAlchemy on the classic AGI path).
    """

    def __init__(
        self,
        store: TimelineStore | None,
        spool_dir: Path,
        *,
        fast: FastWriter | None = None,
        queue_size: int = 10_000,
        write_timeout_s: float = 5.0,
        retry_interval_s: float = 5.0,
    ) -> None:
        self._store = store
        self._directory = fast if isinstance(fast, CustomerDirectory) else None
        if store is None and self._directory is None:
            raise TypeError("without a store, `fast` must create customers (FastCallWriter)")
        self._fast = fast
        self._spool = spool_dir / SPOOL_FILE
        self._queue: asyncio.Queue[CallWrite] = asyncio.Queue(queue_size)
        self._write_timeout_s = write_timeout_s
        self._retry_interval_s = retry_interval_s
        self._task: asyncio.Task[None] | None = None
        self._spool_lock = asyncio.Lock()
        # Whether the spool may hold calls this recorder appended: after a written batch no
        # file check (a blocking stat on the loop) is needed to know. What other processes
        # sharing the directory spool is taken by the replays at start and when idle.
        self._spool_may_hold = True
        self._overflow: list[CallWrite] = []
        self._in_flight: list[CallWrite] = []
        self._unspooled: list[CallWrite] = []  # failed writes the spool refused
        self._spool_broken = False
        self.written = 0
        self.spooled = 0

    def submit(self, record: CallRecord) -> None:
        write = to_write(record)
        try:
            self._queue.put_nowait(write)
        except asyncio.QueueFull:
            self._overflow.append(write)  # spooled by the worker; never dropped

    async def start(self) -> None:
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name="call-recorder")

    async def close(self, grace_s: float = 5.0) -> None:
        """Write what is queued (bounded by ``grace_s``); spool the rest."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        leftover = self._unspooled + self._in_flight + self._overflow + _drain(self._queue)
        if leftover:
            try:
                await self._append_spool(leftover)
            except OSError as exc:
                log.error(
                    "%d call(s) LOST: neither written nor spooled to %s (%r)",
                    len(leftover),
                    self._spool,
                    exc,
                )

    async def _run(self) -> None:
        await self._replay_logged()
        while True:
            try:
                async with asyncio.timeout(self._retry_interval_s):
                    write = await self._queue.get()
            except TimeoutError:
                if self._unspooled:  # idle: try them on the timeline again
                    await self._write_batch(())
                else:
                    await self._replay_logged()
                continue
            batch = [write, *_drain(self._queue)]
            self._in_flight = batch
            await self._write_batch(batch)
            self._in_flight = []
            for _ in batch:
                self._queue.task_done()

    async def _write_batch(self, batch: Sequence[CallWrite]) -> None:
        pending = [*self._unspooled, *batch] if self._unspooled else batch
        failed = await self._try_write(pending)
        self._unspooled = []  # in ``pending``: written, or in ``failed``
        if self._overflow:
            failed.extend(self._overflow)
            self._overflow.clear()
        if failed:
            await self._spool_or_keep(failed)
        elif self._spool_may_hold:
            await self._replay_logged()

    async def _spool_or_keep(self, writes: list[CallWrite]) -> None:
        """Spool ``writes``; when the spool cannot be written (disk full, read-only), keep
        them in memory: the next batch tries them on the timeline again."""
        try:
            await self._append_spool(writes)
        except OSError as exc:
            self._unspooled.extend(writes)
            self._note_spool_error(f"cannot spool {len(writes)} call(s) to {self._spool}", exc)
        else:
            self._spool_broken = False

    async def _replay_logged(self) -> None:
        """``replay_spool`` for the writer task: a spool it cannot read or lock is logged
        and tried again later, never the end of the task (every later call would be lost)."""
        try:
            await self.replay_spool()
        except OSError as exc:
            self._note_spool_error(f"cannot replay the spool {self._spool}", exc)
        else:
            self._spool_broken = False

    def _note_spool_error(self, what: str, exc: OSError) -> None:
        if not self._spool_broken:  # once per outage, not every retry interval
            log.error("%s (%r): calls are kept in memory and retried", what, exc)
        self._spool_broken = True

    async def _try_write(self, batch: Sequence[CallWrite]) -> list[CallWrite]:
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

    async def _append_spool(self, writes: Sequence[CallWrite]) -> None:
        lines = "".join(write_to_json(w) + "\n" for w in writes)
        async with self._spool_lock:
            self._spool_may_hold = True
            await asyncio.to_thread(_append_to_spool_dir, self._spool, lines)
        self.spooled += len(writes)

    async def replay_spool(self) -> int:
        """Write spooled calls; on the first failure keep the rest for later. Returns written
        (0 also when another process is replaying this spool directory right now)."""
        replaying = FileLock(self._spool.with_name(REPLAY_LOCK_FILE))
        acquiring = asyncio.ensure_future(asyncio.to_thread(_acquire_in_dir, replaying))
        try:
            acquired = await asyncio.shield(acquiring)
        except asyncio.CancelledError:  # the thread may still take it: give it back then
            acquiring.add_done_callback(lambda _: replaying.release())
            raise
        if not acquired:
            return 0
        try:
            return await self._replay()
        finally:
            replaying.release()

    async def _replay(self) -> int:
        async with self._spool_lock:
            text = await asyncio.to_thread(take_spool, self._spool)
            self._spool_may_hold = False  # all taken (appends wait for the lock, then set it)
        if not text:
            return 0
        pending, rejected = _parse_spool(text)
        if rejected:
            log.error("%d unreadable spool line(s) moved to %s", len(rejected), REJECTED_FILE)
            path = self._spool.with_name(REJECTED_FILE)
            await asyncio.to_thread(append_text, path, "".join(f"{r}\n" for r in rejected))
        failed = await self._try_write(pending)
        if failed:
            await self._spool_or_keep(failed)
        await asyncio.to_thread(self._spool.with_name(REPLAY_FILE).unlink, missing_ok=True)
        return len(pending) - len(failed)


def _parse_spool(text: str) -> tuple[list[CallWrite], list[str]]:
    parsed: list[CallWrite] = []
    rejected: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            parsed.append(write_from_json(line))
        except (ValueError, KeyError, TypeError):
            rejected.append(line)
    return parsed, rejected


def _append_to_spool_dir(spool: Path, text: str) -> None:
    """``append_to_spool``, re-creating the spool directory if it was removed meanwhile."""
    spool.parent.mkdir(parents=True, exist_ok=True)
    append_to_spool(spool, text)


def _acquire_in_dir(lock: FileLock) -> bool:
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    return lock.acquire(wait=False)


def _drain(queue: asyncio.Queue[CallWrite]) -> list[CallWrite]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items

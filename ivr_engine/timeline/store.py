"""``SqlTimelineStore``: the ``TimelineStore`` on SQLAlchemy 2.x async Core.

Not on the per-call path (see ``fast_lookup``). Reads are single statements without a
transaction on PostgreSQL; writes are explicit transactions. Events and fields written for
a customer that was merged away land on the surviving customer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr_engine.domain.models import KnownField
from ivr_engine.ports import (
    CaseEventHead,
    ConversationPage,
    Customer,
    Identity,
    NewTimelineEvent,
    StoredEvent,
    TimelinePage,
)
from ivr_engine.timeline import sql
from ivr_engine.timeline.account_identities import claim_accounts, saves_account
from ivr_engine.timeline.engine import create_engines
from ivr_engine.timeline.errors import CustomerNotFound, MergeRejected
from ivr_engine.timeline.schema import customers, identities, known_fields, timeline_events
from ivr_engine.timeline.urls import parse_database_url

MERGED_EVENT_TYPE = "customer.merged"
SYSTEM_CHANNEL = "system"
_TICK = timedelta(microseconds=1)  # both stores keep microseconds


def _now() -> datetime:
    return datetime.now(UTC)


class SqlTimelineStore:
    """Customers, identities, the event timeline and known fields (``TimelineStore``); also
    ``ConversationReader`` and ``EventAppender`` (``ivr_engine.ports``)."""

    def __init__(self, database_url: str, *, pool_size: int = 4) -> None:
        url = parse_database_url(database_url)
        self._db = create_engines(url, database_url, pool_size)
        self._dialect = url.dialect

    @property
    def dialect(self) -> str:
        return self._dialect

    async def close(self) -> None:
        await self._db.dispose()

    # ------------------------------------------------------------------ customers

    async def create_customer(
        self,
        display_name: str | None,
        identities: Sequence[Identity],
        fields: Sequence[KnownField] = (),
    ) -> Customer:
        customer_id = str(uuid.uuid4())
        async with self._db.writing() as conn:
            await sql.insert_customer(conn, customer_id, display_name, _now())
            await sql.insert_identities(conn, self._dialect, customer_id, identities)
            await self._save_fields(conn, customer_id, fields)
            return await self._load_one(conn, customer_id)

    async def create_customer_for_identity(self, identity: Identity) -> str:
        """A new customer owning ``identity``; if exactly one customer already owns it
        (a concurrent call created it a moment ago), that one is returned instead."""
        async with self._db.writing() as conn:
            return (await self._owner_or_new(conn, identity))[0]

    async def _owner_or_new(self, conn: AsyncConnection, identity: Identity) -> tuple[str, bool]:
        """The one owner of ``identity``, else a new customer owning it (and True), in the
        caller's write transaction."""
        if self._dialect == "postgresql":  # serialise creators of the same identity
            key = f"{identity.kind}\x1f{identity.value}"
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
        owners = await sql.owners_of(conn, identity, limit=2)
        if len(owners) == 1:
            return owners[0], False
        customer_id = str(uuid.uuid4())
        await sql.insert_customer(conn, customer_id, None, _now())
        await sql.insert_identities(conn, self._dialect, customer_id, [identity])
        return customer_id, True

    async def get_customer(self, customer_id: str) -> Customer | None:
        async with self._db.reading() as conn:
            return (await sql.load_customers(conn, [customer_id])).get(customer_id)

    async def update_customer(self, customer_id: str, display_name: str | None) -> Customer:
        async with self._db.writing() as conn:
            result = await conn.execute(
                update(customers)
                .where(customers.c.id == customer_id)
                .values(display_name=display_name, updated_at=_now())
            )
            if result.rowcount == 0:
                raise CustomerNotFound(customer_id)
            return await self._load_one(conn, customer_id)

    async def add_identity(self, customer_id: str, identity: Identity) -> Customer:
        async with self._db.writing() as conn:
            owner = (await sql.survivors(conn, self._dialect, [customer_id]))[customer_id]
            if await sql.insert_identities(conn, self._dialect, owner, [identity]):
                await sql.touch(conn, owner, _now())
            return await self._load_one(conn, owner)

    async def find_customers(self, identity: Identity) -> list[Customer]:
        async with self._db.reading() as conn:
            owners = await sql.owners_of(conn, identity)
            found = await sql.load_customers(conn, owners)
        return sorted(found.values(), key=lambda c: (c.created_at, c.customer_id))

    async def merge_customers(self, source_id: str, target_id: str, reason: str) -> Customer:
        """Move identities (deduplicated), events and known fields (newer wins) from source
        to target; the source keeps ``merged_into``; a ``customer.merged`` event records it."""
        if source_id == target_id:
            raise MergeRejected(f"cannot merge customer {source_id!r} into itself")
        now = _now()
        async with self._db.writing() as conn:
            merged_into = await sql.lock_customers(conn, self._dialect, [source_id, target_id])
            for cid in (source_id, target_id):
                if cid not in merged_into:
                    raise CustomerNotFound(cid)
                if merged_into[cid] is not None:
                    raise MergeRejected(
                        f"customer {cid!r} was already merged into {merged_into[cid]!r}"
                    )
            moved = await self._move_everything(conn, source_id, target_id)
            await conn.execute(sql.repoint_merged(source_id, target_id))  # chains: one hop
            await conn.execute(
                update(customers)
                .where(customers.c.id == source_id)
                .values(merged_into=target_id, updated_at=now)
            )
            await sql.touch(conn, target_id, now)
            audit = NewTimelineEvent(
                event_id=f"{MERGED_EVENT_TYPE}:{source_id}",
                customer_id=target_id,
                occurred_at=now,
                channel=SYSTEM_CHANNEL,
                event_type=MERGED_EVENT_TYPE,
                data={"source_customer_id": source_id, "reason": reason, **moved},
            )
            await sql.insert_events(conn, self._dialect, [audit], {target_id: target_id}, now)
            return await self._load_one(conn, target_id)

    async def _move_everything(
        self, conn: AsyncConnection, source_id: str, target_id: str
    ) -> dict[str, int]:
        theirs = identities.alias("theirs")
        duplicate = exists().where(
            theirs.c.customer_id == target_id,
            theirs.c.kind == identities.c.kind,
            theirs.c.value == identities.c.value,
        )
        await conn.execute(
            delete(identities).where(identities.c.customer_id == source_id, duplicate)
        )
        moved_identities = await conn.execute(
            update(identities)
            .where(identities.c.customer_id == source_id)
            .values(customer_id=target_id)
        )
        moved_events = await conn.execute(
            update(timeline_events)
            .where(timeline_events.c.customer_id == source_id)
            .values(customer_id=target_id)
        )
        fields = await sql.fields_of(conn, [source_id])
        await sql.upsert_fields(conn, self._dialect, target_id, fields.get(source_id, []))
        await conn.execute(delete(known_fields).where(known_fields.c.customer_id == source_id))
        return {
            "moved_identities": moved_identities.rowcount,
            "moved_events": moved_events.rowcount,
            "moved_fields": len(fields.get(source_id, [])),
        }

    # ------------------------------------------------------------------ timeline

    async def append_events(self, events: Sequence[NewTimelineEvent]) -> int:
        """Insert events, skipping stored ``event_id``s (also under concurrency)."""
        return len(await self.append_new_events(events))

    async def append_new_events(
        self, events: Sequence[NewTimelineEvent]
    ) -> tuple[StoredEvent, ...]:
        """``append_events``, returning the rows this call inserted (after the commit)."""
        if not events:
            return ()
        async with self._db.writing() as conn:
            owners = await sql.survivors(conn, self._dialect, {e.customer_id for e in events})
            rows = await sql.insert_events(conn, self._dialect, events, owners, _now())
        return tuple(stored_event(row) for row in rows)

    async def append_event_with_fields(
        self, event: NewTimelineEvent, fields: Sequence[KnownField]
    ) -> bool:
        """Insert ``event`` and, only if it was inserted, ``fields`` on the same (surviving)
        customer, in one transaction; the event keeps them as ``saved_fields`` ({name:
        value}), for replays to compare. False: the ``event_id`` was stored already
        (nothing is written)."""
        kept = {event.event_id: _by_name(fields)}
        async with self._db.writing() as conn:
            owners = await sql.survivors(conn, self._dialect, [event.customer_id])
            inserted = await sql.insert_events(conn, self._dialect, [event], owners, _now(), kept)
            if not inserted:
                return False
            await self._save_fields(conn, owners[event.customer_id], fields)
        return True

    async def append_event_for_identity(
        self,
        identity: Identity,
        event_for: Callable[[str], NewTimelineEvent],
        fields: Sequence[KnownField] | None = None,
    ) -> tuple[str, bool] | None:
        """Append ``event_for(customer_id)`` for the one owner of ``identity``, or for a new
        customer owning it, with ``fields`` (as ``append_event_with_fields``; None: none, and
        no ``saved_fields``, as ``append_events``): all in ONE transaction, so an event the
        database refuses leaves no empty customer behind. Returns (customer_id, created);
        None: the ``event_id`` is taken (nothing was written, no customer created)."""
        try:
            async with self._db.writing() as conn:
                customer_id, created = await self._owner_or_new(conn, identity)
                event = event_for(customer_id)
                kept = None if fields is None else {event.event_id: _by_name(fields)}
                owners = await sql.survivors(conn, self._dialect, [customer_id])
                if not await sql.insert_events(conn, self._dialect, [event], owners, _now(), kept):
                    raise _EventIdTaken  # roll the new customer back
                await self._save_fields(conn, owners[customer_id], fields or ())
        except _EventIdTaken:
            return None
        return customer_id, created

    # ------------------------------------------------------------------ cases (conversations)

    async def conversation(
        self, case_id: str, *, limit: int, after_seq: int | None
    ) -> ConversationPage:
        """Events of one case across customers and channels, oldest first (by ``seq``)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        async with self._db.reading() as conn:
            rows = await sql.case_page(conn, case_id, limit + 1, after_seq)
        page = tuple(stored_event(row) for row in rows[:limit])
        return ConversationPage(page, page[-1].seq if len(rows) > limit else None)

    async def case_heads(self, case_id: str) -> tuple[CaseEventHead, ...]:
        """The newest ``MAX_CASE_EVENTS`` events of the case, light; empty: no such case."""
        async with self._db.reading() as conn:
            rows = await sql.case_heads(conn, case_id)
        return tuple(CaseEventHead(*row) for row in rows)

    async def find_event(self, event_id: str) -> StoredEvent | None:
        async with self._db.reading() as conn:
            rows = await sql.events_by_id(conn, [event_id])
        return stored_event(rows[0]) if rows else None

    async def save_known_fields(self, customer_id: str, fields: Sequence[KnownField]) -> None:
        if not fields:
            return
        async with self._db.writing() as conn:
            owner = (await sql.survivors(conn, self._dialect, [customer_id]))[customer_id]
            await self._save_fields(conn, owner, fields)

    async def put_known_field(self, customer_id: str, field: KnownField) -> KnownField:
        """Save ``field`` over the stored one even if that is stamped later (a clock ahead
        wrote it): an explicit write is the newest word, so it is stamped just after the
        stored one then. Returns the field as stored (a concurrent later write may win)."""
        async with self._db.writing() as conn:
            owner = (await sql.survivors(conn, self._dialect, [customer_id]))[customer_id]
            before = await sql.field_of(conn, owner, field.name)
            if before is not None and before.updated_at >= field.updated_at:
                field = replace(field, updated_at=before.updated_at + _TICK)
            await self._save_fields(conn, owner, [field])
            stored = await sql.field_of(conn, owner, field.name)
        assert stored is not None  # just written, in this transaction
        return stored

    async def timeline(
        self, customer_id: str, *, limit: int = 50, before_seq: int | None = None
    ) -> TimelinePage:
        """Newest first by ``seq``; pages do not shift when new events arrive."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = sql.timeline_page_query(customer_id, limit + 1, before_seq)
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
            if not rows and not await sql.customer_exists(conn, customer_id):
                raise CustomerNotFound(customer_id)
        page = tuple(stored_event(row._mapping) for row in rows[:limit])
        return TimelinePage(page, page[-1].seq if len(rows) > limit else None)

    async def recent_events(
        self, customer_id: str, *, limit: int = 50, without_types: Collection[str] = ()
    ) -> tuple[StoredEvent, ...]:
        """The customer's newest events by when they happened (``occurred_at``, then
        ``seq``), as the per-call lookup reads them: what "recent history" means for the
        menu preview, the screen pop and the last-agent affinity. ``without_types``: event
        types left out (the lookup's window leaves out a call's follow-ups)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = sql.recent_events_query(customer_id, limit, without_types)
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
            if not rows and not await sql.customer_exists(conn, customer_id):
                raise CustomerNotFound(customer_id)
        return tuple(stored_event(row._mapping) for row in rows)

    # ------------------------------------------------------------------ the webhook relay

    async def events_after_seq(self, after_seq: int, limit: int) -> tuple[StoredEvent, ...]:
        """Committed events with ``seq > after_seq``, oldest ``seq`` first."""
        query = (
            select(timeline_events)
            .where(timeline_events.c.seq > after_seq)
            .order_by(timeline_events.c.seq)
            .limit(limit)
        )
        async with self._db.reading() as conn:
            rows = (await conn.execute(query)).all()
        return tuple(stored_event(row._mapping) for row in rows)

    async def events_at_seqs(self, seqs: Collection[int]) -> tuple[StoredEvent, ...]:
        """The committed events among these ``seq`` values (missing ones are left out)."""
        if not seqs:
            return ()
        query = select(timeline_events).where(timeline_events.c.seq.in_(sorted(seqs)))
        async with self._db.reading() as conn:
            rows = (await conn.execute(query.order_by(timeline_events.c.seq))).all()
        return tuple(stored_event(row._mapping) for row in rows)

    # ------------------------------------------------------------------ helpers

    async def _save_fields(
        self, conn: AsyncConnection, owner: str, fields: Sequence[KnownField]
    ) -> None:
        """Upsert ``fields`` on ``owner`` (a survivor); a saved account number also gives
        them its ``account`` identity if no other customer owns it (``account_claims``)."""
        await sql.upsert_fields(conn, self._dialect, owner, fields)
        if saves_account(fields):
            await claim_accounts(conn, self._dialect, [owner])

    async def _load_one(self, conn: AsyncConnection, customer_id: str) -> Customer:
        found = await sql.load_customers(conn, [customer_id])
        if customer_id not in found:
            raise CustomerNotFound(customer_id)
        return found[customer_id]


class _EventIdTaken(Exception):
    """Raised inside a write transaction to roll it back: the event was stored already."""


def _by_name(fields: Sequence[KnownField]) -> dict[str, str]:
    return {f.name: f.value for f in fields}


def stored_event(row: Any) -> StoredEvent:
    """A ``timeline_events`` row as the port's ``StoredEvent``."""
    return StoredEvent(
        seq=row["seq"],
        event_id=row["event_id"],
        customer_id=row["customer_id"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        channel=row["channel"],
        event_type=row["event_type"],
        intent=row["intent"],
        case_id=row["case_id"],
        data=row["data"],
        saved_fields=row["saved_fields"],
    )

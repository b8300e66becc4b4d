"""SQLAlchemy Core statements shared by the store (portable: SQLite and PostgreSQL).

``INSERT ... ON CONFLICT`` is built with the dialect's own ``insert`` (both have it).
Rows are sorted by their conflict key before batch inserts, so concurrent transactions
take index locks in the same order and cannot deadlock one another on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, Select, Table, Update, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr_engine.domain.models import KnownField
from ivr_engine.ports import MAX_CASE_EVENTS, Customer, Identity, NewTimelineEvent
from ivr_engine.timeline.errors import CustomerNotFound
from ivr_engine.timeline.schema import customers, identities, known_fields, timeline_events

Insert = postgresql.Insert | sqlite.Insert


def dialect_insert(dialect: str, table: Table) -> Insert:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


async def insert_customer(
    conn: AsyncConnection, customer_id: str, display_name: str | None, now: datetime
) -> None:
    await conn.execute(
        customers.insert().values(
            id=customer_id, display_name=display_name, created_at=now, updated_at=now
        )
    )


async def touch(conn: AsyncConnection, customer_id: str, now: datetime) -> None:
    await conn.execute(
        update(customers).where(customers.c.id == customer_id).values(updated_at=now)
    )


async def insert_identities(
    conn: AsyncConnection, dialect: str, customer_id: str, items: Iterable[Identity]
) -> int:
    """Add identities to a customer (already owned ones are skipped); returns rows added."""
    rows = [
        {"customer_id": customer_id, "kind": kind, "value": value}
        for kind, value in sorted({(i.kind, i.value) for i in items})
    ]
    if not rows:
        return 0
    stmt = (
        dialect_insert(dialect, identities)
        .on_conflict_do_nothing(index_elements=["customer_id", "kind", "value"])
        .returning(identities.c.id)
    )
    return len((await conn.execute(stmt, rows)).all())


async def upsert_fields(
    conn: AsyncConnection, dialect: str, customer_id: str, fields: Iterable[KnownField]
) -> None:
    """Insert or replace known fields; a stored field with a newer ``updated_at`` stays."""
    newest: dict[str, KnownField] = {}
    for f in fields:
        if f.name not in newest or f.updated_at > newest[f.name].updated_at:
            newest[f.name] = f
    if not newest:
        return
    rows = [
        {
            "customer_id": customer_id,
            "name": f.name,
            "value": f.value,
            "source_channel": f.source_channel,
            "updated_at": f.updated_at,
            "verified": f.verified,
        }
        for f in sorted(newest.values(), key=lambda f: f.name)
    ]
    ins = dialect_insert(dialect, known_fields)
    stmt = ins.on_conflict_do_update(
        index_elements=["customer_id", "name"],
        set_={
            "value": ins.excluded.value,
            "source_channel": ins.excluded.source_channel,
            "updated_at": ins.excluded.updated_at,
            "verified": ins.excluded.verified,
        },
        where=known_fields.c.updated_at < ins.excluded.updated_at,
    )
    await conn.execute(stmt, rows)


async def insert_events(
    conn: AsyncConnection,
    dialect: str,
    events: Iterable[NewTimelineEvent],
    owners: Mapping[str, str],
    now: datetime,
    saved_fields: Mapping[str, Mapping[str, str]] | None = None,
) -> list[RowMapping]:
    """Insert events for ``owners[event.customer_id]``; known event ids are skipped.

    ``saved_fields`` (by event id) fills the column of that name; without it the column
    stays NULL. Returns the rows inserted (``RETURNING`` yields only those, on both
    dialects)."""
    unique: dict[str, NewTimelineEvent] = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    rows: list[dict[str, Any]] = [
        {
            "event_id": e.event_id,
            "customer_id": owners[e.customer_id],
            "occurred_at": e.occurred_at,
            "recorded_at": now,
            "channel": e.channel,
            "event_type": e.event_type,
            "intent": e.intent,
            "case_id": e.case_id,
            "data": dict(e.data),
        }
        for _, e in sorted(unique.items())
    ]
    if saved_fields is not None:
        for row in rows:
            kept = saved_fields.get(row["event_id"])
            row["saved_fields"] = None if kept is None else dict(kept)
    if not rows:
        return []
    stmt = (
        dialect_insert(dialect, timeline_events)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(*timeline_events.c)
    )
    return [row._mapping for row in (await conn.execute(stmt, rows)).all()]


async def owners_of(
    conn: AsyncConnection, identity: Identity, limit: int | None = None
) -> list[str]:
    query = (
        select(identities.c.customer_id)
        .where(identities.c.kind == identity.kind, identities.c.value == identity.value)
        .distinct()
        .order_by(identities.c.customer_id)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def survivors(
    conn: AsyncConnection, dialect: str, customer_ids: Collection[str]
) -> dict[str, str]:
    """Each id → the customer that now holds its data (itself, or whom it was merged into).

    Call it inside the write transaction. On PostgreSQL the ids and their survivors are
    locked ``FOR KEY SHARE`` until that transaction ends, all in ONE statement in id order
    (the merge, ``lock_customers``, locks ``FOR UPDATE`` in id order too: no deadlock): a
    merge of any of them is waited for, and a writer that waited reads the merged rows, so
    nothing lands on a customer merged away meanwhile. Which rows to lock is read first
    without locks; if a merge changed the answer while the lock waited, the new rows are
    locked too. KEY SHARE, not SHARE: it does not block the ``touch`` of another writer (a
    SHARE lock upgraded by two writers of one customer would deadlock). SQLite writers are
    serialised by ``BEGIN IMMEDIATE``. Raises ``CustomerNotFound`` for an unknown id.
    """
    lock = dialect == "postgresql"
    merged_into = await _merged_into(conn, set(customer_ids))
    while lock:
        wanted = merged_into.keys() | {m for m in merged_into.values() if m is not None}
        locked = await _read_merged_into(conn, wanted, lock=True)
        if locked == {k: v for k, v in merged_into.items() if k in locked} and all(
            m is None or m in locked for m in locked.values()
        ):
            merged_into = locked
            break
        merged_into = await _merged_into(conn, set(customer_ids) | locked.keys())
    for customer_id in customer_ids:
        if customer_id not in merged_into:
            raise CustomerNotFound(customer_id)
    return {cid: _last_hop(merged_into, cid) for cid in customer_ids}


async def _merged_into(conn: AsyncConnection, customer_ids: set[str]) -> dict[str, str | None]:
    """``merged_into`` of the ids and of the customers they were merged into, hop by hop
    (no locks)."""
    merged_into: dict[str, str | None] = {}
    pending = set(customer_ids)
    while pending:
        merged_into.update(await _read_merged_into(conn, pending, lock=False))
        missing = pending - merged_into.keys()
        if missing:
            raise CustomerNotFound(sorted(missing)[0])
        pending = {m for m in merged_into.values() if m is not None} - merged_into.keys()
    return merged_into


async def _read_merged_into(
    conn: AsyncConnection, customer_ids: Collection[str], *, lock: bool
) -> dict[str, str | None]:
    query = (
        select(customers.c.id, customers.c.merged_into)
        .where(customers.c.id.in_(sorted(customer_ids)))
        .order_by(customers.c.id)
    )
    if lock:
        query = query.with_for_update(read=True, key_share=True)
    return {row.id: row.merged_into for row in await conn.execute(query)}


def _last_hop(merged_into: Mapping[str, str | None], customer_id: str) -> str:
    """Follow ``merged_into`` (one hop, unless a merge of the survivor was waited for)."""
    seen = {customer_id}
    while (following := merged_into[customer_id]) is not None and following not in seen:
        seen.add(following)
        customer_id = following
    return customer_id


async def lock_customers(
    conn: AsyncConnection, dialect: str, customer_ids: Sequence[str]
) -> dict[str, str | None]:
    """``merged_into`` per existing id, rows locked for update (ordered: no deadlocks)."""
    query = (
        select(customers.c.id, customers.c.merged_into)
        .where(customers.c.id.in_(list(customer_ids)))
        .order_by(customers.c.id)
    )
    if dialect == "postgresql":
        query = query.with_for_update()
    return {row.id: row.merged_into for row in await conn.execute(query)}


async def customer_exists(conn: AsyncConnection, customer_id: str) -> bool:
    query = select(customers.c.id).where(customers.c.id == customer_id)
    return (await conn.execute(query)).first() is not None


async def fields_of(
    conn: AsyncConnection, customer_ids: Collection[str]
) -> dict[str, list[KnownField]]:
    query = (
        select(known_fields)
        .where(known_fields.c.customer_id.in_(list(customer_ids)))
        .order_by(known_fields.c.customer_id, known_fields.c.name)
    )
    out: dict[str, list[KnownField]] = {}
    for row in await conn.execute(query):
        out.setdefault(row.customer_id, []).append(
            KnownField(row.name, row.value, row.source_channel, row.updated_at, row.verified)
        )
    return out


async def field_of(conn: AsyncConnection, customer_id: str, name: str) -> KnownField | None:
    query = select(known_fields).where(
        known_fields.c.customer_id == customer_id, known_fields.c.name == name
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return KnownField(row.name, row.value, row.source_channel, row.updated_at, row.verified)


async def load_customers(
    conn: AsyncConnection, customer_ids: Collection[str]
) -> dict[str, Customer]:
    """Customers with their identities and known fields (three queries, any count)."""
    if not customer_ids:
        return {}
    ids = list(customer_ids)
    rows = (await conn.execute(select(customers).where(customers.c.id.in_(ids)))).all()
    if not rows:
        return {}
    owned: dict[str, list[Identity]] = {}
    query = (
        select(identities.c.customer_id, identities.c.kind, identities.c.value)
        .where(identities.c.customer_id.in_(ids))
        .order_by(identities.c.id)
    )
    for row in await conn.execute(query):
        owned.setdefault(row.customer_id, []).append(Identity(row.kind, row.value))
    fields = await fields_of(conn, ids)
    return {row.id: _customer(row, owned, fields) for row in rows}


def _customer(
    row: Any, owned: Mapping[str, list[Identity]], fields: Mapping[str, list[KnownField]]
) -> Customer:
    return Customer(
        customer_id=row.id,
        display_name=row.display_name,
        identities=tuple(owned.get(row.id, ())),
        known_fields={f.name: f for f in fields.get(row.id, ())},
        created_at=row.created_at,
        updated_at=row.updated_at,
        merged_into=row.merged_into,
    )


# ---------------------------------------------------------------------- events by id and case


async def events_by_id(conn: AsyncConnection, event_ids: Collection[str]) -> list[RowMapping]:
    query = select(timeline_events).where(timeline_events.c.event_id.in_(list(event_ids)))
    return [row._mapping for row in await conn.execute(query)]


async def case_page(
    conn: AsyncConnection, case_id: str, limit: int, after_seq: int | None
) -> list[RowMapping]:
    """Up to ``limit`` events of the case after ``after_seq``, oldest first."""
    return [row._mapping for row in await conn.execute(case_page_query(case_id, limit, after_seq))]


def case_page_query(case_id: str, limit: int, after_seq: int | None) -> Select[Any]:
    """``case_page``'s statement: a range of ``ix_timeline_events_case_seq``, no sort."""
    t = timeline_events.c
    query = select(timeline_events).where(t.case_id == case_id).order_by(t.seq)
    if after_seq is not None:
        query = query.where(t.seq > after_seq)
    return query.limit(limit)


def timeline_page_query(customer_id: str, limit: int, before_seq: int | None) -> Select[Any]:
    """Up to ``limit`` events of the customer, newest ``seq`` first, below ``before_seq``: a
    range of ``ix_timeline_events_customer_seq``, no sort of the customer's events."""
    t = timeline_events.c
    query = select(timeline_events).where(t.customer_id == customer_id)
    if before_seq is not None:
        query = query.where(t.seq < before_seq)
    return query.order_by(t.seq.desc()).limit(limit)


def recent_events_query(
    customer_id: str, limit: int, without_types: Collection[str] = ()
) -> Select[Any]:
    """Up to ``limit`` events of the customer, newest ``occurred_at`` first (``seq`` breaks
    ties): the per-call lookup's order (``fast_lookup``), a range of
    ``ix_timeline_events_customer_recent``. An event stored late (a call replayed from the
    spool, a lagging bridge) sorts by when it happened, not by when it was written."""
    t = timeline_events.c
    query = select(timeline_events).where(t.customer_id == customer_id)
    if without_types:
        query = query.where(t.event_type.not_in(sorted(without_types)))
    return query.order_by(t.occurred_at.desc(), t.seq.desc()).limit(limit)


def repoint_merged(source_id: str, target_id: str) -> Update:
    """The customers merged into ``source_id`` now point at ``target_id`` (chains stay one
    hop); found through ``ix_customers_merged_into``, not by reading every customer."""
    return (
        update(customers).where(customers.c.merged_into == source_id).values(merged_into=target_id)
    )


async def case_heads(conn: AsyncConnection, case_id: str) -> list[tuple[Any, ...]]:
    """(seq, customer_id, occurred_at, channel, event_type) of the newest events of a case."""
    t = timeline_events.c
    query = (
        select(t.seq, t.customer_id, t.occurred_at, t.channel, t.event_type)
        .where(t.case_id == case_id)
        .order_by(t.seq.desc())
        .limit(MAX_CASE_EVENTS)
    )
    return [tuple(row) for row in await conn.execute(query)]

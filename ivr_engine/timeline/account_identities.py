"""The store's side of ``account_claims``: after saving known fields, in the same transaction,
give each customer the ``account`` identity of their saved account number (SQLAlchemy Core,
SQLite and PostgreSQL).

Concurrent claims of one number are serialised: on PostgreSQL by the advisory lock the store
takes for creating a customer by that identity (``("account", value)``), taken in key order,
then the owners are read again (a new snapshot under READ COMMITTED); on SQLite every write
transaction holds the write lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr_engine.domain.models import ACCOUNT_FIELD, ACCOUNT_IDENTITY, KnownField
from ivr_engine.ports import Identity
from ivr_engine.timeline import sql
from ivr_engine.timeline.account_claims import (
    AccountClaims,
    account_values,
    owners_by_account,
    plan_account_claims,
)
from ivr_engine.timeline.identity_locks import pg_lock_identities
from ivr_engine.timeline.schema import identities, known_fields

log = logging.getLogger(__name__)

# the same key as the store's ``_owner_or_new`` lock for this identity, in hash order
PG_LOCK_ACCOUNTS = pg_lock_identities(":accounts", ":kind")


def saves_account(fields: Iterable[KnownField]) -> bool:
    return any(f.name == ACCOUNT_FIELD for f in fields)


async def claim_accounts(
    conn: AsyncConnection, dialect: str, customer_ids: Collection[str]
) -> AccountClaims:
    """Add the ``account`` identity of each customer's stored account number, unless another
    customer owns it (logged, returned as refused)."""
    rows = await conn.execute(
        select(known_fields.c.customer_id, known_fields.c.value).where(
            known_fields.c.customer_id.in_(sorted(customer_ids)),
            known_fields.c.name == ACCOUNT_FIELD,
        )
    )
    stored = account_values((row[0], row[1]) for row in rows)
    if not stored:
        return AccountClaims()
    accounts = sorted(set(stored.values()))
    if dialect == "postgresql":
        lock = {"accounts": accounts, "kind": ACCOUNT_IDENTITY}
        await conn.execute(text(PG_LOCK_ACCOUNTS), lock)
    owned = await conn.execute(
        select(identities.c.value, identities.c.customer_id).where(
            identities.c.kind == ACCOUNT_IDENTITY, identities.c.value.in_(accounts)
        )
    )
    claims = plan_account_claims(stored, owners_by_account((row[0], row[1]) for row in owned))
    for customer_id, account in claims.add:
        identity = Identity(ACCOUNT_IDENTITY, account)
        await sql.insert_identities(conn, dialect, customer_id, [identity])
    for refused in claims.refused:
        log.warning("%s", refused.message())
    return claims

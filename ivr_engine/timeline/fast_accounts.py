"""The raw-driver write path's side of ``account_claims`` (``fast_writer``): after a batch's
known fields are written, in the same transaction, each customer whose account number was
saved gets its ``account`` identity, unless another customer owns it (logged). The rules and
the PostgreSQL locks are the store's (``account_identities``); the statements are in
``fast_sql.py``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ivr_engine.domain.models import ACCOUNT_FIELD, ACCOUNT_IDENTITY
from ivr_engine.ports import CustomerWrite
from ivr_engine.timeline.account_claims import (
    AccountClaims,
    account_values,
    owners_by_account,
    plan_account_claims,
)
from ivr_engine.timeline.fast_sql import (
    PG_ACCOUNT_FIELDS,
    PG_ACCOUNT_OWNERS,
    PG_LOCK_ACCOUNTS,
    PG_NEW_ACCOUNTS,
    SQLITE_ACCOUNT_FIELDS,
    SQLITE_ACCOUNT_OWNERS,
    SQLITE_NEW_ACCOUNT,
)

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)


def batch_saves_account(batch: Sequence[CustomerWrite]) -> bool:
    return any(f.name == ACCOUNT_FIELD for w in batch for f in w.fields)


async def claim_accounts_pg(conn: asyncpg.Connection, owners: Sequence[str]) -> AccountClaims:
    """In the caller's transaction; ``owners``: the (surviving) customers written to."""
    rows = await conn.fetch(PG_ACCOUNT_FIELDS, sorted(owners), ACCOUNT_FIELD)
    stored = account_values((row[0], row[1]) for row in rows)
    if not stored:
        return AccountClaims()
    accounts = sorted(set(stored.values()))
    await conn.execute(PG_LOCK_ACCOUNTS, accounts, ACCOUNT_IDENTITY)
    owned = await conn.fetch(PG_ACCOUNT_OWNERS, accounts, ACCOUNT_IDENTITY)
    claims = plan_account_claims(stored, owners_by_account((row[0], row[1]) for row in owned))
    if claims.add:
        customers, values = [c for c, _ in claims.add], [a for _, a in claims.add]
        await conn.execute(PG_NEW_ACCOUNTS, customers, values, ACCOUNT_IDENTITY)
    _log_refused(claims)
    return claims


def claim_accounts_sqlite(conn: sqlite3.Connection, owners: Sequence[str]) -> AccountClaims:
    """In the caller's write transaction (it holds the write lock)."""
    marks = ", ".join("?" * len(owners))
    rows = conn.execute(SQLITE_ACCOUNT_FIELDS.format(marks), [ACCOUNT_FIELD, *owners])
    stored = account_values((row[0], row[1]) for row in rows.fetchall())
    if not stored:
        return AccountClaims()
    accounts = sorted(set(stored.values()))
    found = conn.execute(
        SQLITE_ACCOUNT_OWNERS.format(", ".join("?" * len(accounts))), [ACCOUNT_IDENTITY, *accounts]
    )
    claims = plan_account_claims(
        stored, owners_by_account((row[0], row[1]) for row in found.fetchall())
    )
    conn.executemany(SQLITE_NEW_ACCOUNT, [(c, ACCOUNT_IDENTITY, a) for c, a in claims.add])
    _log_refused(claims)
    return claims


def _log_refused(claims: AccountClaims) -> None:
    for refused in claims.refused:
        log.warning("%s", refused.message())

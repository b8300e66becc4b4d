"""Backfill ``account`` identities from saved account numbers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00

Since this revision a saved ``account_number`` known field gives its customer the
``("account", value)`` identity, unless another customer owns it (``account_claims``): a
caller keying that number in from any line is then identified. Customers saved before have
the field only, so this gives each of them the identity where that is unambiguous: the
number is held by exactly one (not merged) customer and nobody owns it as an identity yet.
A number two customers hold, or one owned by someone else, is left for an agent to merge
(the count is logged). Only plain ASCII digits up to 320 of them are taken (what the API
and the IVR store); other values are no account number. No schema change.

Downgrade removes nothing: a backfilled identity cannot be told from one added since.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

_DIGITS = {
    "postgresql": "f.value ~ '^[0-9]+$' AND length(f.value) <= 320",
    "sqlite": "f.value <> '' AND f.value NOT GLOB '*[^0-9]*' AND length(f.value) <= 320",
}
_HELD = """
WITH held AS (
    SELECT f.value, MIN(f.customer_id) AS customer_id, COUNT(DISTINCT f.customer_id) AS holders
    FROM known_fields f JOIN customers c ON c.id = f.customer_id AND c.merged_into IS NULL
    WHERE f.name = 'account_number' AND {digits}
    GROUP BY f.value)"""
_OWNED = "SELECT 1 FROM identities i WHERE i.kind = 'account' AND i.value = h.value"


def upgrade() -> None:
    bind = op.get_bind()
    held = _HELD.format(digits=_DIGITS[bind.dialect.name])
    left = bind.execute(
        sa.text(
            f"{held} SELECT COUNT(*) FROM held h "
            f"WHERE h.holders > 1 OR EXISTS ({_OWNED} AND i.customer_id <> h.customer_id)"
        )
    ).scalar_one()
    added = bind.execute(
        sa.text(
            f"{held} INSERT INTO identities (customer_id, kind, value) "
            f"SELECT h.customer_id, 'account', h.value FROM held h "
            f"WHERE h.holders = 1 AND NOT EXISTS ({_OWNED})"
        )
    ).rowcount
    log.info("account identities: %d added from account_number fields", added)
    if added and bind.dialect.name == "postgresql":  # SQLite keeps no statistics unasked
        # the planner's statistics still say "no account identities": with them, the per-call
        # writer's owner check (kind = 'account' AND value = ANY(...)) scanned every account
        # row (38 ms a call after 200,000 were added) until autovacuum got to the table
        bind.execute(sa.text("ANALYZE identities"))
    if left:
        log.warning(
            "account identities: %d account numbers held by several customers, or owned by "
            "another: not added (merge those customers to join them)",
            left,
        )


def downgrade() -> None:
    pass

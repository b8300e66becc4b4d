"""The known fields an API event saved with it, so a replay's ``fields`` can be compared.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 00:00:00

``POST /v1/events`` is idempotent on ``event_id``, and a replay whose content differs is a
409; the ``fields`` it saves were not kept with the event, so a replay with other fields was
a silent 200. A nullable column without a default: on PostgreSQL adding it rewrites nothing
(a catalog change only), on SQLite it is an ``ALTER TABLE ... ADD COLUMN``. Events stored
before this revision keep NULL (their replays' fields cannot be compared).

Hand-written to match ``ivr_engine/timeline/schema.py`` (a test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.add_column("timeline_events", sa.Column("saved_fields", _JSON, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): a batch table copy would lose the DESC of the
    # covering index's columns.
    op.drop_column("timeline_events", "saved_fields")

"""The webhook relay's lease and cursor (``crm_bridge.webhooks.relay``, issue #4).

Revision ID: 0003
Revises: 0002
Create Date: 2024-08-01 00:00:00

Hand-written to match ``ivr_engine/timeline/schema.py`` (a test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhook_relay",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(120), nullable=True),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("high_seq", sa.BigInteger(), nullable=False),
        sa.Column("gaps", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_webhook_relay"),
    )


def downgrade() -> None:
    op.drop_table("webhook_relay")

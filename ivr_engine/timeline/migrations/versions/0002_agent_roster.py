"""The shared agent roster: agents managed over the HTTP API (issue #3).

Revision ID: 0002
Revises: 0001
Create Date: 2024-07-01 00:00:00

Hand-written to match ``ivr_engine/timeline/schema.py`` (a test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "agent_roster",
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("sip_endpoint", sa.String(120), nullable=False),
        sa.Column("skills", _JSON, nullable=False),
        sa.Column("languages", _JSON, nullable=False),
        sa.Column("team", sa.String(64), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.String(300), nullable=True),
        sa.Column("token_sha256", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name="pk_agent_roster"),
        sa.UniqueConstraint("token_sha256", name="uq_agent_roster_token_sha256"),
    )
    op.create_table(
        "agent_roster_meta",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("seeded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_roster_meta"),
    )


def downgrade() -> None:
    op.drop_table("agent_roster_meta")
    op.drop_table("agent_roster")

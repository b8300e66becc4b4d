"""Initial timeline schema: customers, identities, timeline_events, known_fields.

Revision ID: 0001
Revises:
Create Date: 2024-06-01 00:00:00

Hand-written to match ``ivr_engine/timeline/schema.py`` (a test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("merged_into", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
        sa.ForeignKeyConstraint(
            ["merged_into"], ["customers.id"], name="fk_customers_merged_into_customers"
        ),
    )
    op.create_table(
        "identities",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(320), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identities"),
        sa.UniqueConstraint(
            "customer_id", "kind", "value", name="uq_identities_customer_id_kind_value"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_identities_customer_id_customers"
        ),
    )
    op.create_index("ix_identities_kind_value", "identities", ["kind", "value", "customer_id"])
    op.create_table(
        "timeline_events",
        sa.Column("seq", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", _ts(), nullable=False),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("intent", sa.String(64), nullable=True),
        sa.Column("case_id", sa.String(64), nullable=True),
        sa.Column("data", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_timeline_events"),
        sa.UniqueConstraint("event_id", name="uq_timeline_events_event_id"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_timeline_events_customer_id_customers"
        ),
    )
    op.create_index(
        "ix_timeline_events_customer_recent",
        "timeline_events",
        ["customer_id", sa.text("occurred_at DESC"), sa.text("seq DESC")],
    )
    op.create_index(
        "ix_timeline_events_case_id",
        "timeline_events",
        ["case_id"],
        postgresql_where=sa.text("case_id IS NOT NULL"),
        sqlite_where=sa.text("case_id IS NOT NULL"),
    )
    op.create_table(
        "known_fields",
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("source_channel", sa.String(16), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "name", name="pk_known_fields"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_known_fields_customer_id_customers"
        ),
    )


def downgrade() -> None:
    op.drop_table("known_fields")
    op.drop_index("ix_timeline_events_case_id", table_name="timeline_events")
    op.drop_index("ix_timeline_events_customer_recent", table_name="timeline_events")
    op.drop_table("timeline_events")
    op.drop_index("ix_identities_kind_value", table_name="identities")
    op.drop_table("identities")
    op.drop_table("customers")

"""The caller-history index covers the lookup: an index-only scan, no heap page per event.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 00:00:00

The per-call lookup reads a customer's newest events (seq, occurred_at, channel, event_type,
intent, case_id). With only (customer_id, occurred_at, seq) in the index, each event cost a
heap page; on 1 M customers / 10 M events those pages are scattered and mostly not in
PostgreSQL's buffers (a read each). With the other four columns as trailing key columns the
lookup is an index-only scan on PostgreSQL and a covering-index scan on SQLite (measured in
bench/results.md, decision latency). PostgreSQL builds it CONCURRENTLY (writes go on); on
10 M events it took about 35 s on the benchmark machine.

Hand-written to match ``ivr_engine/timeline/schema.py`` (a test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_timeline_events_customer_recent"
ORDER = [sa.text("occurred_at DESC"), sa.text("seq DESC")]
COVERED = ["channel", "event_type", "intent", "case_id"]


def _rebuild(columns: list[sa.TextClause | str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(NAME, table_name="timeline_events", postgresql_concurrently=True)
            op.create_index(NAME, "timeline_events", columns, postgresql_concurrently=True)
        return
    op.drop_index(NAME, table_name="timeline_events")
    op.create_index(NAME, "timeline_events", columns)


def upgrade() -> None:
    _rebuild(["customer_id", *ORDER, *COVERED])


def downgrade() -> None:
    _rebuild(["customer_id", *ORDER])

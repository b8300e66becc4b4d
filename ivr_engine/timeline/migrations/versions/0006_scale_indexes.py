"""Indexes for three statements that read far more than they return at 1 M customers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 00:00:00

Found by a plan audit of every statement on the benchmark database (1 M customers, 10 M
events):

* ``ix_customers_merged_into`` (partial, merged customers only): a merge re-points the
  customers already merged into its source (``UPDATE customers ... WHERE merged_into = ?``),
  which read every customer (PostgreSQL: a parallel sequential scan, 80 ms and 11,600 pages
  per merge; SQLite: ``SCAN customers``).
* ``ix_timeline_events_customer_seq`` (customer_id, seq): a timeline page (newest first by
  ``seq``) was served by the caller-history index, ordered by ``occurred_at``, so each page
  read and sorted ALL of the customer's events (the busiest seeded customer: 1,792 rows,
  1,785 heap pages, 71 ms cold, for 51 rows).
* ``ix_timeline_events_case_seq`` (case_id, seq; replaces ``ix_timeline_events_case_id``):
  a case's page sorted all of the case's events on PostgreSQL (SQLite's index already
  ended in the rowid, ``seq``).

PostgreSQL builds them CONCURRENTLY (writes go on), the new case index before the old one
is dropped (case reads keep an index throughout).

Hand-written to match ``ivr_engine/timeline/schema.py`` (a test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MERGED = sa.text("merged_into IS NOT NULL")
HAS_CASE = sa.text("case_id IS NOT NULL")


def _create(name: str, table: str, columns: list[str], where: sa.TextClause | None) -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(
                name, table, columns, postgresql_where=where, postgresql_concurrently=True
            )
        return
    op.create_index(name, table, columns, sqlite_where=where)


def _drop(name: str, table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
        return
    op.drop_index(name, table_name=table)


def upgrade() -> None:
    _create("ix_customers_merged_into", "customers", ["merged_into"], MERGED)
    _create("ix_timeline_events_customer_seq", "timeline_events", ["customer_id", "seq"], None)
    _create("ix_timeline_events_case_seq", "timeline_events", ["case_id", "seq"], HAS_CASE)
    _drop("ix_timeline_events_case_id", "timeline_events")


def downgrade() -> None:
    _create("ix_timeline_events_case_id", "timeline_events", ["case_id"], HAS_CASE)
    _drop("ix_timeline_events_case_seq", "timeline_events")
    _drop("ix_timeline_events_customer_seq", "timeline_events")
    _drop("ix_customers_merged_into", "customers")

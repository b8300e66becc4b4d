"""The timeline schema (SQLAlchemy owns it; ``migrations/`` must match it exactly).

Portable across SQLite and PostgreSQL. Datetimes are timezone-aware UTC everywhere: on
PostgreSQL ``timestamptz``; on SQLite fixed-width UTC text ``YYYY-MM-DD HH:MM:SS.ffffff``
(sorts chronologically), always read back as aware datetimes (``timestamps.py``, which
the raw-driver call path imports instead of this module: no SQLAlchemy there).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ivr_engine.timeline.timestamps import to_utc

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL; INTEGER on SQLite so the column is the rowid (autoincrementing).
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonDocument = JSON().with_variant(JSONB(), "postgresql")
# The same, with Python ``None`` stored as SQL NULL (not the JSON ``null``).
NullableJsonDocument = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on PostgreSQL, UTC text on SQLite; always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text (e.g. from a seeder) on SQLite
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return to_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CustomerRow(Base):
    __tablename__ = "customers"
    __table_args__ = (
        # A merge re-points the customers merged into its source (``merged_into = source``):
        # without this index that read every customer (migration 0006). Partial: only
        # merged customers have an entry.
        Index(
            "ix_customers_merged_into",
            "merged_into",
            postgresql_where=text("merged_into IS NOT NULL"),
            sqlite_where=text("merged_into IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4 text
    display_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    merged_into: Mapped[str | None] = mapped_column(String(36), ForeignKey("customers.id"))


class IdentityRow(Base):
    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("customer_id", "kind", "value"),
        # Not unique: two customers may share a phone until someone merges them.
        # customer_id is included so the caller lookup is an index-only scan.
        Index("ix_identities_kind_value", "kind", "value", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36), ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))


class TimelineEventRow(Base):
    __tablename__ = "timeline_events"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)  # idempotency key
    customer_id: Mapped[str] = mapped_column(String(36), ForeignKey("customers.id"))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    channel: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str] = mapped_column(String(64))
    intent: Mapped[str | None] = mapped_column(String(64))
    case_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    # The known fields ``POST /v1/events`` saved with the event ({name: value}, {} for
    # none), compared on a replay; NULL for events from other writers (calls, messages,
    # merges) and for API events stored before migration 0005.
    saved_fields: Mapped[dict[str, str] | None] = mapped_column(NullableJsonDocument)


_events = cast(Table, TimelineEventRow.__table__)
# "Newest N events of a customer" is one index range scan, and covers what the per-call
# lookup reads (fast_lookup.py), so no heap page is read per event (migration 0004).
Index(
    "ix_timeline_events_customer_recent",
    _events.c.customer_id,
    _events.c.occurred_at.desc(),
    _events.c.seq.desc(),
    _events.c.channel,
    _events.c.event_type,
    _events.c.intent,
    _events.c.case_id,
)
# A customer's timeline page (newest first by seq, ``store.timeline``) is one index range
# scan: ordered by the index above (occurred_at first), it read and sorted ALL of a busy
# customer's events for every page (migration 0006).
Index("ix_timeline_events_customer_seq", _events.c.customer_id, _events.c.seq)
# A case's page (by seq) reads only that page's events (migration 0006 added seq).
Index(
    "ix_timeline_events_case_seq",
    _events.c.case_id,
    _events.c.seq,
    postgresql_where=_events.c.case_id.is_not(None),
    sqlite_where=_events.c.case_id.is_not(None),
)


class KnownFieldRow(Base):
    __tablename__ = "known_fields"

    customer_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("customers.id"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    source_channel: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    verified: Mapped[bool] = mapped_column(Boolean)


class AgentRosterRow(Base):
    """One agent of the shared roster: routing profile + desktop credentials (issue #3)."""

    __tablename__ = "agent_roster"
    __table_args__ = (UniqueConstraint("token_sha256"),)

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    sip_endpoint: Mapped[str] = mapped_column(String(120))
    skills: Mapped[dict[str, Any]] = mapped_column(JsonDocument)  # skill -> 1..5
    languages: Mapped[list[str]] = mapped_column(JsonDocument)
    team: Mapped[str] = mapped_column(String(64))
    max_concurrent: Mapped[int] = mapped_column(Integer)
    password_hash: Mapped[str | None] = mapped_column(String(300))  # scrypt$N$r$p$salt$key
    token_sha256: Mapped[str | None] = mapped_column(String(64))  # hex digest
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AgentRosterMetaRow(Base):
    """A single row (id 1): ``version`` grows with every roster write (engines poll it);
    ``seeded`` is set once the agents file has seeded the roster."""

    __tablename__ = "agent_roster_meta"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
    seeded: Mapped[bool] = mapped_column(Boolean)


class WebhookRelayRow(Base):
    """One row per webhook relay (``crm_bridge.webhooks.relay``): who relays (a lease) and
    how far: every event with ``seq <= high_seq`` not listed in ``gaps`` was handed over."""

    __tablename__ = "webhook_relay"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(120))
    lease_until_ms: Mapped[int] = mapped_column(BigInteger)  # unix milliseconds
    high_seq: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[list[list[int]]] = mapped_column(JsonDocument)  # [[seq, first_seen_ms], ...]


metadata = Base.metadata
customers = cast(Table, CustomerRow.__table__)
identities = cast(Table, IdentityRow.__table__)
timeline_events = _events
known_fields = cast(Table, KnownFieldRow.__table__)
agent_roster = cast(Table, AgentRosterRow.__table__)
agent_roster_meta = cast(Table, AgentRosterMetaRow.__table__)
webhook_relay = cast(Table, WebhookRelayRow.__table__)

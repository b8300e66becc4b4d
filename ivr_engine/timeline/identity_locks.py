"""The PostgreSQL advisory lock of an identity, for many values of one kind at once.

An identity ``(kind, value)`` is locked on ``hashtext(kind || chr(31) || value)``: the key
the store takes when it creates a customer for one identity (``store._owner_or_new``). A
batch takes the keys of all its values in key order, so two batches never deadlock. One
template serves both drivers: the caller renders it with its own placeholders.
"""

from __future__ import annotations


def pg_lock_identities(values: str, kind: str) -> str:
    """The statement that locks each of ``values`` (a text array) as an identity of ``kind``
    (text), in key order; both are placeholders of the caller's driver (``":accounts"`` and
    ``":kind"`` for SQLAlchemy, ``"$1"`` and ``"$2"`` for asyncpg) or SQL literals."""
    return f"""
SELECT pg_advisory_xact_lock(h) FROM (
    SELECT DISTINCT hashtext({kind} || chr(31) || v) AS h
    FROM unnest(CAST({values} AS text[])) AS v ORDER BY h) AS keys"""


__all__ = ["pg_lock_identities"]

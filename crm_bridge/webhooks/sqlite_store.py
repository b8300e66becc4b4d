"""The durable ``DeliveryStore``: one SQLite file, so nothing is lost across a restart.

``webhook_deliveries``: ``state`` is ``parked`` or ``dead``. ``webhook_relayed``: the
delivery ids the relay parked (``park_new``), so a replay of the timeline parks nothing
twice; forgotten after a retention period (``forget_relayed``). Every write is its own
transaction (one per relay batch, one per delivered delivery) with ``synchronous=FULL`` in
WAL mode. All calls run, in order, on one private thread: the event
loop never blocks on the disk and two calls never interleave on the connection.

One dispatcher per file: two processes sharing a file would both deliver its parked rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from crm_bridge.webhooks.errors import DeliveryStoreError
from crm_bridge.webhooks.store import DeadLetter, Delivery
from ivr_engine.data_dirs import create_private_file

__all__ = ["SqliteDeliveryStore"]

T = TypeVar("T")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id     TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    body            BLOB NOT NULL,
    order_key       INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('parked', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    failed_at       REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_lane
    ON webhook_deliveries (state, subscription_id, order_key);
CREATE TABLE IF NOT EXISTS webhook_relayed (
    delivery_id TEXT PRIMARY KEY,
    relayed_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_relayed_by_age ON webhook_relayed (relayed_at);
"""
_COLUMNS = "delivery_id, subscription_id, event_type, event_id, body, order_key"
_UPSERT = (
    f"INSERT OR REPLACE INTO webhook_deliveries ({_COLUMNS}, state, attempts, last_error,"
    " failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
Row = tuple[str, str, str, str, bytes, int]


def _delivery(row: Row) -> Delivery:
    return Delivery(row[0], row[1], row[2], row[3], bytes(row[4]), row[5])


def _values(d: Delivery) -> Row:
    return (d.delivery_id, d.subscription_id, d.event_type, d.event_id, d.body, d.order_key)


class SqliteDeliveryStore:
    def __init__(self, connection: sqlite3.Connection, path: Path, thread: Executor) -> None:
        self._db, self._path, self._thread = connection, path, thread

    @classmethod
    async def open(cls, path: Path | str) -> SqliteDeliveryStore:
        """Open (creating if needed) the store file; raise ``DeliveryStoreError`` naming it."""
        path = Path(path)
        thread = ThreadPoolExecutor(1, thread_name_prefix="webhook-store")

        def connect() -> sqlite3.Connection:
            create_private_file(path)  # webhook payloads are customer data: 0600
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            try:
                db.execute("PRAGMA busy_timeout = 5000")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
                db.executescript(_SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
            return db

        try:
            db = await asyncio.get_running_loop().run_in_executor(thread, connect)
        except sqlite3.Error as exc:
            thread.shutdown(wait=False)
            raise DeliveryStoreError(f"{path}: cannot open webhook delivery store: {exc}") from exc
        return cls(db, path, thread)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def transaction() -> T:
            with self._db:  # BEGIN ... COMMIT, or ROLLBACK on error
                self._db.execute("BEGIN IMMEDIATE")
                return work(self._db)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, transaction)
        except sqlite3.Error as exc:
            raise DeliveryStoreError(f"{self._path}: webhook delivery store: {exc}") from exc

    async def park(self, delivery: Delivery) -> None:
        await self._run(lambda db: db.execute(_UPSERT, (*_values(delivery), "parked", 0, "", 0)))

    async def park_new(self, deliveries: Sequence[Delivery], now: float) -> int:
        remember = "INSERT OR IGNORE INTO webhook_relayed (delivery_id, relayed_at) VALUES (?, ?)"

        def park(db: sqlite3.Connection) -> int:
            parked = 0
            for d in deliveries:
                if db.execute(remember, (d.delivery_id, now)).rowcount == 1:
                    db.execute(_UPSERT, (*_values(d), "parked", 0, "", 0))
                    parked += 1
            return parked

        return await self._run(park) if deliveries else 0

    async def forget_relayed(self, before: float) -> None:
        sql = "DELETE FROM webhook_relayed WHERE relayed_at < ?"
        await self._run(lambda db: db.execute(sql, (before,)))

    async def next_parked(self, subscription_id: str) -> Delivery | None:
        def read(db: sqlite3.Connection) -> Delivery | None:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM webhook_deliveries WHERE state = 'parked'"
                " AND subscription_id = ? ORDER BY order_key LIMIT 1",
                (subscription_id,),
            ).fetchone()
            return None if row is None else _delivery(row)

        return await self._run(read)

    async def parked_subscriptions(self) -> set[str]:
        sql = "SELECT DISTINCT subscription_id FROM webhook_deliveries WHERE state = 'parked'"
        return await self._run(lambda db: {row[0] for row in db.execute(sql)})

    async def unpark(self, delivery_id: str) -> None:
        sql = "DELETE FROM webhook_deliveries WHERE delivery_id = ? AND state = 'parked'"
        await self._run(lambda db: db.execute(sql, (delivery_id,)))

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        values = (*_values(letter.delivery), "dead", letter.attempts, letter.last_error)
        await self._run(lambda db: db.execute(_UPSERT, (*values, letter.failed_at)))

    async def dead_letters(
        self, subscription_id: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        sql = (
            f"SELECT {_COLUMNS}, attempts, last_error, failed_at FROM webhook_deliveries"
            " WHERE state = 'dead' AND (? IS NULL OR subscription_id = ?)"
            " ORDER BY order_key LIMIT ?"
        )

        def read(db: sqlite3.Connection) -> list[DeadLetter]:
            rows = db.execute(sql, (subscription_id, subscription_id, limit)).fetchall()
            return [DeadLetter(_delivery(r[:6]), r[6], r[7], r[8]) for r in rows]

        return await self._run(read)

    async def revive(self, delivery_ids: Collection[str]) -> list[Delivery]:
        ids = list(dict.fromkeys(delivery_ids))

        def move(db: sqlite3.Connection) -> list[Delivery]:
            revived = []
            for delivery_id in ids:
                row = db.execute(
                    f"SELECT {_COLUMNS} FROM webhook_deliveries"
                    " WHERE delivery_id = ? AND state = 'dead'",
                    (delivery_id,),
                ).fetchone()
                if row is not None:
                    db.execute(
                        "UPDATE webhook_deliveries SET state = 'parked' WHERE delivery_id = ?",
                        (delivery_id,),
                    )
                    revived.append(_delivery(row))
            return revived

        return await self._run(move)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
        self._thread.shutdown(wait=True)

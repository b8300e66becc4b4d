"""Helpers for the recorder tests on real databases: calls, a writer that can stand for a
database that is down (or for a bug), and what the database holds."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.flows.call_record import CallRecord, IncomingCall
from ivr_engine.flows.recorder import CallRecorder
from ivr_engine.ports import CustomerWrite
from ivr_engine.timeline import FastCallWriter


def record(caller: str | None = None, call_id: str | None = None, **kw: object) -> CallRecord:
    call = IncomingCall(call_id or str(uuid.uuid4()), caller, "PJSIP/x", "main", datetime.now(UTC))
    return CallRecord(call, phone=caller, intent="billing", **kw)  # type: ignore[arg-type]


class Switchable:
    """The real ``FastCallWriter``; while ``fail`` is set each call raises it instead
    (``TimelineUnavailable``: the database is down; anything else: a bug)."""

    def __init__(self, real: FastCallWriter) -> None:
        self.real = real
        self.fail: Exception | None = None
        self.fail_writes: Exception | None = None  # the event writes only
        self.batches: list[int] = []  # the size of each write asked for

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        self.batches.append(len(batch))
        self._check()
        if self.fail_writes is not None:
            raise self.fail_writes
        return await self.real.write(batch)

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        self._check()
        return await self.real.phone_owners(phones)

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]:
        self._check()
        if not keys:  # as the caller asked (no keys: the writer's own ids)
            return await self.real.create_customers(phones)
        return await self.real.create_customers(phones, keys)


DOWN = TimelineUnavailable("down (standing for an unreachable database)")


def recorder(writer: Switchable, spool_dir: Path, **kw: float) -> CallRecorder:
    options: dict[str, float] = {"write_timeout_s": 5, "retry_interval_s": 0.05, **kw}
    return CallRecorder(None, spool_dir, fast=writer, **options)  # type: ignore[arg-type]


_NONCE = re.compile(r"~[0-9a-f]{16}(?=:ivr$)")


def plain_id(event_id: str) -> str:
    """``voice:<call id>~<nonce>:ivr`` as ``voice:<call id>:ivr``: the nonce is random per
    call (``IncomingCall.nonce``); these tests name calls by their call id."""
    return _NONCE.sub("", event_id)


async def event_ids(url: str) -> list[str]:
    """The stored event ids, each as ``plain_id``, sorted."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = [r[0] for r in conn.execute("SELECT event_id FROM timeline_events")]
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            rows = [r[0] for r in await pg.fetch("SELECT event_id FROM timeline_events")]
        finally:
            await pg.close()
    return sorted(plain_id(r) for r in rows)


async def count(url: str, table: str) -> int:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            conn.close()
    pg = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await pg.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await pg.close()


async def until(condition: object, seconds: float = 5.0) -> None:
    """Wait until ``await condition()`` is true (a zero-argument coroutine function)."""
    for _ in range(int(seconds / 0.02)):
        if await condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached in time")

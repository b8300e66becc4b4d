"""Redeeming a continuation link on a real engine (SQLite and PostgreSQL timelines, real
HTTP): single use survives a restart and holds across engine processes without Redis (the
timeline event ``continuation:{jti}`` is the record)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp

from ivr_engine.app import Engine
from ivr_engine.ports import Identity
from tests.component.test_ivr_flow import settings_for, store

SECRET = "ab" * 32
PATH = "/v1/continuations/redeem"


async def started(url: str, spool: Path, **extra: object) -> Engine:
    engine = Engine(settings_for(url, spool, continuation_secret=SECRET, **extra))
    await engine.start()
    return engine


async def issue(engine: Engine, phone: str, case_id: str = "case-r1") -> str:
    customer_id = await store(engine).create_customer_for_identity(Identity("phone", phone))
    assert engine.continuation is not None
    return engine.continuation.tokens.issue(
        case_id=case_id, customer_id=customer_id, channel="chat"
    )


async def redeem(engine: Engine, token: str) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{engine.http_port}{PATH}"
    async with aiohttp.ClientSession() as http, http.post(url, json={"token": token}) as resp:
        return resp.status, await resp.json()


async def test_a_redeemed_link_stays_used_after_a_restart(
    database_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    first = await started(database_url, tmp_path / "first")
    try:
        token = await issue(first, new_phone())
        assert (await redeem(first, token))[0] == 200
        assert (await redeem(first, token))[0] == 409
    finally:
        await first.stop()
    assert first.continuation is not None
    customer_id = first.continuation.tokens.inspect(token).customer_id
    again = await started(database_url, tmp_path / "again")  # memory of the first: gone
    try:
        status, body = await redeem(again, token)
        assert status == 409 and body["error"] == {  # as a second redeem always answered
            "code": "token_used",
            "message": "this link was already used",
        }
        events = (await store(again).timeline(customer_id)).events
        assert [e.event_type for e in events].count("continuation.redeemed") == 1
    finally:
        await again.stop()


async def test_two_engines_on_one_timeline_redeem_a_link_once(
    database_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    a = await started(database_url, tmp_path / "a")
    b = await started(database_url, tmp_path / "b")
    try:
        token = await issue(a, new_phone())
        assert (await redeem(a, token))[0] == 200
        assert (await redeem(b, token))[0] == 409
        racing = await issue(a, new_phone(), case_id="case-r2")
        statuses = await asyncio.gather(*(redeem(e, racing) for e in (a, b, a, b)))
        assert sorted(status for status, _ in statuses) == [200, 409, 409, 409]
    finally:
        await b.stop()
        await a.stop()


async def test_redis_down_does_not_burn_the_link(
    database_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """The timeline holds the record; a used-token Redis that is down (nothing listens on
    port 1) is logged, not answered 503 "try again" after the link was consumed."""
    down = "redis://127.0.0.1:1/0"
    engine = await started(database_url, tmp_path / "e", continuation_redis_url=down)
    try:
        token = await issue(engine, new_phone())
        status, body = await redeem(engine, token)
        assert status == 200, body
        assert (await redeem(engine, token))[0] == 409  # still single use
    finally:
        await engine.stop()

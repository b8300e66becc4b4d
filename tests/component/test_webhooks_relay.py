"""The webhook relay: the timeline is the outbox, so no committed event's delivery is lost.

Real SQLite and PostgreSQL, real child processes killed with SIGKILL, a real local aiohttp
receiver verifying every signature (``Receiver``). Waits are on the receiver's count, the
relay's passes and the dispatcher's ``wait_idle``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from crm_bridge.webhooks.relay import RelaySettings, WebhookRelay
from crm_bridge.webhooks.relay_cursor import RelayCursor
from crm_bridge.webhooks.relay_lease import RelayLease
from ivr_engine.ports import NewTimelineEvent
from ivr_engine.timeline import Timeline
from tests.component.test_webhooks_timeline import (
    FAST_RETRIES,
    Receiver,
    free_port,
    subscriptions,
)

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 15.0


def fast(name: str) -> RelaySettings:
    return RelaySettings(name=name, poll_interval_s=0.05, lease_s=1.0)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    crm = Receiver()
    yield crm
    await crm.stop()


async def child(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.component.webhook_relay_child", *args,
        cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def line_of(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT_S * 2):
        return (await proc.stdout.readline()).decode().strip()


def event(customer: str, name: str) -> NewTimelineEvent:
    return NewTimelineEvent(
        event_id=f"{name}-{uuid.uuid4().hex}",
        customer_id=customer,
        occurred_at=datetime.now(UTC),
        channel="web",
        event_type="order.shipped",
        data={"name": name},
    )


def ids(receiver: Receiver) -> list[str]:
    return [envelope["data"]["event_id"] for _, envelope in receiver.got]


async def test_an_event_committed_before_a_sigkill_is_delivered_once_after_restart(
    database_url: str, timeline: Timeline, tmp_path: Path, receiver: Receiver
) -> None:
    port = free_port()  # the receiver is down while the child runs: nothing is delivered
    hooks, store, name = subscriptions(tmp_path, port), tmp_path / "hooks.db", uuid.uuid4().hex
    customer = (await timeline.store.create_customer(None, [])).customer_id
    proc = await child("commit-then-die", database_url, str(hooks), str(store), name, customer)
    parked, committed_only = (await line_of(proc)).split()
    assert await proc.wait() == -signal.SIGKILL

    await receiver.start(port)
    relay = await WebhookRelay.start(
        database_url, hooks, store, policy=FAST_RETRIES, settings=fast(name)
    )
    try:
        await receiver.wait_for(2)
        await relay.settle()
    finally:
        await relay.aclose()
    # parked by the dead process (its store) and committed only (the timeline): both, once
    assert sorted(ids(receiver)) == sorted([parked, committed_only])

    # A replay (the cursor moved back, as after a crash between park and cursor save)
    # parks nothing: the store knows those delivery ids.
    await rewind(database_url, name, timeline)
    relay = await WebhookRelay.start(
        database_url, hooks, store, policy=FAST_RETRIES, settings=fast(name)
    )
    try:
        await relay.settle()
        assert relay.relayed >= 2  # read again ...
    finally:
        await relay.aclose()
    assert sorted(ids(receiver)) == sorted([parked, committed_only])  # ... not sent again
    assert receiver.forged == 0


async def cursor_saved(database_url: str, name: str, timeout_s: float = 10.0) -> None:
    """Until relay ``name`` has saved a cursor past every committed timeline event."""
    from sqlalchemy import func, select

    from ivr_engine.timeline.engine import create_engines
    from ivr_engine.timeline.schema import timeline_events, webhook_relay
    from ivr_engine.timeline.urls import parse_database_url

    db = create_engines(parse_database_url(database_url), database_url, 1)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                async with db.writing() as conn:
                    top = (await conn.execute(select(func.max(timeline_events.c.seq)))).scalar()
                    high = (
                        await conn.execute(
                            select(webhook_relay.c.high_seq).where(webhook_relay.c.name == name)
                        )
                    ).scalar()
                if top is not None and high is not None and high >= top:
                    return
                await asyncio.sleep(0.05)
    finally:
        await db.dispose()


async def rewind(database_url: str, name: str, timeline: Timeline) -> None:
    from sqlalchemy import update

    from ivr_engine.timeline.engine import create_engines
    from ivr_engine.timeline.schema import webhook_relay
    from ivr_engine.timeline.urls import parse_database_url

    db = create_engines(parse_database_url(database_url), database_url, 1)
    try:
        async with db.writing() as conn:
            await conn.execute(
                update(webhook_relay)
                .where(webhook_relay.c.name == name)
                .values(high_seq=webhook_relay.c.high_seq - 2)
            )
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_an_out_of_order_commit_on_postgresql_is_not_skipped(
    pg_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    hooks = subscriptions(tmp_path, await receiver.start())
    name = uuid.uuid4().hex
    relay = await WebhookRelay.start(
        pg_url, hooks, tmp_path / "hooks.db", policy=FAST_RETRIES, settings=fast(name)
    )
    slow, quick = await asyncpg.connect(pg_url), await asyncpg.connect(pg_url)
    try:
        await relay.wait_leader()
        customer = uuid.uuid4().hex
        await slow.execute(
            "INSERT INTO customers (id, created_at, updated_at) VALUES ($1, now(), now())",
            customer,
        )
        slow_tx, quick_tx = slow.transaction(), quick.transaction()
        await slow_tx.start()
        await quick_tx.start()
        first = await insert(slow, customer, "slow")  # takes the lower seq ...
        second = await insert(quick, customer, "quick")
        assert second > first
        await quick_tx.commit()  # ... but commits last
        await receiver.wait_for(1)
        await relay.settle()  # the relay has moved past the open gap
        await slow_tx.commit()
        await receiver.wait_for(2)
        await relay.settle()
    finally:
        await slow.close()
        await quick.close()
        await relay.aclose()
    names = [envelope["data"]["data"]["name"] for _, envelope in receiver.got]
    assert names == ["quick", "slow"]


async def insert(conn: asyncpg.Connection, customer: str, name: str) -> int:
    seq: int = await conn.fetchval(
        "INSERT INTO timeline_events (event_id, customer_id, occurred_at, recorded_at,"
        " channel, event_type, data) VALUES ($1, $2, now(), now(), 'web', 'order.shipped',"
        " $3::jsonb) RETURNING seq",
        f"{name}-{uuid.uuid4().hex}",
        customer,
        f'{{"name": "{name}"}}',
    )
    return seq


async def test_concurrent_writers_are_all_delivered_once(
    database_url: str, timeline: Timeline, tmp_path: Path, receiver: Receiver
) -> None:
    hooks = subscriptions(tmp_path, await receiver.start())
    relay = await WebhookRelay.start(
        database_url, hooks, tmp_path / "hooks.db", policy=FAST_RETRIES, settings=fast("c")
    )
    try:
        customer = (await timeline.store.create_customer(None, [])).customer_id
        events = [event(customer, f"e{n}") for n in range(40)]
        await asyncio.gather(*(timeline.store.append_events([e]) for e in events))
        await receiver.wait_for(40)
        await relay.settle()
    finally:
        await relay.aclose()
    assert sorted(ids(receiver)) == sorted(e.event_id for e in events)


async def test_what_is_written_once_start_returns_is_delivered_and_nothing_older(
    database_url: str,
    timeline: Timeline,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The starting point of a new relay is stored before ``start`` returns. The first
    claim runs later, in the relay's task (here: late, as on a slow database), and used to
    take "the newest event" then: events written meanwhile were never delivered."""
    claim = RelayLease.claim

    async def late_claim(self: RelayLease, now_ms: int, lease_ms: int) -> RelayCursor | None:
        await asyncio.sleep(0.5)
        return await claim(self, now_ms, lease_ms)

    monkeypatch.setattr(RelayLease, "claim", late_claim)
    hooks, name = subscriptions(tmp_path, await receiver.start()), uuid.uuid4().hex
    customer = (await timeline.store.create_customer(None, [])).customer_id
    await timeline.store.append_events([event(customer, "history")])
    relay = await WebhookRelay.start(
        database_url, hooks, tmp_path / "hooks.db", policy=FAST_RETRIES, settings=fast(name)
    )
    try:
        events = [event(customer, f"new{n}") for n in range(5)]
        await timeline.store.append_events(events)
        await receiver.wait_for(5)
        await relay.settle()
    finally:
        await relay.aclose()
    assert sorted(ids(receiver)) == sorted(e.event_id for e in events)


async def test_two_relays_one_delivers_the_other_takes_over_when_it_dies(
    database_url: str, timeline: Timeline, tmp_path: Path, receiver: Receiver
) -> None:
    hooks, name = subscriptions(tmp_path, await receiver.start()), uuid.uuid4().hex
    first = await child("relay", database_url, str(hooks), str(tmp_path / "a.db"), name)
    standby: WebhookRelay | None = None
    try:
        assert await line_of(first) == "leading"
        standby = await WebhookRelay.start(
            database_url, hooks, tmp_path / "b.db", policy=FAST_RETRIES, settings=fast(name)
        )
        customer = (await timeline.store.create_customer(None, [])).customer_id
        before = [event(customer, f"before{n}") for n in range(5)]
        for e in before:
            await timeline.store.append_events([e])
        await receiver.wait_for(5)
        assert not standby.leader and standby.relayed == 0
        # Killed between parking and saving its cursor, the leader's batch would be sent
        # again by the standby (at least once, same X-Seed-Delivery: docs/webhooks.md, case
        # b); this test is about what happens after the cursor was saved.
        await cursor_saved(database_url, name)

        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        after = [event(customer, f"after{n}") for n in range(5)]
        await timeline.store.append_events(after)
        await receiver.wait_for(10)  # after the dead leader's lease expired
        await standby.settle()
        assert standby.leader
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
        if standby is not None:
            await standby.aclose()
    assert ids(receiver) == [e.event_id for e in before + after]  # each once, in order
    assert receiver.forged == 0

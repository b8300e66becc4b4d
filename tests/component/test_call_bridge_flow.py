"""The whole bridge in one process: fake AMI peer (TCP) → reader → SQLite outbox → Redis bus
(real, 127.0.0.1:6379) → consumer → timeline (real SQLite and PostgreSQL).

Each test uses its own bus stream (and deletes its keys); waits are on the consumer's
commit counter, never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from crm_bridge.bus import DEFAULT_PREFIX
from crm_bridge.calls import Bridge, BridgeSettings
from ivr_engine.ports import Identity, StoredEvent, TimelineStore
from ivr_engine.telephony.ami import AmiEvent
from ivr_engine.timeline.migrate import upgrade
from tests.component.conftest import PG_ADMIN_URL
from tests.component.test_ami_fake_peer import FakeAmi
from tests.component.test_call_bridge_fakes import FakeAsterisk
from tests.component.test_call_bridge_normalise import run
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

WAIT_S = 15.0


def settings_over(database_url: str, tmp_path: Path, **values: Any) -> BridgeSettings:
    """The bridge's settings for a test (a stream of its own, quick retries) with ``values``
    (the call source's URL and any other setting) on top."""
    defaults: dict[str, Any] = {
        "database_url": database_url,
        "bus_url": REDIS_URL,
        "stream": f"calls-{uuid.uuid4().hex[:12]}",
        "outbox_path": tmp_path / "call-outbox.db",
        "consumer_name": "c1",
        "db_retry_cap_s": 0.2,
        "shutdown_grace_s": 2.0,
    }
    return BridgeSettings.build(**(defaults | values))


def bridge_settings(
    peer: FakeAmi, database_url: str, tmp_path: Path, **extra: Any
) -> BridgeSettings:
    ami_url = f"ami://{peer.username}:{peer.secret}@127.0.0.1:{peer.port}"
    return settings_over(database_url, tmp_path, **({"ami_url": ami_url} | extra))


def switch_clock(fake: FakeAsterisk) -> Callable[[], datetime]:
    """The bridge's clock follows the fake switch's (its events carry switch time)."""
    return lambda: datetime.fromtimestamp(fake.switch.t, UTC)


@contextlib.asynccontextmanager
async def running(
    settings: BridgeSettings, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[Bridge]:
    if not settings.in_process_bus:
        await require_redis()
    bridge = Bridge(settings, ami_backoff=(0.01, 0.05), clock=clock)
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()
        await delete_prefix(f"{DEFAULT_PREFIX}{{{settings.stream}}}")


async def committed(bridge: Bridge, count: int) -> None:
    assert bridge.consumer is not None
    await bridge.consumer.wait_committed(count, WAIT_S)


async def events_of(store: TimelineStore, customer_id: str) -> list[StoredEvent]:
    page = await store.timeline(customer_id, limit=200)
    return sorted(page.events, key=lambda e: e.seq)


async def customer_of(store: TimelineStore, phone: str) -> str:
    (customer,) = await store.find_customers(Identity("phone", phone))
    return customer.customer_id


def store_of(bridge: Bridge) -> TimelineStore:
    assert bridge.timeline is not None
    return bridge.timeline.store


async def test_calls_land_once_on_the_right_customers_and_a_replay_writes_nothing(
    database_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    new, shared, known = new_phone(), new_phone(), new_phone()
    async with FakeAmi() as peer, running(bridge_settings(peer, database_url, tmp_path)) as bridge:
        store = store_of(bridge)
        regular = await store.create_customer("Known", [Identity("phone", known)])
        for name in ("Ann", "Bob"):  # one number, two customers: never guessed
            await store.create_customer(name, [Identity("phone", shared)])
        fake = FakeAsterisk(peer)
        await peer.next_login()
        calls = [fake.switch.agent_call(p, hold_s=5) for p in (new, shared, known)]
        withheld = fake.switch.inbound("anonymous")
        fake.switch.answer(withheld)
        fake.switch.fallback(withheld)
        fake.switch.hangup(withheld)
        await fake.flush()
        await committed(bridge, 7 * 3 + 3)

        created = await customer_of(store, new)
        assert [e.event_type for e in await events_of(store, created)] == [
            "call.started", "call.ivr_routed", "call.transferred", "call.answered_by_agent",
            "call.held", "call.resumed", "call.ended",
        ]  # fmt: skip
        ended = (await events_of(store, regular.customer_id))[-1]
        assert ended.data["total_ms"] == 47_500 and ended.data["hold_ms"] == 5000
        assert ended.data["talk_ms"] == 35_000 and ended.data["wait_ms"] == 12_500
        assert ended.data["call_id"] == calls[2].uniqueid and ended.channel == "voice"
        for owner in await store.find_customers(Identity("phone", shared)):
            assert await events_of(store, owner.customer_id) == []
        assert bridge.consumer is not None
        resolver = bridge.consumer.resolver
        unlinked = resolver.customer_of_call(calls[1].uniqueid)
        assert unlinked is not None and len(await events_of(store, unlinked)) == 7
        assert (await store.get_customer(unlinked)).identities == ()  # type: ignore[union-attr]
        anonymous = resolver.customer_of_call(withheld.uniqueid)
        assert anonymous not in (None, unlinked)
        assert len(await events_of(store, anonymous)) == 3  # type: ignore[arg-type]
        assert resolver.unlinked == 2

        # The same AMI events normalised again, published again: consumed, nothing written.
        replay = [e.to_bus() for e in run([AmiEvent(tuple(p)) for p in fake.delivered])]
        assert bridge.bus is not None
        await bridge.bus.publish(bridge.settings.stream, replay)
        await committed(bridge, 2 * (7 * 3 + 3))
        assert len(await events_of(store, created)) == 7
        assert len(await events_of(store, unlinked)) == 7


async def test_ami_gap_and_asterisk_restart_are_reconciled(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    a, b, c, d = (new_phone() for _ in range(4))
    async with FakeAmi() as peer:
        fake = FakeAsterisk(peer)
        settings = bridge_settings(peer, sqlite_url, tmp_path)
        async with running(settings, switch_clock(fake)) as bridge:
            assert bridge.reader is not None and bridge.ami is not None
            await _gap_and_restart(bridge, fake, a, b, c, d)


async def _gap_and_restart(
    bridge: Bridge, fake: FakeAsterisk, a: str, b: str, c: str, d: str
) -> None:
    """A: ends during an AMI gap; B: lives through it; C: starts in it; D: killed by an
    Asterisk restart."""
    assert bridge.reader is not None and bridge.ami is not None
    store, sw, peer = store_of(bridge), fake.switch, fake.peer
    await peer.next_login()
    call_a, call_b = sw.inbound(a), sw.inbound(b)
    sw.answer(call_a)
    sw.answer(call_b)
    await fake.flush()
    await committed(bridge, 2)

    await peer.stop()  # AMI connection lost; Asterisk and its calls go on
    sw.advance(20)
    sw.hangup(call_a)  # never seen
    call_c = sw.inbound(c)  # never seen
    sw.advance(4)
    await fake.flush()
    assert len(fake.lost) == 2
    await peer.start()
    await peer.next_login()
    await committed(bridge, 4)  # A closed from the channel list, C adopted
    sw.advance(6)
    sw.hangup(call_b)
    sw.hangup(call_c)
    await fake.flush()
    await committed(bridge, 6)

    (a_start, a_end) = await events_of(store, await customer_of(store, a))
    assert a_end.event_type == "call.ended" and a_end.data["approximate"] is True
    assert a_end.data["cause"] is None and "not connected" in a_end.data["cause_txt"]
    b_end = (await events_of(store, await customer_of(store, b)))[-1]
    assert b_end.data["cause"] == 16 and b_end.data["total_ms"] == 30_000
    assert "approximate" not in b_end.data
    c_start, c_end = await events_of(store, await customer_of(store, c))
    assert c_start.data["recovered"] is True and c_end.data["approximate"] is True
    assert c_end.data["cause"] == 16 and c_end.data["total_ms"] == 10_000

    call_d = sw.inbound(d)
    await fake.flush()
    await committed(bridge, 7)
    logins = bridge.ami.logins
    await fake.restart()  # Asterisk restarts: D dies without a Hangup
    await peer.next_login()
    await committed(bridge, 8)
    assert bridge.ami.logins == logins + 1
    d_end = (await events_of(store, await customer_of(store, d)))[-1]
    assert d_end.data["call_id"] == call_d.uniqueid and d_end.data["approximate"] is True
    assert bridge.reader.resyncs == 3 and not bridge.reader.state.calls
    assert a_start.event_type == "call.started"


async def _pending_on_bus(stream: str, group: str, partitions: int) -> int:
    client = Redis.from_url(REDIS_URL)
    try:
        total = 0
        for n in range(partitions):
            info = await client.xpending(f"{DEFAULT_PREFIX}{{{stream}}}:p{n}", group)
            total += int(info["pending"])
        return total
    finally:
        await client.aclose()


async def _admin(sql: str, *args: object) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def _eventually(check: Callable[[], Coroutine[Any, Any, bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.postgres
async def test_database_down_keeps_events_unacked_and_writes_them_when_back(
    tmp_path: Path,
    new_pg_database: Callable[[], Coroutine[Any, Any, str]],
    new_phone: Callable[[], str],
) -> None:
    """A dedicated database made unreachable (``ALLOW_CONNECTIONS false`` + its sessions
    terminated: binds even superusers); the shared server keeps running."""
    url = await new_pg_database()
    await upgrade(url)
    name = url.rsplit("/", 1)[1]
    phones = [new_phone() for _ in range(4)]
    async with FakeAmi() as peer:
        settings = bridge_settings(peer, url, tmp_path)
        async with running(settings) as bridge:
            assert bridge.consumer is not None
            store, fake = store_of(bridge), FakeAsterisk(peer)
            await peer.next_login()
            for phone in phones[:2]:
                fake.switch.agent_call(phone)
            await fake.flush()
            await committed(bridge, 10)
            try:
                await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await _admin(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                for phone in phones[2:]:
                    fake.switch.agent_call(phone)
                await fake.flush()
                consumer = bridge.consumer
                await _eventually(lambda: _true(consumer.db_retries >= 3), "failed writes")
                assert consumer.committed == 10
                pending = await _pending_on_bus(settings.stream, settings.group, 8)
                assert pending > 0  # delivered, not acknowledged
            finally:
                await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await committed(bridge, 20)
            assert await _pending_on_bus(settings.stream, settings.group, 8) == 0
            for phone in phones:
                events = await events_of(store, await customer_of(store, phone))
                assert [e.event_type for e in events].count("call.ended") == 1
                assert len(events) == 5


async def _true(value: bool) -> bool:
    return value


async def test_in_process_bus_deletes_outbox_rows_only_once_written(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    async with FakeAmi() as peer:
        settings = bridge_settings(peer, sqlite_url, tmp_path, bus_url=None)
        async with running(settings) as bridge:
            fake = FakeAsterisk(peer)
            await peer.next_login()
            fake.switch.agent_call(phone)
            await fake.flush()
            await committed(bridge, 5)
            assert bridge.outbox is not None and bridge.publisher is not None
            await _eventually(lambda: _empty(bridge), "outbox rows deleted")
            store = store_of(bridge)
            assert len(await events_of(store, await customer_of(store, phone))) == 5


async def _empty(bridge: Bridge) -> bool:
    assert bridge.outbox is not None
    return await bridge.outbox.pending() == 0


async def test_an_ami_event_the_normaliser_fails_on_is_skipped_not_the_end_of_the_bridge(
    sqlite_url: str,
    tmp_path: Path,
    new_phone: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import crm_bridge.calls.reader as reader_module

    real, failed = reader_module.normalise, []

    def buggy_once(event: AmiEvent, *args: Any, **kwargs: Any) -> Any:
        if event.name == "Newchannel" and not failed:
            failed.append(event)
            raise KeyError("a bug in the normaliser")
        return real(event, *args, **kwargs)

    monkeypatch.setattr(reader_module, "normalise", buggy_once)
    first, second = new_phone(), new_phone()
    async with FakeAmi() as peer:
        settings = bridge_settings(peer, sqlite_url, tmp_path, bus_url=None)
        async with running(settings) as bridge:
            fake = FakeAsterisk(peer)
            await peer.next_login()
            fake.switch.agent_call(first)  # its start is lost: the rest of it are strays
            fake.switch.agent_call(second)
            await fake.flush()
            await committed(bridge, 5)
            store = store_of(bridge)
            assert len(await events_of(store, await customer_of(store, second))) == 5
            assert bridge.reader is not None and bridge.reader.events_skipped == 1
    assert "AMI Newchannel" in caplog.text and "skipped (1 so far)" in caplog.text

"""Every timeline event source reaches webhook subscribers, once, after the commit.

The webhook relay tails the committed timeline (nothing is announced by the writers). A
real local aiohttp receiver verifies each signature. Sources: the text-channel API
(``POST /v1/messages``, conversation close), the generic ``POST /v1/events``, the engine's
composition root, and the call bridge (fake AMI peer → outbox → Redis bus → consumer →
timeline → relay). Real SQLite and PostgreSQL. Waits are on the receiver's count and the
relay's ``settle`` (a whole pass, then the dispatcher's ``wait_idle``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm_bridge.calls import BridgeSettings
from crm_bridge.webhooks import DeliveryPolicy, verify_signature
from crm_bridge.webhooks.fan_out import OutboundEvent
from crm_bridge.webhooks.relay import RelaySettings, WebhookRelay
from crm_bridge.webhooks.timeline_payload import outbound_event, webhook_event_id
from ivr_engine.app import Engine
from ivr_engine.ports import StoredEvent
from ivr_engine.telephony.ami import AmiEvent
from ivr_engine.timeline import Timeline
from ivr_engine.timeline.migrate import upgrade
from tests.component.api_client import Client, timeline_api
from tests.component.test_ami_fake_peer import FakeAmi
from tests.component.test_call_bridge_fakes import FakeAsterisk, Switch
from tests.component.test_call_bridge_flow import bridge_settings, committed, running
from tests.component.test_call_bridge_normalise import run
from tests.component.test_ivr_flow import settings_for

SECRET = "receiver-secret-0123456789"
FAST_RETRIES = DeliveryPolicy(max_attempts=100, base_delay_s=0.02, max_delay_s=0.1)
WAIT_S = 15.0
AMI_URL = "ami://user:secret@127.0.0.1:5038"


class Receiver:
    """A CRM: verifies every signature (401 otherwise), records (type, envelope)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.forged = 0
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> int:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            verify_signature(SECRET, request.headers, raw, time.time())
        except Exception:
            self.forged += 1
            return web.Response(status=401)
        async with self._arrived:
            self.got.append((request.headers["X-Seed-Event"], json.loads(raw)))
            self._arrived.notify_all()
        return web.Response(status=204)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S), self._arrived:
            await self._arrived.wait_for(lambda: len(self.got) >= count)

    def types(self) -> list[str]:
        return [event_type for event_type, _ in self.got]

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [envelope for t, envelope in self.got if t == event_type]


def subscriptions(tmp_path: Path, port: int, events: str = '["*"]') -> Path:
    path = tmp_path / f"webhooks-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        "subscriptions:\n"
        f"  - id: crm\n    url: http://127.0.0.1:{port}/hook\n    secret: {SECRET}\n"
        f"    events: {events}\n",
        encoding="utf-8",
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def settled(relay: WebhookRelay) -> None:
    """Everything committed so far was relayed and delivered (or dead-lettered)."""
    await relay.settle(WAIT_S)


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():  # noqa: ASYNC110 (counters of the relay and dispatcher)
            await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    crm = Receiver()
    yield crm
    await crm.stop()


@contextlib.asynccontextmanager
async def api_with_relay(
    database_url: str, timeline: Timeline, hooks: Path, store: Path
) -> AsyncIterator[tuple[Client, WebhookRelay]]:
    settings = RelaySettings(name=uuid.uuid4().hex, poll_interval_s=0.05)  # a cursor of its own
    relay = await WebhookRelay.start(
        database_url, hooks, store, policy=FAST_RETRIES, settings=settings
    )
    app = timeline_api(timeline)
    try:
        await relay.wait_leader()
        async with TestClient(TestServer(app)) as client:
            yield client, relay
    finally:
        await relay.aclose(1.0)


async def post(client: Client, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    resp = await client.post(path, json=body)
    text = await resp.text()
    assert resp.status == status, text
    result: dict[str, Any] = json.loads(text)
    return result


async def test_api_messages_closes_and_events_are_delivered_once(
    database_url: str, timeline: Timeline, tmp_path: Path, receiver: Receiver
) -> None:
    hooks = subscriptions(tmp_path, await receiver.start())
    db = (database_url, timeline)
    async with api_with_relay(*db, hooks, tmp_path / "hooks.db") as (client, relay):
        handle = f"web-{uuid.uuid4().hex[:10]}"
        chat = {"message_id": uuid.uuid4().hex, "channel": "chat", "direction": "inbound"}
        chat |= {"from": handle, "text": "where is my parcel?", "intent": "orders"}
        first = await post(client, "/v1/messages", chat, 201)
        conv, customer = first["conversation_id"], first["customer_id"]
        reply = {"message_id": uuid.uuid4().hex, "channel": "chat", "direction": "outbound"}
        reply |= {
            "conversation_id": conv,
            "to": handle,
            "text": "on its way",
            "agent_id": "agent.7",
        }
        second = await post(client, "/v1/messages", reply, 201)
        await post(client, f"/v1/conversations/{conv}/close", {"reason": "resolved"}, 201)
        event = {"event_id": f"crm/{uuid.uuid4().hex}", "customer_id": customer}
        event |= {"channel": "web", "event_type": "order.shipped", "data": {"n": 1}}
        await post(client, "/v1/events", event, 201)
        note = {"event_id": uuid.uuid4().hex, "customer_id": customer, "channel": "web"}
        note |= {"event_type": "note", "data": {"text": "called back"}}
        await post(client, "/v1/events", note, 201)
        await receiver.wait_for(5)

        # Replays: the same client ids again, and a close with nothing new.
        assert (await post(client, "/v1/messages", chat, 200))["inserted"] is False
        assert (await post(client, "/v1/messages", reply, 200))["inserted"] is False
        await post(client, f"/v1/conversations/{conv}/close", {}, 200)
        assert (await post(client, "/v1/events", event, 200))["inserted"] is False
        await settled(relay)

    assert receiver.forged == 0
    assert receiver.types() == [
        "message.inbound", "message.outbound", "case.closed", "order.shipped", "timeline.event",
    ]  # fmt: skip
    (inbound,) = receiver.of("message.inbound")
    assert inbound["id"] == first["event_id"] == inbound["data"]["event_id"]
    data = inbound["data"]
    assert data["channel"] == "chat" and data["case_id"] == conv and data["intent"] == "orders"
    assert data["customer_id"] == customer and data["data"]["text"] == "where is my parcel?"
    assert isinstance(data["seq"], int)
    (outbound,) = receiver.of("message.outbound")
    assert outbound["data"]["event_id"] == second["event_id"]
    assert outbound["data"]["data"]["agent_id"] == "agent.7"
    (closed,) = receiver.of("case.closed")
    assert closed["data"]["case_id"] == conv and closed["data"]["data"]["reason"] == "resolved"
    (shipped,) = receiver.of("order.shipped")
    assert shipped["data"]["event_id"] == event["event_id"]  # the timeline id, as given
    assert shipped["id"] == webhook_event_id(event["event_id"]) != event["event_id"]
    (other,) = receiver.of("timeline.event")
    assert other["data"]["event_type"] == "note" and other["id"] == note["event_id"]


async def test_numbers_beyond_javascripts_safe_range_are_sent_as_strings_not_refused(
    database_url: str, timeline: Timeline, tmp_path: Path, receiver: Receiver
) -> None:
    """PostgreSQL keeps 1e23 as the integer 10**23: the dispatcher used to refuse (and skip)
    such an event; it is sent, the same from both databases."""
    hooks = subscriptions(tmp_path, await receiver.start())
    db = (database_url, timeline)
    async with api_with_relay(*db, hooks, tmp_path / "hooks.db") as (client, relay):
        who = {"identities": [{"kind": "email", "value": f"{uuid.uuid4().hex}@example.com"}]}
        customer = (await post(client, "/v1/customers", who, 201))["customer_id"]
        data = {"f": 1e23, "id64": 2**64 + 1, "safe": 2**53 - 1, "x": 1.5, "in": [-(10**20)]}
        event = {"event_id": uuid.uuid4().hex, "customer_id": customer, "channel": "web"}
        event |= {"event_type": "order.placed", "data": data}
        await post(client, "/v1/events", event, 201)
        await receiver.wait_for(1)
        await settled(relay)
    (placed,) = receiver.of("order.placed")
    assert placed["data"]["data"] == {
        "f": "100000000000000000000000",
        "id64": str(2**64 + 1),
        "safe": 2**53 - 1,
        "x": 1.5,
        "in": [str(-(10**20))],
    }


async def test_a_render_failing_on_one_event_sends_it_plain_and_the_relay_goes_on(
    database_url: str, timeline: Timeline, tmp_path: Path, receiver: Receiver
) -> None:
    def render(event: StoredEvent) -> OutboundEvent:
        if event.data.get("poison"):
            raise KeyError("a render bug")
        return outbound_event(event)

    hooks = subscriptions(tmp_path, await receiver.start())
    settings = RelaySettings(name=uuid.uuid4().hex, poll_interval_s=0.05)
    relay = await WebhookRelay.start(
        database_url, hooks, tmp_path / "hooks.db", policy=FAST_RETRIES, settings=settings,
        render=render,
    )  # fmt: skip
    app = timeline_api(timeline)
    try:
        await relay.wait_leader()
        async with TestClient(TestServer(app)) as client:
            who = {"identities": [{"kind": "email", "value": f"{uuid.uuid4().hex}@example.com"}]}
            customer = (await post(client, "/v1/customers", who, 201))["customer_id"]
            for n, poison in enumerate([False, True, False]):
                event = {"event_id": f"r{n}-{uuid.uuid4().hex}", "customer_id": customer}
                event |= {"channel": "web", "event_type": "order.placed"}
                event |= {"data": {"n": n, "poison": poison}}
                await post(client, "/v1/events", event, 201)
            await receiver.wait_for(3)
    finally:
        await relay.aclose(1.0)
    assert [e["data"]["data"]["n"] for e in receiver.of("order.placed")] == [0, 1, 2]


async def test_receiver_down_does_not_slow_or_fail_the_api(
    database_url: str, timeline: Timeline, tmp_path: Path, receiver: Receiver
) -> None:
    port = free_port()  # nobody listens there yet
    hooks = subscriptions(tmp_path, port, "[message.inbound]")
    db = (database_url, timeline)
    async with api_with_relay(*db, hooks, tmp_path / "hooks.db") as (client, relay):
        started = time.monotonic()
        for n in range(20):
            body = {"message_id": uuid.uuid4().hex, "channel": "sms", "direction": "inbound"}
            body |= {"from": f"+1555300{n:04d}", "text": f"hello {n}"}
            await post(client, "/v1/messages", body, 201)
        assert time.monotonic() - started < 5.0  # connection refused costs the API nothing
        await until(lambda: relay.relayed >= 20)
        await until(lambda: "crm" in relay.dispatcher.lanes())
        assert relay.dispatcher.lanes()["crm"].in_flight is not None  # being retried
        assert receiver.got == []

        await receiver.start(port)  # the CRM comes back: the retries deliver, in order
        await receiver.wait_for(20)
        await settled(relay)
    texts = [envelope["data"]["data"]["text"] for envelope in receiver.of("message.inbound")]
    assert texts == [f"hello {n}" for n in range(20)]


async def test_engine_feeds_the_api_events_to_its_webhooks(
    sqlite_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    hooks = subscriptions(tmp_path, await receiver.start(), "[message.*]")
    engine = Engine(settings_for(sqlite_url, tmp_path, webhooks_file=hooks))
    await engine.start()
    try:
        url = f"http://127.0.0.1:{engine.http_port}/v1/messages"
        body = {"message_id": uuid.uuid4().hex, "channel": "email", "direction": "inbound"}
        body |= {"from": f"{uuid.uuid4().hex[:8]}@example.com", "text": "hi", "subject": "Q"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=body) as resp:
                assert resp.status == 201, await resp.text()
            await receiver.wait_for(1)
            async with http.post(url, json=body) as resp:
                assert resp.status == 200
        assert engine.webhooks is not None
        await settled(engine.webhooks)
    finally:
        await engine.stop()
    (inbound,) = receiver.of("message.inbound")
    assert inbound["data"]["channel"] == "email" and inbound["data"]["data"]["subject"] == "Q"
    assert (tmp_path / "spool" / "webhooks.db").exists()


async def test_bridge_call_events_are_delivered_once_even_when_replayed(
    database_url: str,
    tmp_path: Path,
    receiver: Receiver,
    new_phone: Callable[[], str],
    new_pg_database: Callable[[], Coroutine[Any, Any, str]],
) -> None:
    if database_url.startswith("postgresql"):  # the bridge's relay starts where it left off
        database_url = await new_pg_database()
        await upgrade(database_url)
    hooks = subscriptions(tmp_path, await receiver.start(), '["call.*"]')
    phone = new_phone()
    async with FakeAmi() as peer:
        settings = bridge_settings(
            peer,
            database_url,
            tmp_path,
            webhooks_file=hooks,
            webhooks_store=tmp_path / "bridge-hooks.db",
        )
        async with running(settings) as bridge:
            fake = FakeAsterisk(peer, Switch(prefix=uuid.uuid4().hex[:8]))  # ids of its own
            await peer.next_login()
            call = fake.switch.agent_call(phone, hold_s=5)
            await fake.flush()
            await committed(bridge, 7)
            await receiver.wait_for(7)
        # A new bridge process (nothing in memory) gets the same AMI events normalised and
        # published again, as an outbox replay after a crash: consumed and acknowledged,
        # nothing written, nothing delivered.
        replay = [e.to_bus() for e in run([AmiEvent(tuple(p)) for p in fake.delivered])]
        async with running(settings) as again:
            assert again.bus is not None and again.webhooks is not None
            await again.bus.publish(settings.stream, replay)
            await committed(again, 7)
            await settled(again.webhooks)
    assert receiver.forged == 0
    assert receiver.types() == [
        "call.started", "call.ivr_routed", "call.transferred", "call.answered_by_agent",
        "call.held", "call.resumed", "call.ended",
    ]  # fmt: skip
    ended = receiver.of("call.ended")[0]["data"]
    assert ended["channel"] == "voice" and ended["data"]["call_id"] == call.uniqueid
    assert ended["data"]["caller"] == phone and ended["data"]["hold_ms"] == 5000
    ids = [envelope["data"]["event_id"] for _, envelope in receiver.got]
    assert len(set(ids)) == 7


def test_the_bridge_process_takes_the_engines_webhooks_file_with_its_own_store(
    tmp_path: Path,
) -> None:
    hooks = subscriptions(tmp_path, 9)
    engine = settings_for("sqlite:///x.db", tmp_path, webhooks_file=hooks, ami_url=AMI_URL)
    bridge = BridgeSettings.from_engine(engine)
    assert bridge.webhooks_file == hooks
    assert bridge.webhooks_store == tmp_path / "spool" / "bridge-webhooks.db"
    assert bridge.webhooks_store != engine.spool_dir / "webhooks.db"  # one dispatcher a file

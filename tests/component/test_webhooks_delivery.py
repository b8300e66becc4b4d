"""Webhook delivery against a real aiohttp receiver on 127.0.0.1 (an ephemeral port).

The receiver verifies every request with ``verify_signature`` exactly as a CRM would, and
answers from a per-subscription script (status, headers, or a stall until released). Tests
synchronise on the receiver's hits and ``wait_idle()``, never on sleeps; back-off sleeps are
recorded (and skipped) through the dispatcher's ``sleep`` hook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from crm_bridge.webhooks import (
    DeadLetter,
    Delivery,
    DeliveryPolicy,
    DeliveryStore,
    DeliveryStoreError,
    DispatcherNotRunning,
    InMemoryDeliveryStore,
    InvalidEvent,
    SqliteDeliveryStore,
    Subscription,
    SubscriptionRegistry,
    WebhookDispatcher,
    WebhookSignatureError,
    verify_signature,
)

SECRETS = {name: f"{name}-secret-0123456789" for name in ("crm", "slow", "fast")}
FAST = DeliveryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.1, timeout_s=2.0)


@dataclass(frozen=True)
class Step:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    stall: bool = False  # hold the answer until ``Receiver.release`` is set


@dataclass(frozen=True)
class Hit:
    subscription: str
    headers: dict[str, str]
    body: bytes
    verified: str  # "ok", or the name of the verification error
    status: int

    @property
    def doc(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.body)
        return doc

    @property
    def seq(self) -> int:
        data = self.doc["data"]
        assert isinstance(data, dict)
        seq = data["seq"]
        assert isinstance(seq, int)
        return seq


class Receiver:
    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.scripts: dict[str, deque[Step]] = {}
        self.release = asyncio.Event()
        self.changed = asyncio.Condition()
        self.url = ""

    def script(self, subscription: str, *steps: Step) -> None:
        self.scripts[subscription] = deque(steps)

    def of(self, subscription: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.subscription == subscription]

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        try:
            verify_signature(SECRETS[name], request.headers, body, time.time())
            verified = "ok"
        except WebhookSignatureError as exc:
            verified = type(exc).__name__
        plan = self.scripts.get(name)
        step = plan.popleft() if plan else Step()
        async with self.changed:
            self.hits.append(Hit(name, dict(request.headers), body, verified, step.status))
            self.changed.notify_all()
        if step.stall:
            await self.release.wait()
        return web.Response(status=step.status, headers=step.headers, text=step.text)

    async def wait_for(self, ready: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(ready)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{name}", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}/hooks/"
    yield receiver
    receiver.release.set()
    await runner.cleanup()


class Sleeps:
    """The dispatcher's back-off sleeps: recorded, and skipped."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def registry(receiver: Receiver, *names: str, events: str = "*") -> SubscriptionRegistry:
    return SubscriptionRegistry(
        Subscription(name, receiver.url + name, SECRETS[name], frozenset({events}))
        for name in names
    )


def dispatcher(
    subscriptions: SubscriptionRegistry,
    store: DeliveryStore | None = None,
    policy: DeliveryPolicy = FAST,
    sleeps: Sleeps | None = None,
) -> WebhookDispatcher:
    return WebhookDispatcher(
        subscriptions, store or InMemoryDeliveryStore(), policy=policy, sleep=sleeps or Sleeps()
    )


async def idle(hooks: WebhookDispatcher) -> None:
    async with asyncio.timeout(5):
        await hooks.wait_idle()


# --------------------------------------------------------------------------- signing


async def test_receiver_verifies_signature_and_gets_documented_headers(
    receiver: Receiver,
) -> None:
    async with dispatcher(registry(receiver, "crm", events="call.*")) as hooks:
        ids = await hooks.publish("call.ended", {"customer_id": "c-1", "seq": 0})
        assert await hooks.publish("chat.message", {"seq": 1}) == []  # not subscribed
        await idle(hooks)
    [hit] = receiver.hits
    assert hit.verified == "ok"
    assert hit.headers["X-Seed-Event"] == "call.ended"
    assert [hit.headers["X-Seed-Delivery"]] == ids
    assert abs(int(hit.headers["X-Seed-Timestamp"]) - time.time()) < 5
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"] == "seed-webhooks/1"
    assert hit.doc["type"] == "call.ended"
    assert hit.doc["data"] == {"customer_id": "c-1", "seq": 0}
    with pytest.raises(WebhookSignatureError):
        verify_signature("not-the-secret-xxxxx", hit.headers, hit.body, time.time())


# --------------------------------------------------------------------------- retries


async def test_retries_after_500_and_429_honouring_retry_after_then_succeeds(
    receiver: Receiver,
) -> None:
    receiver.script("crm", Step(500), Step(429, {"Retry-After": "7"}), Step(200))
    sleeps = Sleeps()
    async with dispatcher(registry(receiver, "crm"), sleeps=sleeps) as hooks:
        [delivery_id] = await hooks.publish("call.ivr", {"seq": 0})
        await idle(hooks)
        assert await hooks.dead_letters() == []
    assert [h.status for h in receiver.hits] == [500, 429, 200]
    assert {h.headers["X-Seed-Delivery"] for h in receiver.hits} == {delivery_id}
    assert all(h.verified == "ok" for h in receiver.hits)
    assert 0.005 <= sleeps.delays[0] <= 0.01  # exponential back-off with jitter
    assert sleeps.delays[1] == 7.0  # Retry-After honoured


async def test_a_retry_after_of_non_ascii_digits_is_ignored_and_the_lane_goes_on(
    receiver: Receiver,
) -> None:
    # "²".isdigit() is True and float("²") fails: that ValueError used to end the lane's
    # task, and the subscription got nothing more until a restart
    receiver.script("crm", Step(503, {"Retry-After": "\u00b2"}), Step(200), Step(200))
    sleeps = Sleeps()
    async with dispatcher(registry(receiver, "crm"), sleeps=sleeps) as hooks:
        await hooks.publish("call.ivr", {"seq": 0})
        await idle(hooks)
        await hooks.publish("call.ivr", {"seq": 1})
        await idle(hooks)
        assert await hooks.dead_letters() == []
    assert [(h.status, h.seq) for h in receiver.hits] == [(503, 0), (200, 0), (200, 1)]
    assert sleeps.delays[0] < 1.0  # the header ignored: the policy's own back-off


async def test_an_unexpected_error_in_an_attempt_is_retried_not_the_end_of_the_lane(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import crm_bridge.webhooks.lane_worker as lane_worker

    real = lane_worker.post_delivery
    calls = 0

    async def buggy_once(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the sender")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lane_worker, "post_delivery", buggy_once)
    with caplog.at_level(logging.ERROR, logger="crm_bridge.webhooks"):
        async with dispatcher(registry(receiver, "crm")) as hooks:
            await hooks.publish("call.ivr", {"seq": 0})
            await idle(hooks)
            await hooks.publish("call.ivr", {"seq": 1})
            await idle(hooks)
            assert await hooks.dead_letters() == []
    assert [h.seq for h in receiver.hits] == [0, 1]  # retried, then the lane went on
    assert "attempt failed unexpectedly" in caplog.text


async def test_400_is_not_retried_and_goes_to_the_dead_letters(receiver: Receiver) -> None:
    receiver.script("crm", Step(400, text="unknown customer"))
    sleeps = Sleeps()
    async with dispatcher(registry(receiver, "crm"), sleeps=sleeps) as hooks:
        [delivery_id] = await hooks.publish("call.ended", {"seq": 0})
        await idle(hooks)
        [letter] = await hooks.dead_letters()
    assert len(receiver.hits) == 1 and sleeps.delays == []
    assert letter.delivery.delivery_id == delivery_id
    assert (letter.attempts, letter.last_error) == (1, "HTTP 400: unknown customer")
    assert letter.delivery.body == receiver.hits[0].body


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.script("crm", Step(302, {"Location": receiver.url + "fast"}))
    async with dispatcher(registry(receiver, "crm", "fast"), sleeps=Sleeps()) as hooks:
        await hooks.publish("call.ended", {"seq": 0})
        await idle(hooks)
        [letter, *_] = await hooks.dead_letters("crm")
    assert "redirects are not followed" in letter.last_error
    assert len(receiver.of("crm")) == 1 and len(receiver.of("fast")) == 1


async def test_a_timeout_is_retried(receiver: Receiver) -> None:
    receiver.script("crm", Step(stall=True), Step(200))
    policy = DeliveryPolicy(max_attempts=3, base_delay_s=0.01, timeout_s=0.3)
    async with dispatcher(registry(receiver, "crm"), policy=policy) as hooks:
        await hooks.publish("call.ended", {"seq": 0})
        await idle(hooks)
        assert await hooks.dead_letters() == []
    assert [h.status for h in receiver.hits] == [200, 200]  # the first answer came too late


async def test_network_errors_are_retried_then_dead_lettered(receiver: Receiver) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Subscription("crm", f"http://127.0.0.1:{port}/x", SECRETS["crm"], frozenset({"*"}))
    sleeps = Sleeps()
    async with dispatcher(SubscriptionRegistry([down]), sleeps=sleeps) as hooks:
        await hooks.publish("call.ended", {"seq": 0})
        await idle(hooks)
        [letter] = await hooks.dead_letters()
    assert letter.attempts == FAST.max_attempts
    assert letter.last_error.startswith("network error")
    assert len(sleeps.delays) == FAST.max_attempts - 1


# --------------------------------------------------------------------------- durability


async def test_dead_letter_survives_a_restart_and_is_redriven(
    receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "webhooks.db"
    subscriptions = registry(receiver, "crm")
    receiver.script("crm", Step(400, text="crm is misconfigured"))
    store = await SqliteDeliveryStore.open(path)
    async with dispatcher(subscriptions, store) as hooks:
        [delivery_id] = await hooks.publish("call.ended", {"seq": 0})
        await idle(hooks)
    await store.aclose()

    store = await SqliteDeliveryStore.open(path)
    async with dispatcher(subscriptions, store) as hooks:
        [letter] = await hooks.dead_letters("crm")
        assert (letter.delivery.delivery_id, letter.delivery.body) == (
            delivery_id,
            receiver.hits[0].body,
        )
        assert await hooks.redrive([delivery_id, "dlv_unknown"]) == [delivery_id]
        await idle(hooks)
        assert await hooks.dead_letters() == []
        assert await hooks.redrive([delivery_id]) == []
    await store.aclose()
    first, again = receiver.hits
    assert (first.status, again.status, again.verified) == (400, 200, "ok")
    assert again.headers["X-Seed-Delivery"] == delivery_id and again.body == first.body


async def test_redrive_all_for_one_subscription(receiver: Receiver) -> None:
    receiver.script("crm", Step(404), Step(404))
    async with dispatcher(registry(receiver, "crm")) as hooks:
        for seq in range(2):
            await hooks.publish("call.ended", {"seq": seq})
        await idle(hooks)
        assert len(await hooks.redrive_all("crm")) == 2
        await idle(hooks)
        assert await hooks.dead_letters() == []
    assert [h.seq for h in receiver.hits if h.status == 200] == [0, 1]


# --------------------------------------------------------------------------- order


async def test_order_is_kept_per_subscription_through_retries(receiver: Receiver) -> None:
    receiver.script("crm", *(Step(503 if n % 3 == 1 else 200) for n in range(40)))
    async with dispatcher(registry(receiver, "crm")) as hooks:
        for seq in range(20):
            await hooks.publish("call.ivr", {"seq": seq})
        await idle(hooks)
    seqs = [h.seq for h in receiver.hits]
    assert seqs == sorted(seqs)  # never ahead of an earlier event, even while it is retried
    assert [h.seq for h in receiver.hits if h.status == 200] == list(range(20))
    assert 503 in {h.status for h in receiver.hits}


async def test_a_stalled_subscriber_does_not_block_the_others(receiver: Receiver) -> None:
    receiver.script("slow", Step(stall=True))
    policy = DeliveryPolicy(base_delay_s=0.01, timeout_s=5.0)
    async with dispatcher(registry(receiver, "slow", "fast"), policy=policy) as hooks:
        for seq in range(3):
            await hooks.publish("chat.message", {"seq": seq})
        await receiver.wait_for(lambda: len(receiver.of("fast")) == 3)
        assert len(receiver.of("slow")) == 1  # one in flight, stalled
        assert hooks.lanes()["slow"].queued == 2
        receiver.release.set()
        await idle(hooks)
    assert [h.seq for h in receiver.of("slow")] == [0, 1, 2]


# --------------------------------------------------------------------------- overflow


async def test_overflow_parks_in_the_store_and_drains_in_order(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script("slow", Step(stall=True))
    policy = DeliveryPolicy(base_delay_s=0.01, timeout_s=5.0, queue_capacity=2)
    store = InMemoryDeliveryStore()
    async with dispatcher(registry(receiver, "slow"), store, policy) as hooks:
        with caplog.at_level(logging.WARNING, logger="crm_bridge.webhooks"):
            for seq in range(6):
                await hooks.publish("call.ended", {"seq": seq})
        assert "queue of slow is full (2): parking" in caplog.text
        await receiver.wait_for(lambda: len(receiver.hits) == 1)
        status = hooks.lanes()["slow"]
        assert (status.queued, status.parked) == (1, True)
        parked = await store.next_parked("slow")
        assert parked is not None and json.loads(parked.body)["data"]["seq"] == 2
        receiver.release.set()
        await idle(hooks)
        assert not hooks.lanes()["slow"].parked
    assert [h.seq for h in receiver.hits] == [0, 1, 2, 3, 4, 5]
    assert await store.parked_subscriptions() == set()


async def test_stop_parks_what_is_left_and_the_next_start_delivers_it_first(
    receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "webhooks.db"
    subscriptions = registry(receiver, "slow")
    receiver.script("slow", Step(stall=True))
    policy = DeliveryPolicy(base_delay_s=0.01, timeout_s=5.0)
    store = await SqliteDeliveryStore.open(path)
    hooks = dispatcher(subscriptions, store, policy)
    await hooks.start()
    for seq in range(4):
        await hooks.publish("call.ended", {"seq": seq})
    await receiver.wait_for(lambda: len(receiver.hits) == 1)
    await hooks.stop()  # 0 in flight, 1-3 queued: all parked
    with pytest.raises(DispatcherNotRunning):
        await hooks.publish("call.ended", {"seq": 99})
    await store.aclose()

    receiver.release.set()
    store = await SqliteDeliveryStore.open(path)
    async with dispatcher(subscriptions, store, policy) as hooks:
        await hooks.publish("call.ended", {"seq": 4})  # joins the parked ones, after them
        await idle(hooks)
    assert await store.parked_subscriptions() == set()
    await store.aclose()
    assert [h.seq for h in receiver.hits] == [0, 0, 1, 2, 3, 4]  # at least once: 0 again


# --------------------------------------------------------------------------- publishing


@pytest.mark.parametrize(
    ("event_type", "data", "message"),
    [
        ("call.ended", {"note": "x" * 100_000}, "larger than 65536 bytes"),
        ("call.ended", {"a": {"b": [float("nan")]}}, r"data.a.b\[0\]: nan is not valid JSON"),
        ("call.ended", {"x": b"\x00\x01"}, "data.x: bytes is not a JSON type"),
        ("call.ended", {"deep": [[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}, "nested deeper"),
        ("call.ended", {"x": "\udcff"}, "lone surrogate"),
        ("CALL.ENDED", {}, "dotted lowercase names"),
    ],
)
async def test_hostile_or_oversized_events_are_rejected_at_publish(
    receiver: Receiver, event_type: str, data: dict[str, object], message: str
) -> None:
    async with dispatcher(registry(receiver, "crm")) as hooks:
        with pytest.raises(InvalidEvent, match=message):
            await hooks.publish(event_type, data)
        assert hooks.lanes() == {}
        await hooks.publish("call.ended", {"seq": 0})
        await idle(hooks)
    assert [h.seq for h in receiver.hits] == [0]


async def test_publish_needs_a_started_dispatcher(receiver: Receiver) -> None:
    hooks = dispatcher(registry(receiver, "crm"))
    with pytest.raises(DispatcherNotRunning, match="start"):
        await hooks.publish("call.ended", {})
    with pytest.raises(DispatcherNotRunning):
        await hooks.redrive(["dlv_1"])
    await hooks.stop()  # harmless when not started


async def test_removed_subscription_dead_letters_its_queued_deliveries(
    receiver: Receiver,
) -> None:
    subscriptions = registry(receiver, "slow")
    receiver.script("slow", Step(stall=True))
    policy = DeliveryPolicy(base_delay_s=0.01, timeout_s=5.0)
    async with dispatcher(subscriptions, policy=policy) as hooks:
        await hooks.publish("call.ended", {"seq": 0})
        await hooks.publish("call.ended", {"seq": 1})
        await receiver.wait_for(lambda: len(receiver.hits) == 1)
        subscriptions.remove("slow")
        receiver.release.set()
        await idle(hooks)
        [letter] = await hooks.dead_letters()
    assert letter.last_error == "subscription no longer exists"
    assert json.loads(letter.delivery.body)["data"]["seq"] == 1


# --------------------------------------------------------------------------- store failures


class FlakyStore(InMemoryDeliveryStore):
    """Fails the next ``fail_park`` parks and ``fail_dead`` dead-letter writes."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_park = 0
        self.fail_dead = 0

    async def park(self, delivery: Delivery) -> None:
        if self.fail_park:
            self.fail_park -= 1
            raise DeliveryStoreError("disk full")
        await super().park(delivery)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        if self.fail_dead:
            self.fail_dead -= 1
            raise DeliveryStoreError("disk full")
        await super().add_dead_letter(letter)


async def test_overflow_that_cannot_be_parked_fails_publish_loudly(receiver: Receiver) -> None:
    receiver.script("slow", Step(stall=True))
    store = FlakyStore()
    policy = DeliveryPolicy(base_delay_s=0.01, timeout_s=5.0, queue_capacity=1)
    async with dispatcher(registry(receiver, "slow"), store, policy) as hooks:
        await hooks.publish("call.ended", {"seq": 0})
        await receiver.wait_for(lambda: len(receiver.hits) == 1)
        await hooks.publish("call.ended", {"seq": 1})  # queued
        store.fail_park = 1
        with pytest.raises(DeliveryStoreError, match="disk full"):
            await hooks.publish("call.ended", {"seq": 2})
        await hooks.publish("call.ended", {"seq": 3})  # parked
        receiver.release.set()
        await idle(hooks)
    assert [h.seq for h in receiver.hits] == [0, 1, 3]


async def test_a_failing_dead_letter_write_is_retried_not_lost(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script("crm", Step(400))
    store = FlakyStore()
    store.fail_dead = 1
    async with dispatcher(registry(receiver, "crm"), store) as hooks:
        await hooks.publish("call.ended", {"seq": 0})
        await idle(hooks)
        assert len(await hooks.dead_letters()) == 1
    assert "delivery store failed; retrying" in caplog.text

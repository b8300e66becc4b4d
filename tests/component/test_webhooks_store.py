"""The ``DeliveryStore`` contract, run over the in-memory and the SQLite implementations."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm_bridge.webhooks import (
    DeadLetter,
    Delivery,
    DeliveryStore,
    DeliveryStoreError,
    InMemoryDeliveryStore,
    SqliteDeliveryStore,
)


def delivery(n: int, sub: str = "crm", body: bytes = b'{"n":1}') -> Delivery:
    return Delivery(f"dlv_{n}", sub, "call.ended", f"evt_{n}", body, order_key=1000 + n)


def dead(n: int, sub: str = "crm") -> DeadLetter:
    return DeadLetter(delivery(n, sub), attempts=3, last_error="HTTP 400: no", failed_at=1.5)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DeliveryStore]:
    made: DeliveryStore
    if request.param == "memory":
        made = InMemoryDeliveryStore()
    else:
        made = await SqliteDeliveryStore.open(tmp_path / "webhooks.db")
    yield made
    await made.aclose()


async def test_parked_deliveries_come_back_oldest_first_per_subscription(
    store: DeliveryStore,
) -> None:
    for n in (3, 1, 2):
        await store.park(delivery(n))
    await store.park(delivery(0, sub="other"))
    assert await store.parked_subscriptions() == {"crm", "other"}
    assert await store.next_parked("crm") == delivery(1)
    await store.unpark("dlv_1")
    await store.unpark("dlv_unknown")
    assert await store.next_parked("crm") == delivery(2)
    await store.unpark("dlv_2")
    await store.unpark("dlv_3")
    assert await store.next_parked("crm") is None
    assert await store.parked_subscriptions() == {"other"}


async def test_dead_letter_replaces_the_parked_copy_and_lists_in_order(
    store: DeliveryStore,
) -> None:
    await store.park(delivery(2))
    for n in (2, 1):
        await store.add_dead_letter(dead(n))
    await store.add_dead_letter(dead(5, sub="other"))
    assert await store.next_parked("crm") is None
    assert await store.dead_letters() == [dead(1), dead(2), dead(5, sub="other")]
    assert await store.dead_letters("other") == [dead(5, sub="other")]
    assert await store.dead_letters(limit=1) == [dead(1)]
    await store.unpark("dlv_1")  # only parked rows are removed by unpark
    assert len(await store.dead_letters()) == 3


async def test_revive_turns_dead_letters_back_into_parked(store: DeliveryStore) -> None:
    await store.add_dead_letter(dead(1))
    await store.add_dead_letter(dead(2))
    assert await store.revive(["dlv_2", "dlv_2", "dlv_9"]) == [delivery(2)]
    assert await store.revive(["dlv_2"]) == []
    assert await store.dead_letters() == [dead(1)]
    assert await store.next_parked("crm") == delivery(2)
    await store.park(delivery(1))  # parking a dead letter again moves it too
    assert await store.dead_letters() == []


async def test_bodies_are_kept_byte_for_byte(store: DeliveryStore) -> None:
    body = '{"name":"Zoë \\u0000"}'.encode() + bytes(range(256))
    await store.park(delivery(1, body=body))
    parked = await store.next_parked("crm")
    assert parked is not None and parked.body == body


async def test_sqlite_keeps_everything_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.db"
    first = await SqliteDeliveryStore.open(path)
    await first.park(delivery(1))
    await first.add_dead_letter(dead(2))
    await first.aclose()
    second = await SqliteDeliveryStore.open(path)
    assert await second.next_parked("crm") == delivery(1)
    assert await second.dead_letters() == [dead(2)]
    await second.aclose()


async def test_sqlite_failures_are_typed_and_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DeliveryStoreError, match=re.escape(f"{tmp_path}: cannot open")):
        await SqliteDeliveryStore.open(tmp_path)  # a directory
    path = tmp_path / "webhooks.db"
    path.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(DeliveryStoreError, match=re.escape(f"{path}: cannot open")):
        await SqliteDeliveryStore.open(path)

"""An ``identity`` (a message's sender) nobody owns gets its new customer in the same
transaction as the event: when the database refuses the event, no empty customer is left
behind. Both real backends; the database refuses the event through a trigger that aborts
the insert of the test's events (a failure between the customer and the event)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.timeline import Timeline
from tests.component.api_client import Client, json_body

REFUSED = "refused-by-test"  # the trigger aborts the insert of events whose id has this

_SQLITE_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS refuse_test_events BEFORE INSERT ON timeline_events "
    f"WHEN NEW.event_id LIKE '%{REFUSED}%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
)
_PG_TRIGGER = f"""
CREATE OR REPLACE FUNCTION refuse_test_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_id LIKE '%{REFUSED}%' THEN RAISE EXCEPTION 'refused by the test'; END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER refuse_test_events BEFORE INSERT ON timeline_events
    FOR EACH ROW EXECUTE FUNCTION refuse_test_events();
"""
_PG_DROP = "DROP TRIGGER IF EXISTS refuse_test_events ON timeline_events"


async def _ddl(database_url: str, statement: str, sqlite_statement: str) -> None:
    if database_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn:
            conn.execute(sqlite_statement)
        return
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def client(timeline: Timeline, database_url: str) -> AsyncIterator[Client]:
    await _ddl(database_url, _PG_TRIGGER, _SQLITE_TRIGGER)
    app = create_api_app(store=timeline.store, lookup=timeline.lookup, menus={})
    try:
        async with TestClient(TestServer(app)) as c:
            yield c
    finally:
        await _ddl(database_url, _PG_DROP, "DROP TRIGGER IF EXISTS refuse_test_events")


async def _owners(client: Client, phone: str) -> list[str]:
    found = await json_body(await client.get("/v1/customers", params={"phone": phone}), 200)
    return [c["customer_id"] for c in found["customers"]]


async def test_a_refused_event_creates_no_customer(
    client: Client, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    event = {
        "event_id": f"{REFUSED}-{phone}",
        "identity": {"kind": "phone", "value": phone},
        "channel": "web",
        "event_type": "form.sent",
        "fields": {"postcode": "90210"},
    }
    error = await json_body(await client.post("/v1/events", json=event), 503)
    assert error["error"]["code"] == "timeline_unavailable"
    assert await _owners(client, phone) == []  # was: an empty customer owning the phone

    accepted = await json_body(
        await client.post("/v1/events", json={**event, "event_id": phone}), 201
    )
    assert accepted["customer_created"] is True
    assert await _owners(client, phone) == [accepted["customer_id"]]


async def test_a_refused_message_creates_no_customer(
    client: Client, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    message = {
        "message_id": f"{REFUSED}-{phone}",
        "channel": "sms",
        "direction": "inbound",
        "from": phone,
        "text": "hello",
    }
    error = await json_body(await client.post("/v1/messages", json=message), 503)
    assert error["error"]["code"] == "timeline_unavailable"
    assert await _owners(client, phone) == []  # was: an empty customer owning the phone

    accepted = await json_body(
        await client.post("/v1/messages", json={**message, "message_id": phone}), 201
    )
    assert accepted["customer_created"] is True
    assert await _owners(client, phone) == [accepted["customer_id"]]

"""``PUT /v1/customers/{id}/fields/{name}`` on both real backends: an explicit write takes
effect even over a value stamped later (an event from a clock ahead), and the answer is
what a GET then shows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.timeline import Timeline

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
Client = TestClient[Any, Any]


@pytest.fixture
async def client(timeline: Timeline) -> AsyncIterator[Client]:
    app = create_api_app(store=timeline.store, lookup=timeline.lookup, menus={}, clock=lambda: NOW)
    async with TestClient(TestServer(app)) as c:
        yield c


async def _json(resp: Any, status: int) -> Any:
    text = await resp.text()
    assert resp.status == status, text
    return json.loads(text)


async def test_a_put_wins_over_a_field_stamped_in_the_future(
    client: Client, new_phone: Any
) -> None:
    body = {"identities": [{"kind": "phone", "value": new_phone()}]}
    customer_id = (await _json(await client.post("/v1/customers", json=body), 201))["customer_id"]
    ahead = (NOW + timedelta(minutes=4)).isoformat()  # accepted: within FUTURE_SKEW
    event = {
        "event_id": f"ahead-{customer_id}",
        "customer_id": customer_id,
        "channel": "web",
        "event_type": "form.sent",
        "occurred_at": ahead,
        "fields": {"plan": "basic"},
    }
    await _json(await client.post("/v1/events", json=event), 201)

    put = {"value": "premium", "source_channel": "chat", "verified": True}
    path = f"/v1/customers/{customer_id}/fields/plan"
    answered = await _json(await client.put(path, json=put), 200)
    stored = (await _json(await client.get(f"/v1/customers/{customer_id}"), 200))["fields"]
    assert stored["plan"]["value"] == "premium" and stored["plan"]["verified"] is True
    assert answered == {"name": "plan", **stored["plan"]}
    assert datetime.fromisoformat(answered["updated_at"]) > NOW + timedelta(minutes=4)

    later = await _json(await client.put(path, json=put | {"value": "gold"}), 200)
    assert later["value"] == "gold" and later["updated_at"] > answered["updated_at"]

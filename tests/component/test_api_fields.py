"""``PUT /v1/customers/{id}/fields/{name}`` on both real backends: an explicit write takes
effect even over a value stamped later (an event from a clock ahead), and the answer is
what a GET then shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.timeline import Timeline
from tests.component.api_client import NOW, Client, json_body, timeline_api


@pytest.fixture
async def client(timeline: Timeline) -> AsyncIterator[Client]:
    app = timeline_api(timeline)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_a_put_wins_over_a_field_stamped_in_the_future(
    client: Client, new_phone: Any
) -> None:
    body = {"identities": [{"kind": "phone", "value": new_phone()}]}
    created = await json_body(await client.post("/v1/customers", json=body), 201)
    customer_id = created["customer_id"]
    ahead = (NOW + timedelta(minutes=4)).isoformat()  # accepted: within FUTURE_SKEW
    event = {
        "event_id": f"ahead-{customer_id}",
        "customer_id": customer_id,
        "channel": "web",
        "event_type": "form.sent",
        "occurred_at": ahead,
        "fields": {"plan": "basic"},
    }
    await json_body(await client.post("/v1/events", json=event), 201)

    put = {"value": "premium", "source_channel": "chat", "verified": True}
    path = f"/v1/customers/{customer_id}/fields/plan"
    answered = await json_body(await client.put(path, json=put), 200)
    stored = (await json_body(await client.get(f"/v1/customers/{customer_id}"), 200))["fields"]
    assert stored["plan"]["value"] == "premium" and stored["plan"]["verified"] is True
    assert answered == {"name": "plan", **stored["plan"]}
    assert datetime.fromisoformat(answered["updated_at"]) > NOW + timedelta(minutes=4)

    later = await json_body(await client.put(path, json=put | {"value": "gold"}), 200)
    assert later["value"] == "gold" and later["updated_at"] > answered["updated_at"]

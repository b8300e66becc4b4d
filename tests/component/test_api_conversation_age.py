"""A conversation quiet for longer than the menus' ``open_case_max_age_days`` is not open in
``GET /v1/conversations/{id}``, exactly as the menu ranking treats it; on real SQLite and
PostgreSQL. The app gets its menus as the engine passes them (``LiveMenus``), so a reload
changes the answer at once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api import routes_messages
from ivr_engine.api.app import create_api_app
from ivr_engine.domain.models import Menu, MenuOption, RankingPolicy
from ivr_engine.live_menus import LiveMenus
from ivr_engine.personalize.ranking import rank_intents
from ivr_engine.timeline import Timeline
from tests.component.api_client import NOW, Client, json_body

Phone = Callable[[], str]


def _menu(max_age_days: float) -> Menu:
    option = MenuOption("billing", "Billing", "ivr-engine/label-billing", "1")
    return Menu("main", (option,), ranking=RankingPolicy(open_case_max_age_days=max_age_days))


@pytest.fixture
def menus() -> LiveMenus:
    return LiveMenus({"main": _menu(14)})


@pytest.fixture
async def client(timeline: Timeline, menus: LiveMenus) -> AsyncIterator[Client]:
    app = create_api_app(
        store=timeline.store, lookup=timeline.lookup, menus=menus, clock=lambda: NOW
    )
    routes_messages.install(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _send(client: Client, phone: str, days_ago: float, **fields: Any) -> dict[str, Any]:
    body = {
        "message_id": f"m-{uuid.uuid4().hex[:12]}",
        "channel": "sms",
        "direction": "inbound",
        "text": "hello",
        "from": phone,
        "intent": "billing",
        "occurred_at": (NOW - timedelta(days=days_ago)).isoformat(),
    }
    resp = await client.post("/v1/messages", json=body | fields)
    return cast(dict[str, Any], await json_body(resp, 201))


async def _state(client: Client, conversation_id: str) -> tuple[bool, str]:
    found = await json_body(await client.get(f"/v1/conversations/{conversation_id}"), 200)
    return found["open"], found["state"]


async def _in_ranking(timeline: Timeline, menus: LiveMenus, phone: str) -> bool:
    found = await timeline.lookup.lookup("phone", phone, max_events=50)
    assert found.history is not None
    scores = rank_intents(found.history.events, NOW, menus["main"].ranking, {"billing"})
    return any(s.open_case for s in scores if s.intent == "billing")


async def test_a_quiet_conversation_is_aged_out_as_in_the_ranking(
    client: Client, timeline: Timeline, menus: LiveMenus, new_phone: Phone
) -> None:
    phone = new_phone()
    conv = (await _send(client, phone, days_ago=20))["conversation_id"]
    assert await _state(client, conv) == (False, "aged_out")
    assert await _in_ranking(timeline, menus, phone) is False

    menus.replace({"main": _menu(30)})  # a reload: the longer limit counts at once
    assert await _state(client, conv) == (True, "open")
    assert await _in_ranking(timeline, menus, phone) is True
    menus.replace({"main": _menu(14), "other": _menu(25)})  # the largest limit in force
    assert await _state(client, conv) == (True, "open")
    menus.replace({})  # no menus: the default limit, 14 days
    assert await _state(client, conv) == (False, "aged_out")


async def test_closing_an_aged_out_conversation_records_the_close_and_a_message_reopens(
    client: Client, timeline: Timeline, menus: LiveMenus, new_phone: Phone
) -> None:
    phone = new_phone()
    conv = (await _send(client, phone, days_ago=15))["conversation_id"]
    assert await _state(client, conv) == (False, "aged_out")
    closed = await json_body(await client.post(f"/v1/conversations/{conv}/close"), 201)
    assert closed["inserted"] is True
    assert await _state(client, conv) == (False, "closed")

    await _send(client, phone, days_ago=-1 / 1440, conversation_id=conv)  # after the close
    assert await _state(client, conv) == (True, "open")
    assert await _in_ranking(timeline, menus, phone) is True


async def test_a_conversation_open_for_one_of_its_customers_is_open(
    client: Client, new_phone: Phone
) -> None:
    first, second = new_phone(), new_phone()
    conv = (await _send(client, first, days_ago=20))["conversation_id"]
    other = (await _send(client, second, days_ago=20))["customer_id"]
    assert await _state(client, conv) == (False, "aged_out")
    call = {
        "event_id": f"call-{uuid.uuid4().hex[:12]}",
        "customer_id": other,
        "channel": "voice",
        "event_type": "call.ended",
        "intent": "billing",
        "case_id": conv,
        "occurred_at": (NOW - timedelta(days=2)).isoformat(),
    }
    await json_body(await client.post("/v1/events", json=call), 201)
    assert await _state(client, conv) == (True, "open")

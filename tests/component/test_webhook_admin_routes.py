"""Webhook dead letters over the engine's HTTP API: list and re-drive, admin token only.

A real engine (SQLite timeline, its own ``WebhookRelay`` over ``spool_dir/webhooks.db``)
and a real local aiohttp receiver that verifies every signature. The receiver answers 410
at first (a 4xx is dead-lettered at once), then 200: a re-driven dead letter reaches it
with the same delivery id. Two subscriptions (``crm``, ``erp``), so re-driving one
subscription, or some ids, visibly leaves the others dead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from crm_bridge.webhooks import verify_signature
from ivr_engine.app import Engine
from tests.component.test_ivr_flow import settings_for

API_TOKEN = "api-" + "a" * 40
ADMIN_TOKEN = "admin-" + "c" * 40
SECRETS = {"crm": "crm-secret-0123456789", "erp": "erp-secret-0123456789"}
LIST = "/v1/webhooks/dead-letters"
REDRIVE = "/v1/webhooks/dead-letters/redrive"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
API = {"Authorization": f"Bearer {API_TOKEN}"}
JSON = {"Content-Type": "application/json"}
WAIT_S = 15.0


class Receiver:
    """Two CRMs on one port (``/hook/crm``, ``/hook/erp``): answers ``status`` to every
    delivery whose signature verifies under that subscription's secret (401 otherwise) and
    records the deliveries it accepted, as (subscription, ``X-Seed-Delivery``, body)."""

    def __init__(self) -> None:
        self.status = 410
        self.accepted: list[tuple[str, str, dict[str, Any]]] = []
        self.forged = 0
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_post("/hook/{sid}", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        sid, raw = request.match_info["sid"], await request.read()
        try:
            verify_signature(SECRETS[sid], request.headers, raw, time.time())
        except Exception:
            self.forged += 1
            return web.Response(status=401)
        if self.status < 300:
            async with self._arrived:
                delivery_id = request.headers["X-Seed-Delivery"]
                self.accepted.append((sid, delivery_id, await request.json()))
                self._arrived.notify_all()
        return web.Response(status=self.status)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S), self._arrived:
            await self._arrived.wait_for(lambda: len(self.accepted) >= count)


def subscriptions_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "webhooks.yaml"
    lines = ["subscriptions:"]
    for sid, secret in SECRETS.items():
        lines += [f"  - id: {sid}", f"    url: http://127.0.0.1:{port}/hook/{sid}"]
        lines += [f"    secret: {secret}", '    events: ["message.*"]']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def quiet_webhooks_file(tmp_path: Path) -> Path:
    """A subscription no event matches: the webhook routes are on, nothing is sent."""
    path = tmp_path / "webhooks.yaml"
    path.write_text(
        "subscriptions:\n  - id: crm\n    url: http://127.0.0.1:9/hook\n"
        "    secret: quiet-secret-0123456789\n    events: [nothing.matches]\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    crm = Receiver()
    yield crm
    await crm.stop()


async def start_engine(url: str, tmp_path: Path, receiver: Receiver, **extra: object) -> Engine:
    hooks = subscriptions_file(tmp_path, await receiver.start())
    engine = Engine(settings_for(url, tmp_path, webhooks_file=hooks, **extra))
    await engine.start()
    return engine


@pytest.fixture
async def engine(sqlite_url: str, tmp_path: Path, receiver: Receiver) -> AsyncIterator[Engine]:
    tokens = {"api_tokens": [API_TOKEN], "admin_token": ADMIN_TOKEN}
    running = await start_engine(sqlite_url, tmp_path, receiver, **tokens)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def http(engine: Engine) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{engine.http_port}") as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    status: int,
    headers: dict[str, str] = ADMIN,
    **kwargs: Any,
) -> dict[str, Any]:
    async with http.request(method, path, headers=headers, **kwargs) as response:
        body: dict[str, Any] = await response.json()
        assert response.status == status, body
        return body


async def dead_letters_of_one_message(engine: Engine, http: aiohttp.ClientSession) -> list[Any]:
    """Post an inbound e-mail; both subscriptions answer 410: two dead letters."""
    body = {"message_id": uuid.uuid4().hex, "channel": "email", "direction": "inbound"}
    body |= {"from": f"{uuid.uuid4().hex[:8]}@example.com", "text": "hi", "subject": "Q"}
    await call(http, "POST", "/v1/messages", 201, headers=API, json=body)
    assert engine.webhooks is not None
    await engine.webhooks.settle(WAIT_S)  # relayed, then refused: dead-lettered
    letters: list[Any] = (await call(http, "GET", LIST, 200))["dead_letters"]
    return letters


# --------------------------------------------------------------------------- listing


async def test_a_refused_delivery_is_listed_as_a_dead_letter(
    engine: Engine, http: aiohttp.ClientSession
) -> None:
    letters = await dead_letters_of_one_message(engine, http)
    assert [letter["subscription_id"] for letter in letters] == ["crm", "erp"]
    crm, erp = letters
    assert crm["event_type"] == "message.inbound" and crm["event_id"] == erp["event_id"]
    assert crm["delivery_id"].startswith("dlv_") and crm["delivery_id"] != erp["delivery_id"]
    assert (crm["attempts"], crm["last_error"][:8]) == (1, "HTTP 410")
    failed_at = datetime.fromisoformat(crm["failed_at"])
    assert failed_at.utcoffset() == timedelta(0)
    assert datetime.now(UTC) - timedelta(minutes=1) < failed_at <= datetime.now(UTC)
    only_erp = await call(http, "GET", LIST, 200, params={"subscription_id": "erp"})
    assert only_erp["dead_letters"] == [erp]
    oldest = await call(http, "GET", LIST, 200, params={"limit": "1"})
    assert oldest["dead_letters"] == [crm]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"limit": "1000"}, 200),
        ({"limit": "0"}, 400),
        ({"limit": "1001"}, 400),
        ({"limit": "-1"}, 400),
        ({"limit": "ten"}, 400),
        ({"limit": ""}, 400),
        ({"subscription_id": ""}, 400),
        ({"before": "1"}, 400),  # unknown parameter
    ],
)
async def test_limit_bounds_and_unknown_parameters(
    http: aiohttp.ClientSession, query: dict[str, str], status: int
) -> None:
    body = await call(http, "GET", LIST, status, params=query)
    if status == 400:
        assert body["error"]["code"] == "validation_error"
        assert body["error"]["message"].startswith(next(iter(query)))


async def test_an_unknown_subscription_is_a_404_naming_the_known_ones(
    http: aiohttp.ClientSession,
) -> None:
    listed = await call(http, "GET", LIST, 404, params={"subscription_id": "nope"})
    redriven = await call(http, "POST", REDRIVE, 404, json={"subscription_id": "nope"})
    for body in (listed, redriven):
        assert body["error"]["code"] == "subscription_not_found"
        assert body["error"]["message"] == "no subscription 'nope'; the known ones: crm, erp"


# --------------------------------------------------------------------------- re-drive


@pytest.mark.parametrize("form", ["delivery_ids", "subscription_id", "all"])
async def test_a_redriven_dead_letter_is_delivered_signed(
    engine: Engine, http: aiohttp.ClientSession, receiver: Receiver, form: str
) -> None:
    crm, erp = await dead_letters_of_one_message(engine, http)
    receiver.status = 200
    request: dict[str, Any] = {
        "delivery_ids": {"delivery_ids": [crm["delivery_id"], "dlv_nope", crm["delivery_id"]]},
        "subscription_id": {"subscription_id": "crm"},
        "all": {"all": True},
    }[form]
    answer = await call(http, "POST", REDRIVE, 200, json=request)
    sent = [crm, erp] if form == "all" else [crm]
    assert answer["redriven"] == [letter["delivery_id"] for letter in sent]
    assert answer["not_found"] == (["dlv_nope"] if form == "delivery_ids" else [])
    await receiver.wait_for(len(sent))
    assert receiver.forged == 0  # every delivery verified under its subscription's secret
    got = [(sid, delivery_id, body["id"]) for sid, delivery_id, body in receiver.accepted]
    expected = [(x["subscription_id"], x["delivery_id"], x["event_id"]) for x in sent]
    assert sorted(got) == sorted(expected)
    left = (await call(http, "GET", LIST, 200))["dead_letters"]
    assert left == ([] if form == "all" else [erp])
    again = await call(http, "POST", REDRIVE, 200, json={"delivery_ids": [crm["delivery_id"]]})
    assert again == {"redriven": [], "not_found": [crm["delivery_id"]]}  # delivered now


async def test_redrive_while_the_dispatcher_is_stopped_is_a_503(
    engine: Engine, http: aiohttp.ClientSession
) -> None:
    assert engine.webhooks is not None
    await engine.webhooks.dispatcher.stop()
    body = await call(http, "POST", REDRIVE, 503, json={"all": True})
    assert body["error"]["code"] == "webhooks_stopped"
    assert "stopped" in body["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"delivery_ids": ["dlv_a"], "all": True},
        {"delivery_ids": ["dlv_a"], "subscription_id": "crm"},
        {"subscription_id": "crm", "all": True},
        {"delivery_ids": []},
        {"delivery_ids": [f"dlv_{i}" for i in range(1001)]},
        {"delivery_ids": "dlv_a"},
        {"delivery_ids": [""]},
        {"all": False},
        {"all": "true"},
        {"all": True, "limit": 5},
        [],
    ],
)
async def test_bad_redrive_bodies_are_400(http: aiohttp.ClientSession, body: Any) -> None:
    answer = await call(http, "POST", REDRIVE, 400, json=body)
    assert answer["error"]["code"] == "validation_error"


async def test_redrive_takes_1000_ids_json_only(http: aiohttp.ClientSession) -> None:
    ids = [f"dlv_{i}" for i in range(1000)]
    answer = await call(http, "POST", REDRIVE, 200, json={"delivery_ids": ids})
    assert answer == {"redriven": [], "not_found": ids}
    bad = await call(http, "POST", REDRIVE, 400, data="{", headers={**ADMIN, **JSON})
    assert bad["error"]["code"] == "invalid_json"
    text = await call(http, "POST", REDRIVE, 415, data='{"all": true}', headers=ADMIN)
    assert text["error"]["code"] == "unsupported_media_type"


# --------------------------------------------------------------------------- admin token


@pytest.mark.parametrize(
    ("method", "path", "body"), [("GET", LIST, None), ("POST", REDRIVE, {"all": True})]
)
async def test_both_routes_need_the_admin_token(
    http: aiohttp.ClientSession, method: str, path: str, body: Any
) -> None:
    for headers in ({}, {"Authorization": "Bearer " + "x" * 44}):
        async with http.request(method, path, json=body, headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    async with http.request(method, path, json=body, headers=API) as response:
        assert response.status == 403
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        error = (await response.json())["error"]
        assert error["code"] == "admin_token_required"
        assert "webhook dead letters" in error["message"]
    await call(http, method, path, 200, json=body)


async def test_without_admin_token_the_routes_are_off(
    sqlite_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    engine = await start_engine(sqlite_url, tmp_path, receiver)
    try:
        base = f"http://127.0.0.1:{engine.http_port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            error = (await call(http, "GET", LIST, 403, headers={}))["error"]
            assert error["code"] == "admin_disabled"
            assert "IVR_ENGINE_ADMIN_TOKEN" in error["message"]
            assert "webhook dead letters" in error["message"]
            await call(http, "POST", REDRIVE, 403, headers={}, json={"all": True})
    finally:
        await engine.stop()


async def test_without_webhooks_the_routes_are_not_served(sqlite_url: str, tmp_path: Path) -> None:
    engine = Engine(settings_for(sqlite_url, tmp_path, admin_token=ADMIN_TOKEN))
    await engine.start()
    try:
        base = f"http://127.0.0.1:{engine.http_port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            await call(http, "GET", LIST, 404)
            await call(http, "POST", REDRIVE, 404, json={"all": True})
            document = await call(http, "GET", "/openapi.json", 200)
            assert not any(path.startswith("/v1/webhooks") for path in document["paths"])
    finally:
        await engine.stop()

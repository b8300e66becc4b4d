"""Continue by SMS, in-process: real FastAGI socket, real SQLite timeline, real tokens.

The caller presses * in the menu → the engine writes the outbound SMS (with the link) on the
call's case and ends the call as ``continued``; the chat side redeems the link once and the
case reads call → SMS → chat as one thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from crm_bridge.continuation_wire import Keyring, sign_unsigned
from crm_bridge.webhooks import verify_signature
from ivr_engine.app import Engine
from ivr_engine.omni.wiring import continuation_key
from tests.component.test_ivr_flow import call, call_event, settings_for, store

SECRET = "ab" * 32
KEYRING = Keyring(continuation_key(SECRET))


@pytest.fixture
async def engine(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    running = Engine(
        settings_for(
            sqlite_url, tmp_path, continuation_secret=SECRET, public_url="https://seed.example"
        )
    )
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def redeem(engine: Engine, token: str) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{engine.http_port}/v1/continuations/redeem"
    async with aiohttp.ClientSession() as http, http.post(url, json={"token": token}) as resp:
        return resp.status, await resp.json()


async def test_star_sends_a_link_and_the_chat_resumes_the_same_case(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    heard = await call(engine, phone, ["*"])
    assert heard.heard[0][-1] == "ivr-engine/continue-sms-offer"  # offered after the menu
    assert heard.variables["IVR_OUTCOME"] == "continued"
    case_id = heard.variables["IVR_CASE_ID"]
    event = await call_event(store(engine), phone)
    assert event.data["outcome"] == "continued" and event.case_id == case_id
    page = await store(engine).timeline(event.customer_id)
    (sms,) = [e for e in page.events if e.channel == "sms"]
    assert sms.event_type == "message.outbound" and sms.case_id == case_id
    assert sms.data["to"] == phone
    # the timeline holds the link unsigned; the webhook relay signs it (as here) at delivery
    assert sms.data["text"] == "Continue your conversation here: https://seed.example/c/\u2026"
    token = sign_unsigned(str(sms.data["continuation"]["unsigned"]), KEYRING)  # type: ignore[index]

    status, body = await redeem(engine, token)
    assert status == 200
    assert (body["case_id"], body["customer_id"], body["channel"]) == (
        case_id,
        event.customer_id,
        "chat",
    )
    again, error = await redeem(engine, token)
    assert again == 409 and error["error"]["code"] == "token_used"  # type: ignore[index]
    tampered, _ = await redeem(engine, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert tampered == 400
    thread = [e for e in (await store(engine).timeline(event.customer_id)).events if e.case_id]
    thread.sort(key=lambda e: (e.occurred_at, e.seq))  # the call event is stored at its end
    assert [e.channel for e in thread] == ["voice", "sms", "chat"]
    assert {e.case_id for e in thread} == {case_id}


async def test_without_a_secret_nothing_is_offered(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    plain = Engine(settings_for(sqlite_url, tmp_path))
    await plain.start()
    try:
        heard = await call(plain, new_phone(), ["1"])
    finally:
        await plain.stop()
    assert "ivr-engine/continue-sms-offer" not in heard.heard[0]


async def test_hostile_redeem_bodies(engine: Engine) -> None:
    url = f"http://127.0.0.1:{engine.http_port}/v1/continuations/redeem"
    async with aiohttp.ClientSession() as http:
        for data, expected in [(b"not json", 400), (b"[]", 400), (b'{"token": 5}', 400)]:
            async with http.post(url, data=data) as resp:
                assert resp.status == expected
        async with http.post(url, data=b"x" * 10_000) as resp:
            assert resp.status == 413


async def test_webhook_subscribers_receive_the_sms_and_the_call(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """An SMS gateway subscribed to message.outbound gets the link, signed; a CRM gets call.ivr."""
    received: list[tuple[str, dict[str, object]]] = []
    arrived = asyncio.Event()
    secret = "gateway-secret-0123456789"

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        verify_signature(secret, request.headers, raw, time.time())  # raises if forged
        envelope = json.loads(raw)  # {"type", "id", "occurred_at", "data": the event}
        received.append((request.headers["X-Seed-Event"], envelope["data"]))
        if len(received) >= 2:
            arrived.set()
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    subscriptions = tmp_path / "webhooks.yaml"
    subscriptions.write_text(
        "subscriptions:\n"
        f"  - id: gateway\n    url: http://127.0.0.1:{port}/hook\n    secret: {secret}\n"
        "    events: [message.outbound, call.ivr]\n",
        encoding="utf-8",
    )
    engine = Engine(
        settings_for(
            sqlite_url,
            tmp_path,
            continuation_secret=SECRET,
            public_url="https://seed.example",
            webhooks_file=subscriptions,
        )
    )
    await engine.start()
    phone = new_phone()
    try:
        await call(engine, phone, ["*"])
        async with asyncio.timeout(10):
            await arrived.wait()
    finally:
        await engine.stop()
        await runner.cleanup()
    by_type = dict(received)
    sms = by_type["message.outbound"]
    assert sms["channel"] == "sms" and "https://seed.example/c/" in str(sms["data"])
    assert by_type["call.ivr"]["caller_id"] == phone


async def test_only_the_sms_delivery_carries_a_usable_link(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """The link is a bearer credential: the SMS gateway's webhook gets it, signed; the
    timeline (every API-token holder, the timeline page, other subscribers) never does."""
    delivered: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def gateway(request: web.Request) -> web.Response:
        delivered.append(json.loads(await request.read())["data"])
        arrived.set()
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/sms", gateway)
    runner = web.AppRunner(receiver)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hooks = tmp_path / "webhooks.yaml"
    hooks.write_text(
        "subscriptions:\n"
        f"  - id: sms\n    url: http://127.0.0.1:{runner.addresses[0][1]}/sms\n"
        f"    secret: {'g' * 30}\n    events: [message.outbound]\n",
        encoding="utf-8",
    )
    engine = Engine(
        settings_for(
            sqlite_url,
            tmp_path,
            continuation_secret=SECRET,
            public_url="https://seed.example",
            webhooks_file=hooks,
        )
    )
    await engine.start()
    try:
        phone = new_phone()
        await call(engine, phone, ["*"])
        async with asyncio.timeout(10):
            await arrived.wait()
        (sms,) = delivered
        text = sms["data"]["text"]
        match = re.fullmatch(
            r"Continue your conversation here: https://seed\.example/c/(\S+)", text
        )
        assert match is not None, sms
        token = match.group(1)
        customer_id = sms["customer_id"]
        base = f"http://127.0.0.1:{engine.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/v1/customers/{customer_id}/timeline") as resp:
                timeline = await resp.text()
            assert resp.status == 200 and "continue-sms" in timeline
            assert token not in timeline and token.rpartition(".")[2] not in timeline
        assert sms["data"]["continuation"]["link"] == f"https://seed.example/c/{token}"
        assert "unsigned" not in sms["data"]["continuation"]
        assert (await redeem(engine, token))[0] == 200  # the delivered link works, once
    finally:
        await engine.stop()
        await runner.cleanup()

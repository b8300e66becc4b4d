"""Continue by SMS, in-process: real FastAGI socket, real SQLite timeline, real tokens.

The caller presses * in the menu → the engine writes the outbound SMS (with the link) on the
call's case and ends the call as ``continued``; the chat side redeems the link once and the
case reads call → SMS → chat as one thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from crm_bridge.continuation_wire import Keyring, sign_unsigned
from crm_bridge.webhooks import verify_signature
from ivr_engine.app import Engine
from ivr_engine.omni.wiring import continuation_key
from ivr_engine.ports import Identity, NewTimelineEvent, StoredEvent
from ivr_engine.timeline import open_timeline
from ivr_engine.timeline.migrate import upgrade
from tests.component.engine_workers import HeldCall
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


async def test_two_pbxs_calls_with_one_uniqueid_get_their_own_sms_and_case(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """Two PBXs without their own ``systemname`` send the same uniqueid: each caller's SMS
    is written (the old code kept the first and took the second for a retry) and each is
    on a case of its own (the old code derived both from the uniqueid)."""
    cases = []
    for phone in (new_phone(), new_phone()):
        heard = await call(engine, phone, ["*"], uniqueid="1700000100.1")
        assert heard.variables["IVR_OUTCOME"] == "continued"
        event = await call_event(store(engine), phone)
        (sms,) = [e for e in (await store(engine).timeline(event.customer_id)).events
                  if e.channel == "sms"]  # fmt: skip
        assert sms.data["to"] == phone and sms.case_id == heard.variables["IVR_CASE_ID"]
        cases.append(sms.case_id)
    assert cases[0] != cases[1]


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
        "    events: [message.outbound, call.ivr]\n    continuation_links: true\n",
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
        f"    secret: {'g' * 30}\n    events: [message.outbound]\n"
        "    continuation_links: true\n",
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


async def test_the_api_refuses_continuation_events(engine: Engine) -> None:
    """Writing a message.outbound with data.continuation is the engine's alone: the old relay
    signed whatever such an event carried (a forged link for any customer, any expiry)."""
    event = {
        "event_id": "attacker-1",
        "identity": {"kind": "phone", "value": "+15550000001"},
        "channel": "sms",
        "event_type": "message.outbound",
        "data": {"to": "+15550000001", "continuation": {"unsigned": "c1.k1.e30"}},
    }
    base = f"http://127.0.0.1:{engine.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/events", json=event) as resp:
            assert resp.status == 400, await resp.text()
            assert "reserved" in (await resp.json())["error"]["message"]
        no_link = {**event, "data": {"to": "+15550000001", "text": "hello"}}
        async with http.post(f"{base}/v1/events", json=no_link) as resp:
            assert resp.status == 201  # other outbound messages are fine
    customers = await store(engine).find_customers(Identity("phone", "+15550000001"))
    page = await store(engine).timeline(customers[0].customer_id)
    assert [e.data.get("continuation") for e in page.events] == [None]


def _forged_unsigned(customer_id: str) -> str:
    """``c1.k1.<claims>``: the unsigned part of a token for another customer's case."""
    now = int(time.time())
    claims = {"jti": "forged-1", "iat": now, "exp": now + 600, "case": "case-of-victim"}
    claims |= {"cust": customer_id, "ch": "chat", "int": None, "f": {}, "s": []}
    raw = json.dumps(claims, separators=(",", ":")).encode()
    return "c1.k1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_links_go_only_to_link_subscribers_and_only_for_what_the_engine_issued(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """The SMS gateway (``continuation_links: true``) gets the working link of the engine's
    continue-by-SMS event, on ``public_url``; a CRM subscribed to message.outbound and a
    ``*`` subscriber get the event with the link elided. An event of the same shape written
    to the timeline by anyone else (here straight into the store, as any timeline writer
    could) is signed for nobody, whatever ``link_base`` it names."""
    got: dict[str, list[dict[str, Any]]] = {"sms": [], "crm": [], "analytics": []}

    async def hook(request: web.Request) -> web.Response:
        envelope = json.loads(await request.read())
        if envelope["type"] == "message.outbound":
            got[request.match_info["who"]].append(envelope["data"])
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/{who}", hook)
    runner = web.AppRunner(receiver)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    hooks = tmp_path / "webhooks.yaml"
    hooks.write_text(
        "subscriptions:\n"
        f"  - id: sms\n    url: {url}/sms\n    secret: {'g' * 30}\n"
        "    events: [message.outbound]\n    continuation_links: true\n"
        f"  - id: crm\n    url: {url}/crm\n    secret: {'h' * 30}\n"
        "    events: [message.outbound]\n"
        f"  - id: analytics\n    url: {url}/analytics\n    secret: {'i' * 30}\n"
        "    events: ['*']\n",
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
        assert engine.webhooks is not None
        await engine.webhooks.wait_leader()
        phone = new_phone()
        await call(engine, phone, ["*"])
        victim = await store(engine).create_customer_for_identity(Identity("phone", new_phone()))
        forged = NewTimelineEvent(
            event_id="attacker-2",
            customer_id=victim,
            occurred_at=datetime.now(UTC),
            channel="sms",
            event_type="message.outbound",
            intent=None,
            case_id="case-of-victim",
            data={
                "to": "+15550000001",
                "text": "x",
                "continuation": {
                    "token_id": "forged-1",
                    "unsigned": _forged_unsigned(victim),
                    "link_base": "https://attacker.example/c/",
                    "seal": "A" * 43,
                },
            },
        )
        odd_seal = {**forged.data["continuation"], "seal": "\u00e9" * 43}  # not ASCII
        odd = replace(forged, event_id="attacker-3", data={**forged.data, "continuation": odd_seal})
        await store(engine).append_events([forged, odd])
        await engine.webhooks.settle()
        by_id = {who: {d["event_id"]: d["data"] for d in ds} for who, ds in got.items()}
        for who in ("sms", "crm", "analytics"):  # the forged one: delivered as stored
            assert by_id[who]["attacker-2"] == forged.data, who
            assert by_id[who]["attacker-3"] == odd.data, who
        (sms,) = [d for d in by_id["sms"].values() if d.get("to") == phone]
        link = sms["continuation"]["link"]
        assert link.startswith("https://seed.example/c/c1.k1.")
        assert sms["text"] == f"Continue your conversation here: {link}"
        signature = link.rpartition(".")[2]
        for who in ("crm", "analytics"):
            (other,) = [d for d in by_id[who].values() if d.get("to") == phone]
            assert "link" not in other["continuation"], who
            assert other["text"].endswith("/c/\u2026") and signature not in json.dumps(other)
        assert (await redeem(engine, link.rpartition("/")[2]))[0] == 200
    finally:
        await engine.stop()
        await runner.cleanup()


async def test_a_shared_number_gets_no_new_owner_per_press(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """A household line owned by two customers is ambiguous: the SMS case goes to a new
    customer without identities (the recorder's rule), and the call record reuses it; the
    old code made one more owner of the number on every press."""
    phone = new_phone()
    for name in ("Alice", "Bob"):
        await store(engine).create_customer(name, [Identity("phone", phone)])
    for _ in range(2):
        heard = await call(engine, phone, ["*"])
        assert heard.variables["IVR_OUTCOME"] == "continued"
        customer_id = heard.variables["IVR_CUSTOMER_ID"]
        page = await store(engine).timeline(customer_id)
        assert [e.channel for e in page.events] == ["sms"]  # the SMS case is on it
        deadline = time.monotonic() + 10
        while len((await store(engine).timeline(customer_id)).events) < 2:
            assert time.monotonic() < deadline, "the call event was not stored"
            await asyncio.sleep(0.05)
        events = (await store(engine).timeline(customer_id)).events
        assert sorted(e.channel for e in events) == ["sms", "voice"]  # one customer for both
        customer = await store(engine).get_customer(customer_id)
        assert customer is not None and customer.identities == ()
    owners = await store(engine).find_customers(Identity("phone", phone))
    assert sorted(c.display_name or "" for c in owners) == ["Alice", "Bob"]


@pytest.mark.postgres
async def test_a_locked_timeline_routes_the_caller_within_the_deadline(
    new_pg_database: Callable[[], Coroutine[Any, Any, str]],
    tmp_path: Path,
    new_phone: Callable[[], str],
) -> None:
    """Another session locks timeline_events (a migration, a batch job): the SMS cannot be
    written, and the caller who pressed * is routed after ``continue_sms_deadline_ms``
    instead of hearing silence for as long as the lock is held (20 s in the review)."""
    url = await new_pg_database()
    await upgrade(url)
    engine = Engine(
        settings_for(url, tmp_path, continuation_secret=SECRET, continue_sms_deadline_ms=500)
    )
    await engine.start()
    locker = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    loop = asyncio.get_running_loop()
    lock = locker.transaction()
    unlocked = asyncio.Event()

    async def unlock() -> None:  # at most once: by the timer (old code) or after the call
        if not unlocked.is_set():
            unlocked.set()
            await lock.rollback()

    try:
        phone = new_phone()
        await store(engine).create_customer_for_identity(Identity("phone", phone))
        await lock.start()
        await locker.execute("LOCK TABLE timeline_events IN EXCLUSIVE MODE")  # blocks INSERTs
        release = loop.call_later(8, lambda: asyncio.ensure_future(unlock()))
        started = time.perf_counter()
        heard = await call(engine, phone, ["*"])
        elapsed = time.perf_counter() - started
        release.cancel()
        await unlock()
        event = await call_event(store(engine), phone, timeout_s=20)
    finally:
        await locker.close()
        await engine.stop()
    assert elapsed < 4, elapsed  # 0.5 s deadline; generous on a shared machine
    assert heard.variables["IVR_OUTCOME"] == "routed"
    assert event.data["outcome"] == "routed"
    assert "continue_sms_failed" in json.dumps(event.data)
    timeline = await _timeline_after(url, event.customer_id)
    assert "sms" not in [e.channel for e in timeline]  # no text promised, none sent


async def _timeline_after(url: str, customer_id: str) -> list[StoredEvent]:
    opened = await open_timeline(url, migrate=False)
    try:
        return list((await opened.store.timeline(customer_id)).events)
    finally:
        await opened.close()


async def test_a_stop_while_the_continued_outcome_is_written_does_not_end_it_as_failed(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """The caller pressed * and was texted the link; the stop's grace ends while the engine
    writes ``IVR_OUTCOME=continued`` (Asterisk has not answered the MSet yet). That outcome
    stands: the call is not told ``failed`` after it (before, it was, and the caller got the
    SMS and then the fallback menu), and the timeline records it as continued."""
    settings = settings_for(
        sqlite_url,
        tmp_path,
        continuation_secret=SECRET,
        public_url="https://seed.example",
        shutdown_grace_s=0,
    )
    running = Engine(settings)
    await running.start()
    try:
        assert running.agi is not None
        phone = new_phone()
        held = await HeldCall.open(running.agi.port, phone)
        held.writer.write(b"200 result=0\n")  # the menu's Read: then its keys are asked for
        async with asyncio.timeout(10):
            assert (await held.reader.readline()).startswith(b"GET FULL VARIABLE")
            held.writer.write(b"200 result=1 (*|OK)\n")
            mset = (await held.reader.readline()).decode()  # never answered
        assert mset.startswith('EXEC "MSet"') and "IVR_OUTCOME=continued" in mset
        running.stop_accepting()
    finally:
        await running.stop()
    async with asyncio.timeout(10):
        assert await held.reader.read() == b""  # closed, nothing after the MSet
    held.writer.close()
    timeline = await open_timeline(sqlite_url)
    try:
        assert (await call_event(timeline.store, phone)).data["outcome"] == "continued"
    finally:
        await timeline.close()

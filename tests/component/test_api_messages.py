"""Text-channel messages and conversations through the HTTP API, on real SQLite and PostgreSQL.

Every test uses fresh phone numbers, addresses and ids, so the session's PostgreSQL
database can be shared. The app is built as ``create_api_app`` + ``routes_messages.install``
(the one line the app factory gains).
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api import routes_messages, serialize
from ivr_engine.api.conversation_rules import close_events, conversation_state
from ivr_engine.api.openapi import _Builder
from ivr_engine.api.openapi_messages import message_paths
from ivr_engine.api.routes_messages import CaseEventHead
from ivr_engine.api.schemas_messages import CloseIn
from ivr_engine.domain.models import RankingPolicy
from ivr_engine.personalize.ranking import rank_intents
from ivr_engine.timeline import Timeline
from tests.component.api_client import NOW, Client, error_body, json_body, timeline_api

Phone = Callable[[], str]


@pytest.fixture
async def client(timeline: Timeline) -> AsyncIterator[Client]:
    app = timeline_api(timeline)
    routes_messages.install(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _uid(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _email() -> str:
    return f"{_uid('ada')}@example.com"


def _msg(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": _uid(),
        "channel": "sms",
        "direction": "inbound",
        "text": "hello",
    }
    return body | fields


async def _send(client: Client, body: Mapping[str, Any], status: int = 201) -> dict[str, Any]:
    return cast(
        dict[str, Any], await json_body(await client.post("/v1/messages", json=body), status)
    )


async def _customer(client: Client, *identities: tuple[str, str]) -> str:
    body = {"identities": [{"kind": k, "value": v} for k, v in identities]}
    created = await json_body(await client.post("/v1/customers", json=body), 201)
    return cast(str, created["customer_id"])


async def _timeline(client: Client, customer_id: str) -> list[dict[str, Any]]:
    page = await json_body(await client.get(f"/v1/customers/{customer_id}/timeline"), 200)
    return cast(list[dict[str, Any]], page["events"])


async def _conversation(client: Client, conversation_id: str, **query: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/conversations/{conversation_id}", params=query)
    return cast(dict[str, Any], await json_body(resp, 200))


async def _close(client: Client, conversation_id: str, status: int, **body: Any) -> Any:
    path = f"/v1/conversations/{conversation_id}/close"
    resp = await (client.post(path, json=body) if body else client.post(path))
    return await json_body(resp, status)


# --------------------------------------------------------------------------- identity


async def test_inbound_sms_from_a_new_number_creates_a_customer_and_then_joins_it(
    client: Client, new_phone: Phone
) -> None:
    phone = new_phone()
    national = f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"
    first = await _send(client, _msg(**{"from": national, "to": "+15550000000"}))
    assert first["inserted"] and first["customer_created"] and first["conversation_created"]
    cid, conversation = first["customer_id"], first["conversation_id"]
    assert uuid.UUID(conversation)
    customer = await json_body(await client.get(f"/v1/customers/{cid}"), 200)
    assert customer["identities"] == [{"kind": "phone", "value": phone}]

    reply = await _send(client, _msg(**{"from": phone, "conversation_id": conversation}))
    assert (reply["customer_id"], reply["conversation_id"]) == (cid, conversation)
    assert not reply["customer_created"] and not reply["conversation_created"]
    later = await _send(client, _msg(**{"from": phone, "text": "again"}))
    assert later["customer_id"] == cid and later["conversation_id"] != conversation

    events = await _timeline(client, cid)
    assert [e["event_type"] for e in events] == ["message.inbound"] * 3
    oldest = events[-1]
    assert (oldest["channel"], oldest["case_id"], oldest["occurred_at"]) == (
        "sms",
        conversation,
        NOW.isoformat(),
    )
    assert oldest["data"] == {
        "message_id": first["message_id"],
        "text": "hello",
        "subject": None,
        "from": phone,
        "to": "+15550000000",
        "agent_id": None,
    }


async def test_email_and_chat_of_one_customer_land_on_one_timeline(
    client: Client, new_phone: Phone
) -> None:
    email, handle = _email(), _uid("chat")
    cid = await _customer(client, ("phone", new_phone()), ("email", email), ("chat", handle))
    mail = _msg(
        channel="email", subject="My bill", **{"from": email.upper(), "to": "help@co.example"}
    )
    sent = await _send(client, mail)
    chat = await _send(client, _msg(channel="chat", intent="billing", **{"from": f" {handle} "}))
    assert sent["customer_id"] == chat["customer_id"] == cid
    assert not sent["customer_created"] and not chat["customer_created"]

    events = await _timeline(client, cid)
    assert [(e["channel"], e["event_type"]) for e in events] == [
        ("chat", "message.inbound"),
        ("email", "message.inbound"),
    ]
    assert events[1]["data"]["from"] == email and events[1]["data"]["subject"] == "My bill"
    assert events[0]["data"]["from"] == handle and events[0]["intent"] == "billing"


async def test_replay_is_idempotent_and_a_changed_replay_is_a_conflict(
    client: Client, new_phone: Phone
) -> None:
    body = _msg(**{"from": new_phone()})
    first = await _send(client, body)
    again = await _send(client, body, 200)
    assert again["inserted"] is False and again["customer_created"] is False
    for key in ("customer_id", "conversation_id", "event_id", "message_id"):
        assert again[key] == first[key], key
    assert len(await _timeline(client, first["customer_id"])) == 1

    for changed in ({"text": "other"}, {"direction": "outbound", "to": body["from"]}):
        resp = await client.post("/v1/messages", json=body | changed | {"customer_id": "x"})
        error = await error_body(resp, 409, "message_id_conflict")
        assert "differs" in error["message"]
    other = body | {"conversation_id": "CASE-OTHER"}
    await error_body(await client.post("/v1/messages", json=other), 409, "message_id_conflict")
    as_chat = await _send(client, body | {"channel": "chat"})  # ids are per channel
    assert as_chat["inserted"] and as_chat["customer_id"] != first["customer_id"]


async def test_a_replay_must_repeat_every_field_of_the_message(
    client: Client, new_phone: Phone
) -> None:
    """intent, occurred_at, agent_id, the contact centre's address and customer_id too."""
    phone = new_phone()
    inbound = _msg(
        **{"from": phone, "to": "+15550009999"},
        intent="billing",
        occurred_at="2025-03-10T11:00:00+00:00",
    )
    first = await _send(client, inbound)
    other = await _customer(client, ("phone", new_phone()))
    for changed in (
        {"intent": "cancel"},
        {"intent": None},
        {"to": "+15550008888"},
        {"occurred_at": "2025-03-10T11:00:01+00:00"},
        {"customer_id": other},
    ):
        resp = await client.post("/v1/messages", json=inbound | changed)
        error = await error_body(resp, 409, "message_id_conflict")
        assert f"({next(iter(changed))} differs)" in error["message"], (changed, error)
    same_instant = inbound | {"occurred_at": "2025-03-10T12:00:00+01:00"}
    assert (await _send(client, same_instant, 200))["event_id"] == first["event_id"]
    named = inbound | {"customer_id": first["customer_id"]}
    assert (await _send(client, named, 200))["customer_id"] == first["customer_id"]

    outbound = _msg(
        direction="outbound",
        to=phone,
        customer_id=first["customer_id"],
        agent_id="agent-7",
    )
    await _send(client, outbound)
    for changed in ({"agent_id": "agent-8"}, {"from": "support@example.com"}):
        resp = await client.post("/v1/messages", json=outbound | changed)
        error = await error_body(resp, 409, "message_id_conflict")
        assert f"({next(iter(changed))} differs)" in error["message"], (changed, error)
    await _send(client, outbound, 200)


async def test_concurrent_duplicates_store_one_message_for_one_customer(
    client: Client, new_phone: Phone
) -> None:
    body = _msg(**{"from": new_phone()})
    resps = await asyncio.gather(*(client.post("/v1/messages", json=body) for _ in range(6)))
    results = [json.loads(await r.text()) for r in resps]
    assert sorted(r.status for r in resps) == [200] * 5 + [201], results
    assert len({(r["customer_id"], r["conversation_id"]) for r in results}) == 1
    assert len(await _timeline(client, results[0]["customer_id"])) == 1


async def test_of_concurrent_twins_only_the_one_that_created_the_customer_says_so(
    client: Client, new_phone: Phone
) -> None:
    """As README and ``POST /v1/events``: ``customer_created`` is true only in the answer to
    the request that created the customer, which is the one that stored the message (in the
    same transaction), as it created the conversation."""
    for _ in range(20):
        body = _msg(**{"from": new_phone()})
        answers = await asyncio.gather(*(client.post("/v1/messages", json=body) for _ in range(2)))
        got = [json.loads(await a.text()) for a in answers]
        assert sorted(a.status for a in answers) == [200, 201], got
        assert sorted(g["customer_created"] for g in got) == [False, True], got
        stored = [g for a, g in zip(answers, got, strict=True) if a.status == 201]
        assert [g["conversation_created"] for g in got].count(True) == 1, got
        assert stored[0]["conversation_created"] is True, got
        assert stored[0]["customer_created"] is True, got
        assert len({(g["customer_id"], g["conversation_id"]) for g in got}) == 1, got
        again = await _send(client, body, 200)  # a later replay created nothing
        assert (again["customer_created"], again["conversation_created"]) == (False, False)
        assert again["customer_id"] == got[0]["customer_id"]


async def test_shared_number_is_409_until_merged_then_accepted(
    client: Client, new_phone: Phone
) -> None:
    phone = new_phone()
    parent = await _customer(client, ("phone", phone))
    kid = await _customer(client, ("phone", phone))
    body = _msg(**{"from": phone})
    error = await error_body(
        await client.post("/v1/messages", json=body), 409, "ambiguous_identity"
    )
    assert set(error["candidate_ids"]) == {parent, kid}
    assert await _timeline(client, parent) == [] and await _timeline(client, kid) == []

    named = await _send(client, _msg(customer_id=kid, **{"from": phone}))  # client decides
    assert named["customer_id"] == kid
    merge = {"source_customer_id": kid, "reason": "same household"}
    await json_body(await client.post(f"/v1/customers/{parent}/merge", json=merge), 200)

    accepted = await _send(client, body)
    assert accepted["customer_id"] == parent
    kinds = [e["event_type"] for e in await _timeline(client, parent)]
    assert kinds.count("message.inbound") == 2 and "customer.merged" in kinds
    via_old_id = await _send(client, _msg(customer_id=kid, **{"from": phone}))
    assert via_old_id["customer_id"] == parent  # a merged-away id writes to the survivor


# --------------------------------------------------------------------------- outbound


async def test_outbound_names_a_conversation_or_a_customer(
    client: Client, new_phone: Phone
) -> None:
    phone = new_phone()
    out = _msg(direction="outbound", agent_id="agent.7", **{"to": phone, "from": "+15550000000"})
    error = await error_body(await client.post("/v1/messages", json=out), 400)
    assert error["message"].startswith("conversation_id:")
    unknown = out | {"conversation_id": _uid("case")}
    await error_body(await client.post("/v1/messages", json=unknown), 404, "conversation_not_found")
    await error_body(await client.post("/v1/messages", json=out | {"customer_id": "nobody"}), 404)

    cid = await _customer(client, ("phone", phone))
    started = await _send(client, out | {"customer_id": cid})
    assert started["customer_id"] == cid and started["conversation_created"]
    inbound = await _send(client, _msg(**{"from": phone}))
    reply = _msg(direction="outbound", conversation_id=inbound["conversation_id"], to=phone)
    replied = await _send(client, reply | {"agent_id": "agent.7"})
    assert replied["customer_id"] == cid and not replied["conversation_created"]
    newest = (await _timeline(client, cid))[0]
    assert newest["event_type"] == "message.outbound"
    assert newest["data"]["agent_id"] == "agent.7" and newest["data"]["to"] == phone

    for body, field in (
        ({k: v for k, v in reply.items() if k != "to"}, "to"),
        (_msg(agent_id="agent.7", **{"from": phone}), "agent_id"),
        (_msg(), "from"),
    ):
        error = await error_body(await client.post("/v1/messages", json=body), 400)
        assert error["message"].startswith(f"{field}:"), error


# --------------------------------------------------------------------------- conversations


async def test_conversation_thread_across_channels_including_a_call(
    client: Client, new_phone: Phone
) -> None:
    phone, handle = new_phone(), _uid("chat")
    cid = await _customer(client, ("phone", phone), ("chat", handle))
    opened = await _send(client, _msg(channel="chat", intent="billing", **{"from": handle}))
    conv = opened["conversation_id"]
    sms = _msg(direction="outbound", conversation_id=conv, to=phone, text="call us")
    await _send(client, sms)
    call = {
        "event_id": _uid("call"),
        "customer_id": cid,
        "channel": "voice",
        "event_type": "call.ended",
        "intent": "billing",
        "case_id": conv,
    }
    await json_body(await client.post("/v1/events", json=call), 201)
    await _send(client, _msg(channel="chat", conversation_id=conv, **{"from": handle}))

    whole = await _conversation(client, conv)
    assert whole["open"] is True and whole["customer_ids"] == [cid]
    assert [e["channel"] for e in whole["events"]] == ["chat", "sms", "voice", "chat"]
    assert whole["next_after"] is None
    first = await _conversation(client, conv, limit="3")
    assert len(first["events"]) == 3 and first["next_after"] == first["events"][-1]["seq"]
    rest = await _conversation(client, conv, limit="3", after=str(first["next_after"]))
    assert rest["events"] == whole["events"][3:] and rest["next_after"] is None

    await error_body(await client.get(f"/v1/conversations/{_uid('none')}"), 404)
    await error_body(await client.get("/v1/conversations/" + "x" * 65), 404)
    for bad in ({"limit": "0"}, {"limit": "abc"}, {"after": "-1"}, {"page": "2"}):
        await error_body(await client.get(f"/v1/conversations/{conv}", params=bad), 400)


async def test_a_conversation_takes_messages_of_its_own_customers_only(
    client: Client, new_phone: Phone
) -> None:
    owner_phone, other_phone, stranger = new_phone(), new_phone(), new_phone()
    await _customer(client, ("phone", owner_phone))
    other = await _customer(client, ("phone", other_phone))
    conv = (await _send(client, _msg(**{"from": owner_phone})))["conversation_id"]

    for sender in (other_phone, stranger):
        resp = await client.post(
            "/v1/messages", json=_msg(conversation_id=conv, **{"from": sender})
        )
        await error_body(resp, 409, "conversation_mismatch")
    found = await json_body(await client.get("/v1/customers", params={"phone": stranger}), 200)
    assert found == {"customers": []}  # refused before any customer was created
    named = _msg(conversation_id=conv, customer_id=other, **{"from": other_phone})
    await error_body(await client.post("/v1/messages", json=named), 409, "conversation_mismatch")


async def test_close_is_seen_by_the_menu_ranking_and_new_activity_reopens(
    client: Client, timeline: Timeline, new_phone: Phone
) -> None:
    phone = new_phone()
    earlier = (NOW - timedelta(hours=2)).isoformat()
    sent = await _send(client, _msg(intent="billing", occurred_at=earlier, **{"from": phone}))
    conv, cid = sent["conversation_id"], sent["customer_id"]
    assert await _open_case_in_ranking(timeline, phone) is True

    closed = await _close(client, conv, 201, reason="resolved", agent_id="agent.7")
    assert closed == {
        "conversation_id": conv,
        "closed": True,
        "inserted": True,
        "customer_ids": [cid],
    }
    newest = (await _timeline(client, cid))[0]
    assert (newest["event_type"], newest["case_id"], newest["channel"]) == (
        "case.closed",
        conv,
        "sms",
    )
    assert newest["occurred_at"] == NOW.isoformat() and newest["intent"] is None
    assert newest["data"] == {"reason": "resolved", "agent_id": "agent.7"}
    closed_now = await _conversation(client, conv)
    assert (closed_now["open"], closed_now["state"]) == (False, "closed")
    assert await _open_case_in_ranking(timeline, phone) is False
    assert (await _close(client, conv, 200))["inserted"] is False  # already closed

    later = (NOW + timedelta(minutes=1)).isoformat()  # within the ranking's clock skew
    await _send(client, _msg(conversation_id=conv, occurred_at=later, **{"from": phone}))
    assert (await _conversation(client, conv))["open"] is True
    assert await _open_case_in_ranking(timeline, phone) is True
    assert (await _close(client, conv, 201))["inserted"] is True
    assert (await _timeline(client, cid))[0]["occurred_at"] == later  # not before the message
    assert await _open_case_in_ranking(timeline, phone) is False

    await error_body(await client.post(f"/v1/conversations/{_uid()}/close"), 404)
    bad = await client.post(f"/v1/conversations/{conv}/close", json={"reason": 7})
    assert (await error_body(bad, 400))["message"].startswith("reason:")
    extra = await client.post(f"/v1/conversations/{conv}/close", json={"state": "closed"})
    await error_body(extra, 400)


async def _open_case_in_ranking(timeline: Timeline, phone: str) -> bool:
    found = await timeline.lookup.lookup("phone", phone, max_events=50)
    assert found.history is not None
    scores = rank_intents(found.history.events, NOW, RankingPolicy(), {"billing"})
    return next(s.open_case for s in scores if s.intent == "billing")


def test_close_rules_follow_the_ranking_order() -> None:
    def head(seq: int, at: datetime, kind: str, customer: str = "c1") -> CaseEventHead:
        return CaseEventHead(seq, customer, at, "chat", kind)

    def is_open(heads: tuple[CaseEventHead, ...]) -> bool:
        return conversation_state(heads, NOW, 14) == "open"

    later = NOW + timedelta(minutes=1)
    same_instant = (head(1, NOW, "message.inbound"), head(2, NOW, "case.closed"))
    assert not is_open(same_instant) and close_events("K", same_instant, NOW, CloseIn()) == []
    late_arrival = (head(1, later, "message.inbound"), head(2, NOW, "case.closed"))
    assert is_open(late_arrival)
    (event,) = close_events("K", late_arrival, NOW, CloseIn())
    assert event.occurred_at == later and event.event_id == "case.closed:K:c1:2"
    two = (head(1, NOW, "message.inbound"), head(2, NOW, "message.inbound", "c2"))
    assert [e.customer_id for e in close_events("K", two, NOW, CloseIn())] == ["c1", "c2"]


# --------------------------------------------------------------------------- validation


async def test_message_validation_names_the_field(client: Client, new_phone: Phone) -> None:
    phone = new_phone()
    base = _msg(**{"from": phone})
    future = (NOW + timedelta(minutes=6)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        (base | {"channel": "fax"}, "channel"),
        (base | {"channel": "voice"}, "channel"),
        (base | {"from": "12"}, "from"),
        (base | {"to": "   "}, "to"),
        (base | {"from": "not-a-number"}, "from"),
        (base | {"channel": "email", "from": "nope"}, "from"),
        (base | {"channel": "chat", "from": "a\x00b"}, "from"),
        (base | {"text": "x" * 16_001}, "text"),
        (base | {"text": ""}, "text"),
        (base | {"text": " \n\t "}, "text"),
        (base | {"text": "nul\x00"}, "text"),
        (base | {"text": 5}, "text"),
        (base | {"subject": "Hi"}, "subject"),
        (base | {"channel": "email", "from": _email(), "subject": "x" * 999}, "subject"),
        (base | {"message_id": "has space"}, "message_id"),
        (base | {"message_id": "x" * 129}, "message_id"),
        (base | {"direction": "sideways"}, "direction"),
        (base | {"is_admin": True}, "is_admin"),
        (base | {"from_": phone}, "from_"),
        (base | {"occurred_at": "2025-03-01T10:00:00"}, "occurred_at"),
        (base | {"occurred_at": future}, "occurred_at"),
        (base | {"customer_id": "../etc"}, "customer_id"),
        (base | {"conversation_id": "has space"}, "conversation_id"),
        (base | {"intent": "Billing!"}, "intent"),
        (base | {"agent_id": ["a"]}, "agent_id"),
        ({k: v for k, v in base.items() if k != "message_id"}, "message_id"),
    ]
    for body, field in cases:
        error = await error_body(await client.post("/v1/messages", json=body), 400)
        assert error["message"].startswith(f"{field}:"), (body, error)
        assert len(error["message"]) < 400
    ok = await _send(client, base | {"text": "line one\r\nline two\ttab " + "é" * 15_000})
    assert ok["inserted"]


async def test_hostile_bodies_are_4xx_never_5xx(client: Client) -> None:
    headers = {"Content-Type": "application/json"}
    conv = (await _send(client, _msg(channel="chat", **{"from": _uid("h")})))["conversation_id"]
    close = f"/v1/conversations/{conv}/close"
    for path in ("/v1/messages", close):
        await error_body(
            await client.post(path, data="{nope", headers=headers), 400, "invalid_json"
        )
        await error_body(await client.post(path, data=b"\xff{}", headers=headers), 400)
        for non_object in ("[]", '"x"', "42", "null"):
            await error_body(await client.post(path, data=non_object, headers=headers), 400)
        deep = '{"text": ' + "[" * 5000 + "]" * 5000 + "}"
        await error_body(await client.post(path, data=deep, headers=headers), 400)
        await error_body(
            await client.post(path, data="{}", headers={"Content-Type": "text/plain"}), 415
        )
        big = b'{"text": "' + b"x" * (1024 * 1024) + b'"}'
        await error_body(await client.post(path, data=io.BytesIO(big), headers=headers), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: capped while reading
        yield b'{"text": "'
        for _ in range(8):
            yield b"x" * (64 * 1024)
        yield b'"}'

    resp = await client.post("/v1/messages", data=chunks(), headers=headers)
    await error_body(resp, 413, "body_too_large")

    rng = random.Random(20250310)
    keys = [
        "message_id",
        "channel",
        "direction",
        "from",
        "to",
        "text",
        "subject",
        "intent",
        "customer_id",
        "conversation_id",
        "agent_id",
        "occurred_at",
        "reason",
        "zzz",
    ]
    scalars: list[Callable[[], Any]] = [
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.randint(-(2**70), 2**70),
        lambda: rng.choice(["sms", "chat", "email", "inbound", "outbound", "m-1"]),
        lambda: "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(30))),
    ]
    for _ in range(120):
        body = {rng.choice(keys): rng.choice(scalars)() for _ in range(rng.randrange(8))}
        for path in ("/v1/messages", close):
            resp = await client.post(path, json=body)
            assert resp.status < 500, await resp.text()


def test_openapi_paths_for_messages() -> None:
    builder = _Builder()
    builder.shape(serialize.ErrorJson)
    paths = message_paths(builder)
    assert {p: set(ops) for p, ops in paths.items()} == {
        "/v1/messages": {"post"},
        "/v1/conversations/{id}": {"get"},
        "/v1/conversations/{id}/close": {"post"},
    }
    schemas = builder.schemas
    assert {"MessageIn", "MessageResultJson", "ConversationJson", "CloseIn"} <= set(schemas)
    assert {"message_id", "channel", "direction", "text"} <= set(schemas["MessageIn"]["required"])
    assert "from" in schemas["MessageIn"]["properties"]
    replays = paths["/v1/messages"]["post"]["description"]
    assert "a message the database refuses leaves no customer" in replays
    conversation = schemas["ConversationJson"]
    assert conversation["properties"]["state"]["enum"] == ["open", "closed", "aged_out"]
    assert {"open", "state"} <= set(conversation["required"])
    assert "open_case_max_age_days" in paths["/v1/conversations/{id}"]["get"]["description"]
    for ref in _refs(paths) + _refs(schemas):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for k, v in node.items() for r in ([v] if k == "$ref" else _refs(v))]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []

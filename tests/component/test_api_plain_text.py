"""Single-line text of the HTTP API holds to ``domain.plain_text``'s rule, for real.

A customer's display name, field values, reasons, identities, message subjects and
addresses end up on an agent's screen pop and timeline page: a U+202E RIGHT-TO-LEFT
OVERRIDE would show them as something other than they are (a Trojan-source spoof), a
U+0085 NEXT LINE or U+2028 breaks log lines. The API refused C0 and DEL only. Each field
here is sent through the app with U+202E and U+0085 (400 naming the field and the
character) and with a Hebrew name carrying an RLM (taken). Message bodies keep their lines.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api import routes_messages
from ivr_engine.api.app import create_api_app
from ivr_engine.domain.plain_text import PLAIN_TEXT_PATTERN
from ivr_engine.timeline import Timeline

Client = TestClient[Any, Any]
HEBREW_NAME = "\u05de\u05e8\u05d9\u05dd\u200f (Miriam)"  # "<Miriam in Hebrew>RLM (Miriam)"
REFUSED = ["\u202e", "\u0085"]


@pytest.fixture
async def client(timeline: Timeline) -> AsyncIterator[Client]:
    app = create_api_app(store=timeline.store, lookup=timeline.lookup, menus={})
    routes_messages.install(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _ok(resp: ClientResponse) -> Any:
    body = await resp.text()
    assert resp.status in (200, 201), body
    return json.loads(body)


async def _new_customer(client: Client) -> str:
    body = {"identities": [{"kind": "chat", "value": _uid("h")}]}
    return str((await _ok(await client.post("/v1/customers", json=body)))["customer_id"])


async def _conversation(client: Client) -> str:
    body = {"message_id": _uid("m"), "channel": "chat", "direction": "inbound", "text": "hi"}
    sent = await _ok(await client.post("/v1/messages", json=body | {"from": _uid("h")}))
    return str(sent["conversation_id"])


def _message(**fields: Any) -> dict[str, Any]:
    base = {"message_id": _uid("m"), "channel": "email", "direction": "inbound", "text": "hi"}
    return base | {"from": f"{_uid('ada')}@example.com", "to": "help@co.example"} | fields


Send = Callable[[Client, str], Awaitable[ClientResponse]]


@dataclass(frozen=True)
class Case:
    loc: str  # the field the 400 names
    send: Send  # sends the text in that field


async def _create_name(client: Client, text: str) -> ClientResponse:
    identities = [{"kind": "chat", "value": _uid("h")}]
    return await client.post("/v1/customers", json={"identities": identities, "display_name": text})


async def _rename(client: Client, text: str) -> ClientResponse:
    cid = await _new_customer(client)
    return await client.patch(f"/v1/customers/{cid}", json={"display_name": text})


async def _create_field(client: Client, text: str) -> ClientResponse:
    body = {"identities": [{"kind": "chat", "value": _uid("h")}], "fields": {"note": text}}
    return await client.post("/v1/customers", json=body)


async def _put_field(client: Client, text: str) -> ClientResponse:
    cid = await _new_customer(client)
    body = {"value": text, "source_channel": "web"}
    return await client.put(f"/v1/customers/{cid}/fields/note", json=body)


async def _event_field(client: Client, text: str) -> ClientResponse:
    cid = await _new_customer(client)
    body = {"event_id": _uid("e"), "customer_id": cid, "channel": "web"}
    body |= {"event_type": "form.submitted", "fields": {"note": text}}
    return await client.post("/v1/events", json=body)


async def _merge_reason(client: Client, text: str) -> ClientResponse:
    source, target = await _new_customer(client), await _new_customer(client)
    body = {"source_customer_id": source, "reason": text}
    return await client.post(f"/v1/customers/{target}/merge", json=body)


async def _identity(client: Client, text: str) -> ClientResponse:
    cid = await _new_customer(client)
    body = {"kind": "chat", "value": f"{text} {_uid('h')}"}
    return await client.post(f"/v1/customers/{cid}/identities", json=body)


async def _subject(client: Client, text: str) -> ClientResponse:
    return await client.post("/v1/messages", json=_message(subject=text))


async def _customer_address(client: Client, text: str) -> ClientResponse:
    body = _message(channel="chat", **{"from": f"{text} {_uid('h')}"})
    return await client.post("/v1/messages", json=body)


async def _own_address(client: Client, text: str) -> ClientResponse:
    return await client.post("/v1/messages", json=_message(to=f"{text} <help@co.example>"))


async def _close_reason(client: Client, text: str) -> ClientResponse:
    conversation = await _conversation(client)
    return await client.post(f"/v1/conversations/{conversation}/close", json={"reason": text})


CASES = {
    "create display_name": Case("display_name", _create_name),
    "rename display_name": Case("display_name", _rename),
    "create fields": Case("fields.note", _create_field),
    "put field value": Case("value", _put_field),
    "event fields": Case("fields.note", _event_field),
    "merge reason": Case("reason", _merge_reason),
    "chat identity": Case("value", _identity),
    "message subject": Case("subject", _subject),
    "message customer's address": Case("from", _customer_address),
    "message contact centre's address": Case("to", _own_address),
    "close reason": Case("reason", _close_reason),
}


@pytest.mark.parametrize("char", REFUSED, ids=["U+202E", "U+0085"])
@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
async def test_a_control_character_is_a_400_naming_field_and_character(
    client: Client, case: Case, char: str
) -> None:
    resp = await case.send(client, f"Ada{char}Lovelace")
    body = await resp.text()
    assert resp.status == 400, body
    error = json.loads(body)["error"]
    code = f"U+{ord(char):04X}"
    assert error["code"] == "validation_error"
    assert error["message"].startswith(f"{case.loc}: ") and code in error["message"], error
    assert error["details"][0]["loc"] == case.loc


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
async def test_a_hebrew_name_with_its_rlm_is_taken(client: Client, case: Case) -> None:
    await _ok(await case.send(client, HEBREW_NAME))


async def test_the_name_keeps_its_rlm(client: Client) -> None:
    created = await _ok(await _create_name(client, HEBREW_NAME))
    assert created["display_name"] == HEBREW_NAME


async def test_message_bodies_keep_their_lines(client: Client) -> None:
    text = "Hello,\r\nmy bill:\n\tline two\n"
    sent = await _ok(await client.post("/v1/messages", json=_message(text=text)))
    page = await _ok(await client.get(f"/v1/customers/{sent['customer_id']}/timeline"))
    assert page["events"][0]["data"]["text"] == text


async def test_the_openapi_document_states_the_rule(client: Client) -> None:
    """The served document carries the rule as a pattern on every changed field (the same
    definition: it refuses what the API refuses); a message body's pattern takes lines."""
    schemas = (await _ok(await client.get("/openapi.json")))["components"]["schemas"]
    customer, message = schemas["CreateCustomer"]["properties"], schemas["MessageIn"]["properties"]
    patterns = [
        customer["display_name"]["anyOf"][0]["pattern"],
        customer["fields"]["patternProperties"]["^[a-z][a-z0-9_]{0,63}$"]["pattern"],
        schemas["UpdateCustomer"]["properties"]["display_name"]["anyOf"][0]["pattern"],
        schemas["PutField"]["properties"]["value"]["pattern"],
        schemas["MergeRequest"]["properties"]["reason"]["pattern"],
        schemas["CloseIn"]["properties"]["reason"]["anyOf"][0]["pattern"],
        message["subject"]["anyOf"][0]["pattern"],
        message["from"]["anyOf"][0]["pattern"],
        message["to"]["anyOf"][0]["pattern"],
    ]
    assert patterns == [PLAIN_TEXT_PATTERN] * len(patterns)
    plain = re.compile(PLAIN_TEXT_PATTERN)
    assert plain.fullmatch(HEBREW_NAME) and not any(plain.fullmatch(f"a{c}b") for c in REFUSED)
    assert re.match(message["text"]["pattern"], "line one\r\nline two")

"""``POST /v1/events`` replays and conflicts, on both real backends (SQLite and PostgreSQL).

A reused ``event_id`` is a replay only for the same event of the same customer, with the
same known ``fields``; a conflict saves nothing (also when it loses a race to its twin), nor
does a true replay; ``customer_created`` is true only for the request that created the
customer. Numbers in ``data`` read back the same on both backends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.timeline import Timeline
from tests.component.api_client import NOW, Client, json_body, timeline_api


@pytest.fixture
async def client(timeline: Timeline) -> AsyncIterator[Client]:
    app = timeline_api(timeline)
    async with TestClient(TestServer(app)) as c:
        yield c


async def _customer(client: Client, phone: str) -> str:
    body = {"identities": [{"kind": "phone", "value": phone}]}
    created = await json_body(await client.post("/v1/customers", json=body), 201)
    return cast(str, created["customer_id"])


async def _fields(client: Client, customer_id: str) -> dict[str, Any]:
    got = await json_body(await client.get(f"/v1/customers/{customer_id}"), 200)
    return cast(dict[str, Any], got["fields"])


async def _event_ids(client: Client, customer_id: str) -> list[str]:
    page = await json_body(await client.get(f"/v1/customers/{customer_id}/timeline"), 200)
    return [e["event_id"] for e in page["events"]]


def _body(event_id: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "channel": "web", "event_type": "form.sent", **extra}


async def test_an_event_id_reused_for_another_customer_is_a_conflict(
    client: Client, new_phone: Any
) -> None:
    first, second = await _customer(client, new_phone()), await _customer(client, new_phone())
    event_id = f"reuse-{first}"
    await json_body(await client.post("/v1/events", json=_body(event_id, customer_id=first)), 201)

    other = _body(event_id, customer_id=second, fields={"postcode": "90210"})
    error = await json_body(await client.post("/v1/events", json=other), 409)
    assert error["error"]["code"] == "event_id_conflict"
    assert error["error"]["differs"] == ["customer_id", "fields"]
    assert await _fields(client, second) == {}
    assert await _event_ids(client, second) == []

    stranger = new_phone()
    by_identity = _body(event_id, identity={"kind": "phone", "value": stranger})
    error = await json_body(await client.post("/v1/events", json=by_identity), 409)
    assert error["error"]["differs"] == ["identity"]
    found = await json_body(await client.get("/v1/customers", params={"phone": stranger}), 200)
    assert found == {"customers": []}  # nothing created for a conflicting request


async def test_a_replay_may_name_the_customer_before_or_after_a_merge(
    client: Client, new_phone: Any
) -> None:
    phone = new_phone()
    source, target = await _customer(client, phone), await _customer(client, new_phone())
    event_id = f"merged-{source}"
    await json_body(await client.post("/v1/events", json=_body(event_id, customer_id=source)), 201)
    merge = {"source_customer_id": source, "reason": "duplicate"}
    await json_body(await client.post(f"/v1/customers/{target}/merge", json=merge), 200)

    by_identity = _body(event_id, identity={"kind": "phone", "value": phone})
    for body in (_body(event_id, customer_id=source), _body(event_id, customer_id=target)):
        for replay in (body, by_identity):
            got = await json_body(await client.post("/v1/events", json=replay), 200)
            assert (got["inserted"], got["customer_id"]) == (False, target)
            assert got["customer_created"] is False


async def test_the_loser_of_a_race_for_an_event_id_saves_no_fields(
    client: Client, new_phone: Any
) -> None:
    customer_id = await _customer(client, new_phone())
    for n in range(10):
        event_id = f"race-{customer_id}-{n}"
        bodies = [
            _body(event_id, customer_id=customer_id, data={"n": side}, fields={name: "x"})
            for side, name in enumerate((f"a{n}", f"b{n}"))
        ]
        answers = await asyncio.gather(*(client.post("/v1/events", json=b) for b in bodies))
        statuses = sorted(a.status for a in answers)
        assert statuses == [201, 409], statuses
        winner = "a" if answers[0].status == 201 else "b"
        loser = "b" if winner == "a" else "a"
        fields = await _fields(client, customer_id)
        assert f"{winner}{n}" in fields and f"{loser}{n}" not in fields, (n, fields)


async def test_only_the_request_that_created_the_customer_says_so(
    client: Client, new_phone: Any
) -> None:
    for n in range(10):
        body = _body(f"created-{n}-{new_phone()}", identity={"kind": "phone", "value": new_phone()})
        answers = await asyncio.gather(*(client.post("/v1/events", json=body) for _ in range(2)))
        got = [await a.json() for a in answers]
        assert sorted(a.status for a in answers) == [200, 201], got
        assert sorted(g["customer_created"] for g in got) == [False, True], got
        assert len({g["customer_id"] for g in got}) == 1


async def test_a_retry_with_large_floats_is_a_replay_on_both_backends(
    client: Client, new_phone: Any
) -> None:
    """JSONB keeps 1e23 as the integer 10**23: still the same number as the retry's."""
    customer_id = await _customer(client, new_phone())
    data = {"amount": 1e23, "huge": 1.5e300, "wide": 12345678901234567890.0, "n": [2.0, 0.1]}
    raw = json.dumps(_body(f"float-{customer_id}", customer_id=customer_id, data=data))
    headers = {"Content-Type": "application/json"}
    await json_body(await client.post("/v1/events", data=raw, headers=headers), 201)
    again = await json_body(await client.post("/v1/events", data=raw, headers=headers), 200)
    assert again["inserted"] is False

    for n, other in enumerate(({"amount": 1e22}, {"flag": True})):
        first = _body(f"other-{n}-{customer_id}", customer_id=customer_id, data=other)
        await json_body(await client.post("/v1/events", json=first), 201)
        changed = {"amount": 1e23} if "amount" in other else {"flag": 1}  # true is not 1
        resp = await client.post("/v1/events", json=first | {"data": changed})
        assert (await json_body(resp, 409))["error"]["differs"] == ["data"]


async def test_a_replay_with_other_fields_is_a_conflict_that_saves_nothing(
    client: Client, new_phone: Any
) -> None:
    customer_id = await _customer(client, new_phone())
    event_id = f"fields-{customer_id}"
    first = _body(event_id, customer_id=customer_id, fields={"plan": "basic", "zone": "7"})
    await json_body(await client.post("/v1/events", json=first), 201)
    saved = await _fields(client, customer_id)

    for fields in (
        {"plan": "premium", "zone": "7"},  # another value
        {"plan": "basic"},  # one left out
        {"plan": "basic", "zone": "7", "tier": "gold"},  # one more
        {},  # none
    ):
        resp = await client.post("/v1/events", json=first | {"fields": fields})
        error = (await json_body(resp, 409))["error"]
        assert (error["code"], error["differs"]) == ("event_id_conflict", ["fields"]), fields
    both = first | {"fields": {"plan": "premium"}, "intent": "billing"}
    error = (await json_body(await client.post("/v1/events", json=both), 409))["error"]
    assert error["differs"] == ["intent", "fields"]
    assert await _fields(client, customer_id) == saved  # no value, no new field
    assert await _event_ids(client, customer_id) == [event_id]

    bare = _body(f"bare-{customer_id}", customer_id=customer_id)  # saved no fields
    await json_body(await client.post("/v1/events", json=bare), 201)
    resp = await client.post("/v1/events", json=bare | {"fields": {"tier": "gold"}})
    assert (await json_body(resp, 409))["error"]["differs"] == ["fields"]
    assert await _fields(client, customer_id) == saved

    reordered = first | {"fields": {"zone": "7", "plan": "basic"}}  # an object: unordered
    got = await json_body(await client.post("/v1/events", json=reordered), 200)
    assert got["inserted"] is False
    assert await json_body(await client.post("/v1/events", json=bare), 200)


async def test_a_true_replay_writes_nothing_not_even_its_fields_again(
    timeline: Timeline, new_phone: Any
) -> None:
    """A retry (no occurred_at: stamped by the server's clock at each try) after a field was
    corrected must not put the event's older value back."""
    clock = [NOW]
    app = create_api_app(
        store=timeline.store, lookup=timeline.lookup, menus={}, clock=lambda: clock[0]
    )
    async with TestClient(TestServer(app)) as client:
        customer_id = await _customer(client, new_phone())
        event = _body(f"retry-{customer_id}", customer_id=customer_id, fields={"plan": "basic"})
        await json_body(await client.post("/v1/events", json=event), 201)
        clock[0] = NOW + timedelta(seconds=1)
        put = {"value": "premium", "source_channel": "chat"}
        path = f"/v1/customers/{customer_id}/fields/plan"
        corrected = await json_body(await client.put(path, json=put), 200)
        clock[0] = NOW + timedelta(seconds=2)
        got = await json_body(await client.post("/v1/events", json=event), 200)
        assert (got["inserted"], got["customer_id"]) == (False, customer_id)
        fields = await _fields(client, customer_id)
        assert fields["plan"] == {k: v for k, v in corrected.items() if k != "name"}
        assert await _event_ids(client, customer_id) == [event["event_id"]]


async def test_the_loser_of_a_race_with_other_fields_only_is_a_conflict(
    client: Client, new_phone: Any
) -> None:
    customer_id = await _customer(client, new_phone())
    for n in range(10):
        event_id = f"fields-race-{customer_id}-{n}"
        bodies = [
            _body(event_id, customer_id=customer_id, fields={f"{side}{n}": "x"})
            for side in ("a", "b")
        ]
        answers = await asyncio.gather(*(client.post("/v1/events", json=b) for b in bodies))
        got = [await a.json() for a in answers]
        assert sorted(a.status for a in answers) == [201, 409], got
        loser = "b" if answers[0].status == 201 else "a"
        assert next(g for g in got if "error" in g)["error"]["differs"] == ["fields"]
        assert f"{loser}{n}" not in await _fields(client, customer_id)


# Numbers as raw JSON text (the client's own digits); each with the one form both backends
# answer. PostgreSQL's JSONB keeps the decimal value of the text ("1e+23" → an integer, no
# negative zero); SQLite keeps the float's text.
_NUMBERS = [
    ("1e23", "100000000000000000000000"),
    ("-1e23", "-100000000000000000000000"),
    ("1.5", "1.5"),
    ("-0.0", "0.0"),
    ("-0", "0"),
    ("1e-7", "1e-07"),
    ("0.00001", "1e-05"),
    ("5e-324", "5e-324"),
    ("2.0", "2.0"),
    ("1E5", "100000.0"),
    ("9999999999999998.0", "9999999999999998.0"),  # the largest whole float without exponent
    ("1e16", "10000000000000000"),
    ("1.5e300", "15" + "0" * 299),
    (str(2**63), "9223372036854775808"),
    (str(2**64 + 1), "18446744073709551617"),
    ("-" + str(2**64 + 1), "-18446744073709551617"),
    ("3.14159265358979323846264338327950288", "3.141592653589793"),  # to the nearest double
    ("0.1000000000000000000000000000001", "0.1"),
    ("123456789012345678901234567890.123456789", "123456789012345680000000000000"),
]


async def test_numbers_in_data_read_back_the_same_on_both_backends(
    client: Client, new_phone: Any
) -> None:
    customer_id = await _customer(client, new_phone())
    sent = ", ".join(f'"n{i}": {text}' for i, (text, _) in enumerate(_NUMBERS))
    nested = ", ".join(text for text, _ in _NUMBERS)
    data = f'{{{sent}, "list": [{nested}], "deep": {{"x": [{{"y": 1e23}}]}}, "t": true}}'
    event_id = f"numbers-{customer_id}"
    head = f'{{"event_id": "{event_id}", "customer_id": "{customer_id}", "channel": "web"'
    raw = f'{head}, "event_type": "form.sent", "case_id": "CASE-{event_id}", "data": {data}}}'
    headers = {"Content-Type": "application/json"}
    await json_body(await client.post("/v1/events", data=raw, headers=headers), 201)

    shown = ", ".join(f'"n{i}": {text}' for i, (_, text) in enumerate(_NUMBERS))
    listed = ", ".join(text for _, text in _NUMBERS)
    deep = '"deep": {"x": [{"y": 100000000000000000000000}]}'
    expected = f'{{{shown}, "list": [{listed}], {deep}, "t": true}}'
    page = await client.get(f"/v1/customers/{customer_id}/timeline")
    case = await client.get(f"/v1/conversations/CASE-{event_id}")
    for resp in (page, case):
        got = (await json_body(resp, 200))["events"][0]["data"]
        # as text: 0.0 is not -0.0, 1e+23 not 100000000000000000000000 (keys: JSONB sorts)
        assert json.dumps(got, sort_keys=True) == json.dumps(json.loads(expected), sort_keys=True)

    again = await json_body(await client.post("/v1/events", data=raw, headers=headers), 200)
    assert again["inserted"] is False  # a replay still compares by value

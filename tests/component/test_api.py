"""The HTTP API against the real SQLite-backed timeline (no store mocks).

Fault injection (a lookup or store that raises) is used only for the fail-open, 503 and
500 paths, which a healthy database cannot produce on demand.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.domain.models import FieldSpec, Menu, MenuOption
from ivr_engine.live_menus import LiveMenus
from ivr_engine.personalize import FUTURE_SKEW
from ivr_engine.ports import CallerLookup, LookupResult, TimelineStore
from ivr_engine.timeline import Timeline, open_timeline
from tests.component.api_client import NOW, Client, error_body, json_body


def _option(digit: str, intent: str, label: str, **kw: Any) -> MenuOption:
    return MenuOption(
        intent=intent,
        label=label,
        prompt=f"ivr-engine/label-{intent.replace('_', '-')}",
        digit=digit,
        target=f"queue:{intent}",
        **kw,
    )


MENU = Menu(
    name="main",
    options=(
        _option("1", "new_service", "New service"),
        _option("2", "tech_support", "Technical support"),
        _option("3", "moving", "Moving"),
        _option("4", "outage", "Outage"),
        _option("5", "cancel", "Cancel"),
        _option(
            "6",
            "billing",
            "Billing",
            required_fields=("account_number",),
            shortcut_prompt="ivr-engine/topic-your-bill",
        ),
        _option("0", "operator", "Operator", pinned=True),
    ),
    fields={
        "account_number": FieldSpec(
            name="account_number",
            prompt="ivr-engine/enter-account-number",
            min_digits=6,
            max_digits=12,
            sensitive=True,
        )
    },
)
PLAIN_MENU = replace(
    MENU,
    name="plain",
    fields={"account_number": replace(MENU.fields["account_number"], sensitive=False)},
)
MENUS = {"main": MENU, "plain": PLAIN_MENU}
DEFAULT_ORDER = ["new_service", "tech_support", "moving", "outage", "cancel", "billing", "operator"]


@pytest.fixture
async def api_timeline(tmp_path: Path) -> AsyncIterator[Timeline]:
    opened = await open_timeline("sqlite:///" + str(tmp_path / "t.db"))
    try:
        yield opened
    finally:
        await opened.close()


async def _client(store: TimelineStore, lookup: CallerLookup, **kw: Any) -> AsyncIterator[Client]:
    kw.setdefault("menus", MENUS)
    app = create_api_app(store=store, lookup=lookup, clock=lambda: NOW, **kw)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def client(api_timeline: Timeline) -> AsyncIterator[Client]:
    async for c in _client(api_timeline.store, api_timeline.lookup):
        yield c


async def _customer(client: Client, phone: str, **extra: Any) -> dict[str, Any]:
    body = {"identities": [{"kind": "phone", "value": phone}], **extra}
    return cast(dict[str, Any], await json_body(await client.post("/v1/customers", json=body), 201))


async def _event(client: Client, status: int = 201, **fields: Any) -> dict[str, Any]:
    body = {"channel": "chat", "event_type": "chat.message", **fields}
    return cast(dict[str, Any], await json_body(await client.post("/v1/events", json=body), status))


async def _preview(client: Client, **query: str) -> dict[str, Any]:
    return cast(
        dict[str, Any], await json_body(await client.get("/v1/menu-preview", params=query), 200)
    )


# --------------------------------------------------------------------------- customers


async def test_create_get_and_rename_customer(client: Client) -> None:
    created = await _customer(
        client,
        "(555) 123-0001",
        display_name="  Ada Lovelace ",
        fields={"postcode": "90210"},
    )
    assert created["display_name"] == "Ada Lovelace"
    assert created["identities"] == [{"kind": "phone", "value": "+15551230001"}]
    assert created["fields"]["postcode"]["value"] == "90210"
    assert created["fields"]["postcode"]["source_channel"] == "web"
    cid = created["customer_id"]

    got = await json_body(await client.get(f"/v1/customers/{cid}"), 200)
    assert got == created

    renamed = await json_body(
        await client.patch(f"/v1/customers/{cid}", json={"display_name": "A"}), 200
    )
    assert renamed["display_name"] == "A"
    cleared = await json_body(
        await client.patch(f"/v1/customers/{cid}", json={"display_name": None}), 200
    )
    assert cleared["display_name"] is None

    await error_body(await client.patch(f"/v1/customers/{cid}", json={}), 400, "validation_error")
    missing = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    await error_body(await client.get(f"/v1/customers/{missing}"), 404, "customer_not_found")
    await error_body(await client.get("/v1/customers/not%20an%20id"), 404)
    await error_body(
        await client.patch(f"/v1/customers/{missing}", json={"display_name": "x"}), 404
    )


async def test_add_identity_and_lookup_forms(client: Client) -> None:
    cid = (await _customer(client, "+1 555 123 0002"))["customer_id"]
    resp = await client.post(
        f"/v1/customers/{cid}/identities", json={"kind": "email", "value": "Ada@Example.COM"}
    )
    added = await json_body(resp, 200)
    assert {"kind": "email", "value": "ada@example.com"} in added["identities"]

    for query in (
        {"phone": "5551230002"},
        {"email": "ADA@example.com"},
        {"kind": "phone", "value": "+15551230002"},
    ):
        found = await json_body(await client.get("/v1/customers", params=query), 200)
        assert [c["customer_id"] for c in found["customers"]] == [cid], query
    none = await json_body(await client.get("/v1/customers", params={"phone": "5559990000"}), 200)
    assert none == {"customers": []}

    error = await error_body(
        await client.post(f"/v1/customers/{cid}/identities", json={"kind": "phone", "value": "x"}),
        400,
    )
    assert error["message"].startswith("value:")
    for bad in ({}, {"phone": "5551230002", "email": "a@b.co"}, {"kind": "phone"}):
        await error_body(await client.get("/v1/customers", params=bad), 400)
    await error_body(await client.get("/v1/customers?phone=5551230002&phone=5551230003"), 400)
    error = await error_body(await client.get("/v1/customers", params={"email": "nope"}), 400)
    assert error["message"].startswith("email:")


async def test_shared_number_stays_two_customers_until_merged(client: Client) -> None:
    first = (await _customer(client, "5551230003", display_name="Parent"))["customer_id"]
    second = (await _customer(client, "5551230003", display_name="Kid"))["customer_id"]
    found = await json_body(await client.get("/v1/customers", params={"phone": "5551230003"}), 200)
    assert {c["customer_id"] for c in found["customers"]} == {first, second}

    await _event(client, event_id="kid-1", customer_id=second, intent="billing")
    body = {"source_customer_id": second, "reason": "same household"}
    merged = await json_body(await client.post(f"/v1/customers/{first}/merge", json=body), 200)
    assert merged["customer_id"] == first

    found = await json_body(await client.get("/v1/customers", params={"phone": "5551230003"}), 200)
    assert [c["customer_id"] for c in found["customers"]] == [first]
    source = await json_body(await client.get(f"/v1/customers/{second}"), 200)
    assert source["merged_into"] == first
    page = await json_body(await client.get(f"/v1/customers/{first}/timeline"), 200)
    assert {e["event_id"] for e in page["events"]} >= {"kid-1"}
    assert any(e["event_type"] == "customer.merged" for e in page["events"])

    await error_body(
        await client.post(f"/v1/customers/{first}/merge", json=body), 409, "merge_rejected"
    )
    self_merge = {"source_customer_id": first, "reason": "oops"}
    await error_body(await client.post(f"/v1/customers/{first}/merge", json=self_merge), 409)
    ghost = {"source_customer_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "reason": "x"}
    await error_body(await client.post(f"/v1/customers/{first}/merge", json=ghost), 404)
    await error_body(await client.post(f"/v1/customers/{first}/merge", json={"reason": "x"}), 400)


async def test_put_known_field(client: Client) -> None:
    cid = (await _customer(client, "5551230004"))["customer_id"]
    body = {"value": "12345678", "source_channel": "chat", "verified": True}
    saved = await json_body(
        await client.put(f"/v1/customers/{cid}/fields/account_number", json=body), 200
    )
    assert saved["name"] == "account_number" and saved["verified"] is True
    customer = await json_body(await client.get(f"/v1/customers/{cid}"), 200)
    assert customer["fields"]["account_number"]["value"] == "12345678"
    assert customer["fields"]["account_number"]["source_channel"] == "chat"

    await error_body(await client.put(f"/v1/customers/{cid}/fields/Bad-Name", json=body), 400)
    bad_channel = {**body, "source_channel": "fax"}
    error = await error_body(
        await client.put(f"/v1/customers/{cid}/fields/account_number", json=bad_channel), 400
    )
    assert error["message"].startswith("source_channel:")
    missing = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    await error_body(await client.put(f"/v1/customers/{missing}/fields/x", json=body), 404)


async def test_known_field_values_follow_the_live_menus_field_specs(
    api_timeline: Timeline,
) -> None:
    """account_number is 6..12 digits in MENU: the IVR would prefill a value it could never
    collect. Undeclared fields stay free text; a menu reload changes the rule at once."""
    menus = LiveMenus(MENUS)
    async for client in _client(api_timeline.store, api_timeline.lookup, menus=menus):
        cid = (await _customer(client, "5551230018"))["customer_id"]
        url = f"/v1/customers/{cid}/fields/account_number"
        rule = "account_number must be 6 to 12 digits (0-9), as menu 'main' collects it"
        for bad in ("SW1A1AA", "12345", "1" * 13, "123 456", "١٢٣٤٥٦"):
            body = {"value": bad, "source_channel": "web"}
            error = await error_body(await client.put(url, json=body), 400, "validation_error")
            assert error["message"] == f"value: {rule} (fields.account_number)", bad
            assert bad not in error["message"]  # never echoed (the spec may be sensitive)
        free = {"value": "SW1A 1AA", "source_channel": "web"}
        await json_body(await client.put(f"/v1/customers/{cid}/fields/postcode", json=free), 200)

        fields = {"postcode": "SW1A 1AA", "account_number": "ABC123"}
        body = {"identities": [{"kind": "phone", "value": "5551230019"}], "fields": fields}
        error = await error_body(await client.post("/v1/customers", json=body), 400)
        assert error["message"].startswith(f"fields.account_number: {rule}")
        ident = {"kind": "phone", "value": "5551230020"}
        event = {"event_id": "fs-1", "identity": ident, "channel": "web", "event_type": "x"}
        error = await error_body(
            await client.post("/v1/events", json=event | {"fields": fields}), 400
        )
        assert error["message"].startswith(f"fields.account_number: {rule}")
        nobody = await json_body(
            await client.get("/v1/customers", params={"phone": "5551230020"}), 200
        )
        assert nobody == {"customers": []}  # refused before the identity was resolved

        spec = replace(MENU.fields["account_number"], min_digits=4, max_digits=4)
        menus.replace({"main": replace(MENU, fields={"account_number": spec})})
        four = {"value": "1234", "source_channel": "web"}
        await json_body(await client.put(url, json=four), 200)
        error = await error_body(await client.put(url, json=four | {"value": "123456"}), 400)
        assert "account_number must be exactly 4 digits (0-9)" in error["message"]


# --------------------------------------------------------------------------- events


async def test_event_is_idempotent_on_event_id(client: Client) -> None:
    cid = (await _customer(client, "5551230005"))["customer_id"]
    first = await _event(client, 201, event_id="evt-1", customer_id=cid, intent="billing")
    assert first["inserted"] is True and first["customer_id"] == cid
    again = await _event(client, 200, event_id="evt-1", customer_id=cid, intent="billing")
    assert again["inserted"] is False
    page = await json_body(await client.get(f"/v1/customers/{cid}/timeline"), 200)
    assert [e["event_id"] for e in page["events"]] == ["evt-1"]
    event = page["events"][0]
    assert event["occurred_at"] == NOW.isoformat()  # defaulted from the app clock
    assert (event["channel"], event["intent"]) == ("chat", "billing")


async def test_event_by_identity_creates_resolves_and_saves_fields(client: Client) -> None:
    ident = {"kind": "email", "value": "New.Person@Example.org"}
    first = await _event(
        client,
        event_id="web-1",
        identity=ident,
        channel="web",
        event_type="form.submitted",
        occurred_at="2025-03-09T08:30:00-05:00",
        case_id="CASE-9",
        data={"form": "contact", "tags": ["a", "b"]},
        fields={"account_number": "99887766"},
    )
    assert first["customer_created"] is True
    cid = first["customer_id"]
    second = await _event(
        client, event_id="web-2", identity=ident, channel="web", event_type="form.submitted"
    )
    assert (second["customer_id"], second["customer_created"]) == (cid, False)

    customer = await json_body(await client.get(f"/v1/customers/{cid}"), 200)
    assert customer["identities"] == [
        {"kind": "email", "value": "new.person@example.org"},
        {"kind": "account", "value": "99887766"},  # a saved account number identifies them
    ]
    known = customer["fields"]["account_number"]
    assert (known["value"], known["source_channel"]) == ("99887766", "web")
    page = await json_body(await client.get(f"/v1/customers/{cid}/timeline"), 200)
    stored = next(e for e in page["events"] if e["event_id"] == "web-1")
    assert stored["occurred_at"] == "2025-03-09T13:30:00+00:00"
    assert stored["data"] == {"form": "contact", "tags": ["a", "b"]}
    assert stored["case_id"] == "CASE-9"


async def test_event_for_ambiguous_identity_is_409_with_candidates(client: Client) -> None:
    a = (await _customer(client, "5551230006"))["customer_id"]
    b = (await _customer(client, "5551230006"))["customer_id"]
    resp = await client.post(
        "/v1/events",
        json={
            "event_id": "sms-1",
            "identity": {"kind": "phone", "value": "555-123-0006"},
            "channel": "sms",
            "event_type": "sms.received",
        },
    )
    error = await error_body(resp, 409, "ambiguous_identity")
    assert set(error["candidate_ids"]) == {a, b}


async def test_event_validation(client: Client) -> None:
    base = {"event_id": "v-1", "channel": "chat", "event_type": "chat.message"}
    cid = (await _customer(client, "5551230007"))["customer_id"]
    ident = {"kind": "phone", "value": "5551230007"}
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(base), "body"),  # neither customer_id nor identity
        ({**base, "customer_id": cid, "identity": ident}, "body"),
        ({**base, "customer_id": cid, "channel": "pigeon"}, "channel"),
        ({**base, "customer_id": cid, "occurred_at": "2025-03-01T10:00:00"}, "occurred_at"),
        ({**base, "customer_id": cid, "occurred_at": 1700000000}, "occurred_at"),
        ({**base, "customer_id": cid, "data": [1]}, "data"),
        ({**base, "customer_id": cid, "data": {"x": "y" * 20000}}, "data"),
        ({**base, "customer_id": cid, "fields": {"Bad Name": "1"}}, "fields.Bad Name.[key]"),
        ({**base, "identity": {"kind": "phone", "value": "12"}}, "identity.value"),
        ({k: v for k, v in base.items() if k != "event_id"} | {"customer_id": cid}, "event_id"),
    ]
    for body, field in cases:
        error = await error_body(await client.post("/v1/events", json=body), 400)
        assert error["message"].startswith(f"{field}:"), (body, error)
    missing = {**base, "customer_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}
    await error_body(await client.post("/v1/events", json=missing), 404, "customer_not_found")


async def test_event_in_the_future_is_refused_as_a_message_is(client: Client) -> None:
    """The future-skew rule of POST /v1/messages: a year-9999 event would head the timeline."""
    cid = (await _customer(client, "5551230017"))["customer_id"]
    too_late = (NOW + FUTURE_SKEW + timedelta(seconds=1)).isoformat()
    for ahead in ("9999-12-31T23:59:59Z", too_late):
        body = {"event_id": "f-1", "customer_id": cid, "occurred_at": ahead}
        resp = await client.post("/v1/events", json=body | {"channel": "web", "event_type": "x"})
        error = await error_body(resp, 400, "validation_error")
        assert error["message"] == "occurred_at: more than 5 minutes in the future"
    just_in = (NOW + FUTURE_SKEW).isoformat()
    await _event(client, 201, event_id="f-2", customer_id=cid, occurred_at=just_in)
    page = await json_body(await client.get(f"/v1/customers/{cid}/timeline"), 200)
    assert [e["event_id"] for e in page["events"]] == ["f-2"]  # nothing of the refused one


async def test_timeline_paging(client: Client) -> None:
    cid = (await _customer(client, "5551230008"))["customer_id"]
    for n in range(7):
        await _event(client, event_id=f"p-{n}", customer_id=cid)
    seen: list[str] = []
    before: int | None = None
    sizes = []
    while True:
        params = {"limit": "3"} | ({"before": str(before)} if before is not None else {})
        page = await json_body(
            await client.get(f"/v1/customers/{cid}/timeline", params=params), 200
        )
        sizes.append(len(page["events"]))
        seen += [e["event_id"] for e in page["events"]]
        before = page["next_before"]
        if before is None:
            break
    assert sizes == [3, 3, 1]
    assert seen == [f"p-{n}" for n in reversed(range(7))]  # newest first, no repeats
    for bad in ({"limit": "0"}, {"limit": "abc"}, {"limit": "100000"}, {"before": "-1"}):
        await error_body(await client.get(f"/v1/customers/{cid}/timeline", params=bad), 400)
    missing = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    await error_body(await client.get(f"/v1/customers/{missing}/timeline"), 404)


# --------------------------------------------------------------------------- menu preview


def _intents(preview: Mapping[str, Any]) -> list[str]:
    return [e["intent"] for e in preview["entries"]]


def _entry(preview: Mapping[str, Any], intent: str) -> Mapping[str, Any]:
    return cast(Mapping[str, Any], next(e for e in preview["entries"] if e["intent"] == intent))


async def test_menu_preview_for_a_new_caller_is_the_default_menu(client: Client) -> None:
    preview = await _preview(client, phone="+15557770001", menu="main")
    assert preview["personalised"] is False
    assert preview["customer_id"] is None and preview["shortcut"] is None
    assert _intents(preview) == DEFAULT_ORDER
    billing = _entry(preview, "billing")
    assert (billing["digit"], billing["label"]) == ("6", "Billing")
    assert billing["field_plan"] == {
        "prefilled": [],
        "to_ask": ["account_number"],
        "reasons": billing["field_plan"]["reasons"],
    }
    assert _entry(preview, "operator")["digit"] == "0"


async def test_menu_preview_puts_a_frequent_billing_caller_first(client: Client) -> None:
    cid = (await _customer(client, "5557770002"))["customer_id"]
    for n in range(5):
        when = (NOW - timedelta(days=n + 1)).isoformat()
        await _event(
            client,
            event_id=f"bill-{n}",
            customer_id=cid,
            channel="voice" if n % 2 else "chat",
            event_type="call.ivr" if n % 2 else "chat.message",
            intent="billing",
            occurred_at=when,
        )
    by_phone = await _preview(client, phone="(555) 777-0002")
    assert by_phone["personalised"] is True and by_phone["customer_id"] == cid
    first = by_phone["entries"][0]
    assert (first["digit"], first["intent"]) == ("1", "billing")
    assert any("billing" in reason for reason in by_phone["reasons"]), by_phone["reasons"]
    assert by_phone["ranking"][0]["intent"] == "billing"
    assert by_phone["ranking"][0]["contacts"] == 5
    assert by_phone["shortcut"] is not None and by_phone["shortcut"]["intent"] == "billing"
    assert _entry(by_phone, "operator")["digit"] == "0"

    by_id = await _preview(client, customer_id=cid)
    assert by_id["entries"] == by_phone["entries"]
    assert by_id["shortcut"] == by_phone["shortcut"]


async def test_menu_preview_asks_sensitive_known_fields_and_shows_the_others(
    client: Client,
) -> None:
    cid = (await _customer(client, "5557770003", fields={"account_number": "12345678"}))[
        "customer_id"
    ]
    sensitive = _entry(await _preview(client, phone="5557770003"), "billing")["field_plan"]
    assert sensitive["to_ask"] == ["account_number"]  # the caller is not verified: asked
    assert sensitive["prefilled"] == []
    assert sensitive["reasons"][0].endswith(", sensitive: asked, caller not verified")
    assert "12345678" not in json.dumps(sensitive)

    plain = _entry(await _preview(client, customer_id=cid, menu="plain"), "billing")
    prefilled = plain["field_plan"]["prefilled"]
    assert [(p["name"], p["value"], p["masked"]) for p in prefilled] == [
        ("account_number", "12345678", False)
    ]


async def test_menu_preview_validation(client: Client) -> None:
    await error_body(
        await client.get("/v1/menu-preview", params={"phone": "5557770004", "menu": "nope"}), 404
    )
    await error_body(await client.get("/v1/menu-preview"), 400)
    both = {"phone": "5557770004", "customer_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}
    await error_body(await client.get("/v1/menu-preview", params=both), 400)
    error = await error_body(await client.get("/v1/menu-preview", params={"phone": "abc"}), 400)
    assert error["message"].startswith("phone:")
    ghost = {"customer_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}
    await error_body(await client.get("/v1/menu-preview", params=ghost), 404)


async def test_menu_preview_for_a_shared_number_is_static(client: Client) -> None:
    for _ in range(2):
        await _customer(client, "5557770005")
    preview = await _preview(client, phone="5557770005")
    assert preview["ambiguous"] is True and preview["personalised"] is False
    assert _intents(preview) == DEFAULT_ORDER


async def test_menu_preview_by_customer_reads_the_history_a_call_reads(client: Client) -> None:
    """A call's lookup reads the newest events by when they happened; the preview by
    customer id read the newest by when they were WRITTEN, so events stored late (a call
    replayed from the spool, a back-filled import) replaced the recent history there."""
    cid = (await _customer(client, "5557770007"))["customer_id"]
    for n in range(50):  # recent: billing
        when = (NOW - timedelta(hours=n + 1)).isoformat()
        await _event(client, event_id=f"b{n}", customer_id=cid, intent="billing", occurred_at=when)
    for n in range(50):  # written afterwards, happened a month ago: tech support
        when = (NOW - timedelta(days=30, hours=n)).isoformat()
        await _event(
            client, event_id=f"t{n}", customer_id=cid, intent="tech_support", occurred_at=when
        )
    by_phone = await _preview(client, phone="5557770007")
    assert by_phone["entries"][0]["intent"] == "billing"
    by_id = await _preview(client, customer_id=cid)
    assert by_id["entries"] == by_phone["entries"]
    assert by_id["ranking"] == by_phone["ranking"] and by_id["shortcut"] == by_phone["shortcut"]


async def test_menu_preview_by_customer_leaves_out_a_calls_follow_ups_as_a_call_does(
    client: Client,
) -> None:
    """The lookup's window leaves out a call's follow-up events (the bridge's, the
    tracker's); the preview by customer id must read the same window."""
    cid = (await _customer(client, "5557770008"))["customer_id"]
    for n in range(3):  # three moving calls a week ago
        when = (NOW - timedelta(days=7, hours=n)).isoformat()
        await _event(client, event_id=f"m{n}", customer_id=cid, channel="voice",
                     event_type="call.ivr", intent="moving", occurred_at=when)  # fmt: skip
    for n in range(50):  # then a newer call's many follow-ups (as a bridge writes them)
        when = (NOW - timedelta(minutes=n + 1)).isoformat()
        await _event(client, event_id=f"f{n}", customer_id=cid, channel="voice",
                     event_type="call.held", intent="billing", occurred_at=when)  # fmt: skip
    by_phone = await _preview(client, phone="5557770008")
    assert by_phone["entries"][0]["intent"] == "moving"
    by_id = await _preview(client, customer_id=cid)
    assert by_id["entries"] == by_phone["entries"] and by_id["ranking"] == by_phone["ranking"]


class _DownLookup:
    """Fault injection: the timeline database is unreachable."""

    async def lookup(self, kind: str, value: str, *, max_events: int) -> LookupResult:
        raise TimelineUnavailable("timeline database sqlite:///t.db unavailable")


async def test_menu_preview_fails_open_when_the_timeline_is_down(
    api_timeline: Timeline,
) -> None:
    async for client in _client(api_timeline.store, _DownLookup()):
        preview = await _preview(client, phone="5557770006")
        assert preview["personalised"] is False
        assert _intents(preview) == DEFAULT_ORDER
        assert any("unavailable" in reason for reason in preview["reasons"]), preview
        assert "sqlite" not in json.dumps(preview)


# --------------------------------------------------------------------------- hostile input


async def test_hostile_bodies_are_400_never_500(client: Client) -> None:
    json_headers = {"Content-Type": "application/json"}

    async def post(data: bytes | str, path: str = "/v1/customers") -> Any:
        return await client.post(path, data=data, headers=json_headers)

    await error_body(await post("{not json"), 400, "invalid_json")
    await error_body(await post(b"\xff\xfe{}"), 400, "invalid_encoding")
    await error_body(await post(""), 400, "invalid_json")
    for non_object in ("[]", '"text"', "42", "null", "true"):
        await error_body(await post(non_object), 400, "validation_error")
    deep = '{"identities": ' + "[" * 1000 + "]" * 1000 + "}"
    await error_body(await post(deep), 400)
    deep_data = (
        '{"event_id": "d", "customer_id": "x", "channel": "chat", "event_type": "t", "data": '
        + '{"a": ' * 1000
        + "1"
        + "}" * 1000
        + "}"
    )
    await error_body(await post(deep_data, "/v1/events"), 400)
    wrong_types = {"identities": [{"kind": "phone", "value": 5551230001}], "display_name": 7}
    error = await error_body(await client.post("/v1/customers", json=wrong_types), 400)
    locs = {d["loc"] for d in error["details"]}
    assert {"identities.0.value", "display_name"} <= locs
    extra = {"identities": [{"kind": "phone", "value": "5551230009"}], "is_admin": True}
    error = await error_body(await client.post("/v1/customers", json=extra), 400)
    assert error["message"].startswith("is_admin:")
    huge = {"identities": [{"kind": "phone", "value": "5551230009"}], "display_name": "x" * 5000}
    error = await error_body(await client.post("/v1/customers", json=huge), 400)
    assert error["message"].startswith("display_name:") and len(error["message"]) < 400
    control = {"identities": [{"kind": "chat", "value": "a\x00b"}]}
    await error_body(await client.post("/v1/customers", json=control), 400)


async def test_body_size_and_media_type(client: Client) -> None:
    big = b'{"display_name": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    resp = await client.post(
        "/v1/customers", data=io.BytesIO(big), headers={"Content-Type": "application/json"}
    )
    await error_body(resp, 413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: capped while reading
        yield b'{"display_name": "'
        for _ in range(40):
            yield b"x" * (256 * 1024)
        yield b'"}'

    resp = await client.post(
        "/v1/customers", data=chunks(), headers={"Content-Type": "application/json"}
    )
    await error_body(resp, 413, "body_too_large")
    resp = await client.post("/v1/customers", data="{}", headers={"Content-Type": "text/plain"})
    await error_body(resp, 415, "unsupported_media_type")
    resp = await client.post("/v1/customers", data=b"{}")  # no content type at all
    await error_body(resp, 415)


async def test_random_json_never_causes_a_server_error(client: Client) -> None:
    rng = random.Random(20250310)

    def value(depth: int = 0) -> Any:
        pick = rng.randrange(9 if depth < 4 else 5)
        scalars: list[Any] = [
            None,
            True,
            rng.randint(-(2**70), 2**70),
            rng.random(),
            "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(40))),
        ]
        if pick < 5:
            return scalars[pick]
        if pick < 7:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        keys = [
            "event_id",
            "customer_id",
            "identity",
            "channel",
            "event_type",
            "occurred_at",
            "data",
            "fields",
            "kind",
            "value",
            "identities",
            "display_name",
            "zzz",
        ]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randrange(6))}

    for path in ("/v1/events", "/v1/customers"):
        for _ in range(150):
            resp = await client.post(path, json=value(1))
            assert resp.status < 500, await resp.text()


# --------------------------------------------------------------------------- meta


async def test_openapi_document_lists_every_route(client: Client) -> None:
    doc = await json_body(await client.get("/openapi.json"), 200)
    assert doc["openapi"].startswith("3.1")
    expected = {
        "/v1/customers": {"get", "post"},
        "/v1/customers/{id}": {"get", "patch"},
        "/v1/customers/{id}/identities": {"post"},
        "/v1/customers/{id}/merge": {"post"},
        "/v1/customers/{id}/fields/{name}": {"put"},
        "/v1/customers/{id}/timeline": {"get"},
        "/v1/events": {"post"},
        "/v1/menu-preview": {"get"},
        "/healthz": {"get"},
        "/openapi.json": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(doc["paths"][path]), path
    events = doc["paths"]["/v1/events"]["post"]["description"]
    assert "the same fields" in events and "100000000000000000000000" in events
    timeline = doc["paths"]["/v1/customers/{id}/timeline"]["get"]["description"]
    assert "a negative zero as 0.0" in timeline
    schemas = doc["components"]["schemas"]
    assert {"CreateCustomer", "EventIn", "CustomerJson", "PreviewJson"} <= set(schemas)
    assert "event_id" in schemas["EventIn"]["required"]
    refs = [m for m in _walk(doc) if isinstance(m, str) and m.startswith("#/components/")]
    for ref in refs:
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    docs = await client.get("/docs")
    assert docs.status == 200 and "/v1/events" in await docs.text()


def _walk(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for k, val in node.items() for v in ([val] if k == "$ref" else _walk(val))]
    if isinstance(node, list):
        return [v for item in node for v in _walk(item)]
    return []


async def test_unknown_route_and_method_are_json(client: Client) -> None:
    await error_body(await client.get("/v2/nothing"), 404, "not_found")
    await error_body(await client.delete("/v1/events"), 405, "method_not_allowed")


async def test_healthz(client: Client) -> None:
    assert await json_body(await client.get("/healthz"), 200) == {"status": "ok"}


class _FaultyStore:
    """Fault injection: every store call fails the way ``error`` says."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        async def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise self.error

        return fail


async def test_store_down_is_503_and_bugs_are_500_without_details(
    api_timeline: Timeline,
) -> None:
    down = cast(TimelineStore, _FaultyStore(TimelineUnavailable("db at 10.0.0.5 refused")))
    async for client in _client(down, api_timeline.lookup):
        await error_body(await client.get("/healthz"), 503, "timeline_unavailable")
        resp = await client.get("/v1/customers", params={"phone": "5551230010"})
        error = await error_body(resp, 503, "timeline_unavailable")
        assert "10.0.0.5" not in error["message"]
    broken = cast(TimelineStore, _FaultyStore(RuntimeError("secret password=hunter2")))
    async for client in _client(broken, api_timeline.lookup):
        resp = await client.get("/v1/customers/7c9e6679-7425-40de-944b-e07fc1f90ae7")
        text = await resp.text()
        assert resp.status == 500 and "hunter2" not in text
        assert json.loads(text)["error"]["code"] == "internal_error"


CHAT = {"channel": "chat", "event_type": "chat.message"}


async def test_a_reused_event_id_with_another_event_is_a_409(client: Client) -> None:
    """A client that reuses an id for a different event learns it (it was a silent 200)."""
    cid = (await _customer(client, "5551230015"))["customer_id"]
    at = (NOW - timedelta(minutes=3)).isoformat()
    first = {"event_id": "crm-9", "customer_id": cid, "intent": "billing", "occurred_at": at}
    await _event(client, 201, **first, data={"n": 1.5, "tags": ["a"]})
    again = await _event(client, 200, **first, data={"n": 1.5, "tags": ["a"]})  # a true retry
    assert again["inserted"] is False
    for change, differs in [
        ({"intent": "moving"}, ["intent"]),
        ({"data": {"n": 2}}, ["data"]),
        ({"channel": "email", "event_type": "email.received"}, ["channel", "event_type"]),
        ({"occurred_at": (NOW - timedelta(minutes=4)).isoformat()}, ["occurred_at"]),
    ]:
        body = first | {"data": {"n": 1.5, "tags": ["a"]}} | change
        error = await error_body(
            await client.post("/v1/events", json=CHAT | body), 409, "event_id_conflict"
        )
        assert error["differs"] == differs, error
    # nothing of the refused bodies was saved, not even their known fields
    body = first | {"intent": "moving", "fields": {"postcode": "12345"}}
    await error_body(await client.post("/v1/events", json=CHAT | body), 409, "event_id_conflict")
    customer = await json_body(await client.get(f"/v1/customers/{cid}"), 200)
    assert "postcode" not in customer["fields"]
    page = await json_body(await client.get(f"/v1/customers/{cid}/timeline"), 200)
    assert [(e["event_id"], e["intent"]) for e in page["events"]] == [("crm-9", "billing")]


async def test_a_query_rule_is_named_query_in_plain_words(client: Client) -> None:
    """It said 'body: Value error, give exactly one of ...' for a GET without parameters."""
    error = await error_body(await client.get("/v1/customers"), 400, "validation_error")
    assert error["message"].startswith("query: give exactly one of "), error
    assert error["details"][0]["loc"] == "query"
    error = await error_body(await client.get("/v1/menu-preview"), 400, "validation_error")
    assert error["message"].startswith("query: "), error
    assert "Value error" not in error["message"]

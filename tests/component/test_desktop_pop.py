"""The screen pop builder is pure: plain values in, a JSON-able dict out (masking included)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ivr_engine.desktop import (
    MASK,
    FieldMasking,
    Ring,
    build_screen_pop,
    intent_labels_from_menus,
    masking_from_menus,
    ring_from_call,
)
from ivr_engine.domain.models import CallOutcome, KnownField, MenuDecision
from ivr_engine.flows.call_record import CallRecord, IncomingCall
from ivr_engine.menu_config import load_menus
from ivr_engine.ports import Customer, Identity, StoredEvent

REPO = Path(__file__).resolve().parents[2]
MENUS = load_menus(REPO / "config" / "menus")
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
MASKING = masking_from_menus(MENUS.values())
LABELS = intent_labels_from_menus(MENUS.values())

CUSTOMER = Customer(
    customer_id="c-1",
    display_name="Grace Hopper",
    identities=(Identity("phone", "+15550100001"), Identity("email", "grace@example.com")),
    known_fields={},
    created_at=NOW,
    updated_at=NOW,
)


def _event(seq: int, days: float, channel: str, intent: str | None, **kw: Any) -> StoredEvent:
    return StoredEvent(
        seq=seq,
        event_id=kw.pop("event_id", f"e-{seq}"),
        customer_id="c-1",
        occurred_at=NOW - timedelta(days=days),
        recorded_at=NOW,
        channel=channel,
        event_type=kw.pop("event_type", f"{channel}.contact"),
        intent=intent,
        case_id=kw.pop("case_id", None),
        data=kw.pop("data", {}),
    )


def test_sensitive_fields_come_from_the_menu_config() -> None:
    assert "postcode" in MASKING.sensitive and "account_number" not in MASKING.sensitive
    assert MASKING.declared is not None and "account_number" in MASKING.declared


def test_pop_has_everything_the_agent_needs() -> None:
    ring = Ring(
        call_id="call-1",
        customer_id="c-1",
        intent="billing",
        caller_id="+15550100001",
        target="queue:billing",
        path=({"step": "shortcut", "intent": "billing", "digits": "1", "accepted": True},),
        entered={"postcode": "SW1A 1AA"},
        prefilled={"account_number": "12345678"},
        menu_reasons=("billing: 3 of last 4 contacts",),
        routing_reasons=("skill billing 4 >= 3",),
        rang_at=NOW,
    )
    events = [_event(1, 1, "chat", "billing"), _event(2, 3, "email", None, case_id="K-9")]
    pop = build_screen_pop(ring, CUSTOMER, events, masking=MASKING, intent_labels=LABELS)
    assert pop == {
        "call_id": "call-1",
        "rang_at": "2025-03-10T12:00:00Z",
        "caller_id": "+15550100001",
        "verified": False,
        "verified_by": [],
        "intent": "billing",
        "intent_label": "Pay your bill or ask about charges",
        "target": "queue:billing",
        "customer": {
            "customer_id": "c-1",
            "name": "Grace Hopper",
            "identities": [
                {"kind": "phone", "value": "+15550100001"},
                {"kind": "email", "value": "grace@example.com"},
            ],
        },
        "path": [
            {
                "step": "shortcut",
                "details": {"intent": "billing", "digits": "1", "accepted": "yes"},
            }
        ],
        "fields": [
            {"name": "account_number", "value": "12345678", "masked": False, "source": "prefilled"},
            {"name": "postcode", "value": MASK, "masked": True, "source": "entered"},
        ],
        "recent_contacts": [
            {
                "occurred_at": "2025-03-09T12:00:00Z",
                "channel": "chat",
                "event_type": "chat.contact",
                "intent": "billing",
                "intent_label": "Pay your bill or ask about charges",
                "case_id": None,
                "outcome": None,
            },
            {
                "occurred_at": "2025-03-07T12:00:00Z",
                "channel": "email",
                "event_type": "email.contact",
                "intent": None,
                "intent_label": None,
                "case_id": "K-9",
                "outcome": None,
            },
        ],
        "history_available": True,
        "menu_reasons": ["billing: 3 of last 4 contacts"],
        "routing_reasons": ["skill billing 4 >= 3"],
    }
    json.dumps(pop)


def test_verified_caller_sees_sensitive_values() -> None:
    ring = Ring(call_id="c", entered={"postcode": "90210"}, verified=True)
    pop = build_screen_pop(ring, None, [], masking=MASKING)
    assert pop["fields"] == [
        {"name": "postcode", "value": "90210", "masked": False, "source": "entered"}
    ]


def test_the_pop_names_the_fields_that_verified_the_caller() -> None:
    """ "Verified by postcode": the field the caller answered right is named, and listed
    with its (known, matched) value as any value of a verified caller is: in clear."""
    ring = Ring(call_id="c", verified=True, verified_by={"postcode": "75001"})
    pop = build_screen_pop(ring, None, [], masking=MASKING)
    assert pop["verified_by"] == ["postcode"]
    assert pop["fields"] == [
        {"name": "postcode", "value": "75001", "masked": False, "source": "verified"}
    ]


def test_a_match_that_no_longer_verifies_the_caller_is_neither_named_nor_shown() -> None:
    ring = Ring(call_id="c", verified=False, verified_by={"postcode": "75001"})
    pop = build_screen_pop(ring, None, [], masking=MASKING)
    assert pop["verified_by"] == []
    assert pop["fields"] == [
        {"name": "postcode", "value": MASK, "masked": True, "source": "verified"}
    ]
    assert "75001" not in json.dumps(pop)


def test_undeclared_fields_are_masked_when_the_declared_set_is_known() -> None:
    ring = Ring(call_id="c", prefilled={"date_of_birth": "1906-12-09", "account_number": "1"})
    pop = build_screen_pop(ring, None, [], masking=MASKING)
    assert [(f["name"], f["masked"]) for f in pop["fields"]] == [
        ("account_number", False),
        ("date_of_birth", True),
    ]
    open_policy = FieldMasking(sensitive=frozenset({"postcode"}))
    pop = build_screen_pop(ring, None, [], masking=open_policy)
    assert all(not f["masked"] for f in pop["fields"])


def test_a_sensitive_field_is_masked_in_the_customer_identities_too() -> None:
    """``account_number`` sensitive: the account identity of an unverified caller's record
    is masked as the field is (it showed in clear under ``customer.identities``)."""
    policy = FieldMasking(sensitive=frozenset({"account_number", "email"}))
    customer = Customer(
        "c-1",
        "Grace Hopper",
        (*CUSTOMER.identities, Identity("account", "40012345")),
        {},
        NOW,
        NOW,
    )
    ring = Ring(call_id="c", customer_id="c-1", prefilled={"account_number": "40012345"})
    pop = build_screen_pop(ring, customer, [], masking=policy)
    assert pop["customer"] is not None
    assert pop["customer"]["identities"] == [
        {"kind": "phone", "value": "+15550100001"},
        {"kind": "email", "value": MASK},
        {"kind": "account", "value": MASK},
    ]
    assert "40012345" not in json.dumps(pop) and "grace@example.com" not in json.dumps(pop)
    verified = Ring(call_id="c", customer_id="c-1", verified=True)
    pop = build_screen_pop(verified, customer, [], masking=policy)
    assert pop["customer"] is not None
    assert {"kind": "account", "value": "40012345"} in pop["customer"]["identities"]


def test_an_identity_is_masked_when_its_field_is_undeclared() -> None:
    """Menus that do not declare ``account_number``: the entered value is masked (unknown
    sensitivity), and so is the same value in the record's ``account`` identity (it showed
    in clear to the agent of an unverified caller). Phone and e-mail are no fields: shown."""
    policy = FieldMasking(sensitive=frozenset({"postcode"}), declared=frozenset({"postcode"}))
    customer = Customer(
        "c-1", "Grace", (*CUSTOMER.identities, Identity("account", "12345678")), {}, NOW, NOW
    )
    ring = Ring(call_id="c", customer_id="c-1", entered={"account_number": "12345678"})
    pop = build_screen_pop(ring, customer, [], masking=policy)
    assert pop["customer"] is not None
    assert pop["customer"]["identities"] == [
        {"kind": "phone", "value": "+15550100001"},
        {"kind": "email", "value": "grace@example.com"},
        {"kind": "account", "value": MASK},
    ]
    assert "12345678" not in json.dumps(pop)
    declared = FieldMasking(declared=frozenset({"account_number"}))  # declared, not sensitive
    assert not declared.masks_identity("account", verified=False)
    assert not policy.masks_identity("account", verified=True)


def test_entered_value_wins_over_prefilled() -> None:
    ring = Ring(call_id="c", entered={"account_number": "222"}, prefilled={"account_number": "1"})
    pop = build_screen_pop(ring, None, [], masking=MASKING)
    assert pop["fields"] == [
        {"name": "account_number", "value": "222", "masked": False, "source": "entered"}
    ]


def test_recent_contacts_newest_first_capped_and_without_this_call() -> None:
    events = [
        _event(5, 0, "voice", "billing", event_id="voice:call-1:ivr"),  # the ringing call
        _event(4, 9, "voice", "moving", data={"outcome": "abandoned"}),
        _event(3, 1, "chat", "billing"),  # stored later than it happened
        _event(2, 2, "sms", "outage"),
        _event(1, 3, "web", "cancel"),
    ]
    pop = build_screen_pop(
        Ring(call_id="call-1"), CUSTOMER, events, masking=MASKING, max_contacts=3
    )
    contacts = pop["recent_contacts"]
    assert [c["channel"] for c in contacts] == ["chat", "sms", "web"]
    pop = build_screen_pop(Ring(call_id="call-1"), CUSTOMER, events, masking=MASKING)
    assert pop["recent_contacts"][-1]["outcome"] == "abandoned"


def test_this_call_is_told_by_its_key_not_by_the_switchs_id() -> None:
    """Another PBX's call with the same uniqueid is a contact like any other."""
    events = [
        _event(5, 0, "voice", "billing", event_id="voice:1700.1~aaaa:ivr"),  # the ringing call
        _event(4, 1, "voice", "moving", event_id="voice:1700.1~bbbb:ivr"),  # another PBX's
    ]
    ring = Ring(call_id="1700.1", call_key="1700.1~aaaa")
    pop = build_screen_pop(ring, CUSTOMER, events, masking=MASKING)
    assert [c["intent"] for c in pop["recent_contacts"]] == ["moving"]


def test_unknown_caller_and_no_history() -> None:
    pop = build_screen_pop(Ring(call_id="c"), None, [], masking=MASKING, history_available=False)
    assert pop["customer"] is None and pop["recent_contacts"] == []
    assert pop["history_available"] is False and pop["intent"] is None


def test_long_and_odd_values_are_clipped_and_stringified() -> None:
    ring = Ring(
        call_id="c",
        path=({"step": "x" * 500, "fields": ["a", "b"], "n": None, "obj": object()},),
        routing_reasons=tuple(f"r{i}" for i in range(50)),
    )
    pop = build_screen_pop(ring, None, [], masking=MASKING)
    step = pop["path"][0]
    assert len(step["step"]) == 200 and step["step"].endswith("…")
    assert step["details"]["fields"] == "a, b" and step["details"]["n"] == ""
    assert step["details"]["obj"].startswith("<object")
    assert len(pop["routing_reasons"]) == 20
    json.dumps(pop)


def test_ring_from_a_finished_ivr_call() -> None:
    call = IncomingCall("1700.1", "5550100001", "PJSIP/trunk-1", "main", NOW)
    record = CallRecord(call, phone="+15550100001", customer_id="c-1", intent="moving")
    record.decision = MenuDecision("main", True, (), (), None, ("moving: open case",))
    record.target, record.outcome = "queue:moving", CallOutcome.ROUTED
    record.step("menu", attempt=1, digits="3", intent="moving")
    record.prefilled = ["account_number"]
    record.entered = {"postcode": "90210"}
    known = {"account_number": KnownField("account_number", "12345678", "web", NOW)}
    ring = ring_from_call(record, known_fields=known, routing_reasons=("idle 40 s",), rang_at=NOW)
    assert ring.call_key == call.call_key and call.call_key.startswith("1700.1~")
    assert ring == Ring(
        call_key=call.call_key,
        call_id="1700.1",
        customer_id="c-1",
        intent="moving",
        caller_id="+15550100001",
        target="queue:moving",
        path=({"step": "menu", "attempt": 1, "digits": "3", "intent": "moving"},),
        entered={"postcode": "90210"},
        prefilled={"account_number": "12345678"},
        menu_reasons=("moving: open case",),
        routing_reasons=("idle 40 s",),
        verified=False,
        rang_at=NOW,
    )


def test_ring_from_a_verified_call_carries_the_matched_fields_known_values() -> None:
    """The matched postcode is not saved again (``record.entered`` lacks it): its value for
    the pop is the customer's known one, which it matched."""
    call = IncomingCall("1700.2", "5550100001", "PJSIP/trunk-1", "main", NOW)
    record = CallRecord(call, phone="+15550100001", customer_id="c-1", intent="moving")
    record.verified, record.verified_by = True, ["postcode"]
    known = {"postcode": KnownField("postcode", "75001", "chat", NOW)}
    ring = ring_from_call(record, known_fields=known, verified=True)
    assert ring.verified_by == {"postcode": "75001"} and ring.entered == {}


_text = st.text(max_size=30)


@given(
    entered=st.dictionaries(st.sampled_from(["postcode", "account_number", "pin"]), _text),
    prefilled=st.dictionaries(st.sampled_from(["postcode", "account_number", "pin"]), _text),
    name=st.none() | _text,
    details=st.dictionaries(_text, st.none() | st.booleans() | st.integers() | _text),
)
def test_masked_values_never_leak_and_the_pop_is_always_json(
    entered: dict[str, str],
    prefilled: dict[str, str],
    name: str | None,
    details: dict[str, Any],
) -> None:
    policy = FieldMasking(sensitive=frozenset({"postcode", "pin"}))
    ring = Ring(
        call_id="c",
        entered=entered,
        prefilled=prefilled,
        path=({"step": "s", **details},),
        verified_by={"pin": "4321"},  # not verified (a match dropped): still masked
    )
    customer = Customer("c-1", name, (), {}, NOW, NOW)
    pop = build_screen_pop(ring, customer, [], masking=policy)
    encoded = json.dumps(pop)
    assert json.loads(encoded) == pop
    for field in pop["fields"]:
        assert field["masked"] == (field["name"] in {"postcode", "pin"})
        if field["masked"]:
            assert field["value"] == MASK
    assert pop["verified_by"] == []
    merged = {**prefilled, **entered, "pin": "4321"}
    assert [f["name"] for f in pop["fields"]] == sorted(merged)
    for field in pop["fields"]:
        if not field["masked"]:
            assert field["value"] == merged[field["name"]]

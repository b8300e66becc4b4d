"""The pure half of the webhook dead-letter routes: JSON shapes, the redrive answer, the 404."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from crm_bridge.webhooks.store import DeadLetter, Delivery
from ivr_engine.omni.webhook_admin_json import (
    RedriveBody,
    dead_letter_json,
    redrive_json,
    unknown_subscription,
)


def test_a_dead_letter_is_shown_with_its_failure_time_in_utc() -> None:
    delivery = Delivery("dlv_1", "crm", "call.ended", "evt_1", b"{}", order_key=5)
    letter = DeadLetter(delivery, attempts=8, last_error="HTTP 503: busy", failed_at=1.5e9)
    assert dead_letter_json(letter) == {
        "delivery_id": "dlv_1",
        "subscription_id": "crm",
        "event_type": "call.ended",
        "event_id": "evt_1",
        "attempts": 8,
        "last_error": "HTTP 503: busy",
        "failed_at": "2017-07-14T02:40:00+00:00",
    }


def test_redrive_answer_keeps_the_asked_order_without_repeats() -> None:
    answer = redrive_json(["b", "x", "a", "b", "x"], found=["a", "b"])
    assert answer == {"redriven": ["b", "a"], "not_found": ["x"]}


def test_the_404_names_at_most_20_known_subscriptions() -> None:
    assert unknown_subscription("zz", []).message == "no subscription 'zz'; the known ones: none"
    many = unknown_subscription("zz", [f"s{i}" for i in range(25)])
    assert (many.status, many.code) == (404, "subscription_not_found")
    assert many.message.endswith("s18, s19 (and 5 more)")


@pytest.mark.parametrize(
    "body",
    ['{"delivery_ids": ["a"]}', '{"subscription_id": "crm"}', '{"all": true}'],
)
def test_one_choice_is_a_redrive_body(body: str) -> None:
    RedriveBody.model_validate_json(body)


@pytest.mark.parametrize(
    "body", ["{}", '{"delivery_ids": null}', '{"all": true, "subscription_id": "crm"}']
)
def test_none_or_two_choices_are_refused(body: str) -> None:
    with pytest.raises(ValidationError, match="give exactly one of"):
        RedriveBody.model_validate_json(body)

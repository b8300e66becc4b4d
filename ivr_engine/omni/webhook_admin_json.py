"""What the webhook dead-letter routes (``webhook_admin``) take and answer (pure).

The query and body models (strict, bounded), the response TypedDicts (the OpenAPI
document's shapes) and the functions that fill them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from typing_extensions import TypedDict

from crm_bridge.webhooks.store import DeadLetter
from ivr_engine.api.errors import ApiError

MAX_IDS = 1000
REDRIVE_ALL_LIMIT = 10_000  # per request (``redrive_all``); call again for more
_SHOWN_IDS = 20  # known subscription ids named in a 404

SubscriptionId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,64}$")]
DeliveryId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]


class DeadLettersQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subscription_id: SubscriptionId | None = None
    limit: int = Field(100, ge=1, le=1000)


class RedriveBody(BaseModel):
    """Exactly one of: delivery_ids (1 to 1000), subscription_id (all of its dead letters),
    all: true (every dead letter). At most 10000 are re-driven per request."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    delivery_ids: list[DeliveryId] | None = Field(None, min_length=1, max_length=MAX_IDS)
    subscription_id: SubscriptionId | None = None
    all: Literal[True] | None = None

    @model_validator(mode="after")
    def _one_choice(self) -> Self:
        given = [self.delivery_ids, self.subscription_id, self.all]
        if sum(choice is not None for choice in given) != 1:
            raise ValueError("give exactly one of delivery_ids, subscription_id or all")
        return self


class DeadLetterJson(TypedDict):
    delivery_id: str
    subscription_id: str
    event_type: str
    event_id: str
    attempts: int
    last_error: str
    failed_at: str  # ISO 8601, UTC


class DeadLetterListJson(TypedDict):
    dead_letters: list[DeadLetterJson]


class RedriveJson(TypedDict):
    redriven: list[str]  # delivery ids sent again, in the order asked
    not_found: list[str]  # asked ids that are not dead letters (never were, or re-driven)


def dead_letter_json(letter: DeadLetter) -> DeadLetterJson:
    delivery = letter.delivery
    return {
        "delivery_id": delivery.delivery_id,
        "subscription_id": delivery.subscription_id,
        "event_type": delivery.event_type,
        "event_id": delivery.event_id,
        "attempts": letter.attempts,
        "last_error": letter.last_error,
        "failed_at": datetime.fromtimestamp(letter.failed_at, UTC).isoformat(),
    }


def dead_letter_list_json(letters: Sequence[DeadLetter]) -> DeadLetterListJson:
    return {"dead_letters": [dead_letter_json(letter) for letter in letters]}


def redrive_json(asked: Sequence[str], found: Collection[str]) -> RedriveJson:
    """``found`` in the order asked, and the asked ids that were not found (no repeats)."""
    unique, revived = list(dict.fromkeys(asked)), set(found)
    return {
        "redriven": [i for i in unique if i in revived],
        "not_found": [i for i in unique if i not in revived],
    }


def unknown_subscription(subscription_id: str, known: Sequence[str]) -> ApiError:
    """The 404 of an id no subscription has, naming the known ones (the first 20)."""
    shown = ", ".join(known[:_SHOWN_IDS]) or "none"
    more = f" (and {len(known) - _SHOWN_IDS} more)" if len(known) > _SHOWN_IDS else ""
    message = f"no subscription {subscription_id!r}; the known ones: {shown}{more}"
    return ApiError(404, "subscription_not_found", message)

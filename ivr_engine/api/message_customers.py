"""Whose text-channel message it is (``POST /v1/messages``): never a silent wrong merge.

* inbound: ``customer_id`` if given, else the one owner of the sender's identity, a new
  customer if nobody owns it, 409 ``ambiguous_identity`` if several do (merge them first);
* outbound: ``customer_id`` if given, else the conversation's customer;
* a conversation that already has events takes messages of its own customers only
  (409 ``conversation_mismatch``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ivr_engine.api.conversation_rules import case_customers
from ivr_engine.api.errors import ApiError
from ivr_engine.api.schemas_messages import CHANNEL_IDENTITY, MessageIn
from ivr_engine.ports import CaseEventHead, Identity, TimelineStore


async def message_customer(
    store: TimelineStore, body: MessageIn, heads: Sequence[CaseEventHead]
) -> str | Identity:
    """The customer a new message belongs to, or the sender's identity when nobody owns it
    yet (its customer is then created with the message, in one transaction)."""
    members = case_customers(heads)
    if body.customer_id is not None:
        customer_id = await _survivor(store, body.customer_id)
    elif body.direction == "outbound":
        return _conversation_customer(body.conversation_id, members)
    else:
        assert body.customer_address is not None  # check_message
        identity = Identity(CHANNEL_IDENTITY[body.channel], body.customer_address)
        owner = await _sender(store, identity, members)
        if owner is None:
            return identity
        customer_id = owner
    if members and customer_id not in members:
        raise _mismatch(customer_id, members)
    return customer_id


async def _sender(store: TimelineStore, identity: Identity, members: Sequence[str]) -> str | None:
    owners = await store.find_customers(identity)
    if len(owners) > 1:
        raise ApiError(
            409,
            "ambiguous_identity",
            f"{identity.kind} identity belongs to {len(owners)} customers; send customer_id "
            "or merge them first",
            extra={"candidate_ids": [c.customer_id for c in owners]},
        )
    if owners:
        return owners[0].customer_id
    if members:  # a stranger writing into someone's conversation: do not create
        raise _mismatch(None, members)
    return None


async def _survivor(store: TimelineStore, customer_id: str) -> str:
    customer = await store.get_customer(customer_id)
    if customer is None:
        raise ApiError(404, "customer_not_found", "customer not found")
    return customer.merged_into or customer.customer_id


def _conversation_customer(conversation_id: str | None, members: Sequence[str]) -> str:
    if not members:
        raise ApiError(
            404,
            "conversation_not_found",
            f"conversation {conversation_id!r} has no events; name customer_id to start one",
        )
    if len(members) > 1:
        raise ApiError(
            409,
            "ambiguous_conversation",
            f"the conversation has {len(members)} customers; send customer_id",
            extra={"candidate_ids": list(members)},
        )
    return members[0]


def _mismatch(customer_id: str | None, members: Sequence[str]) -> ApiError:
    if customer_id is None:
        who = "the sender's identity is nobody's yet"
    else:
        who = f"customer {customer_id!r} is not in it"
    return ApiError(
        409,
        "conversation_mismatch",
        f"the conversation belongs to other customers ({who}); send customer_id, add the "
        "identity to the customer, or merge",
        extra={"customer_ids": list(members)},
    )


__all__ = ["message_customer"]

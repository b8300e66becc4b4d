"""Which customer a recorded call is stored under, and the writer ports that store it.

A known customer's call is stored under that customer. A first-time caller (or a customer gone
since the call) is stored under the one customer owning the caller's number, else a new one:
one at a time on the SQLAlchemy store (``store_call``), or a whole batch at once through a
writer's own customer directory (``customers_by_phone``, ``FastCallWriter``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Protocol, runtime_checkable

from ivr_engine.domain.errors import CustomerNotFound
from ivr_engine.flows.call_record import CallWrite
from ivr_engine.ports import CustomerWrite, Identity, NewTimelineEvent, TimelineStore

log = logging.getLogger(__name__)


class FastWriter(Protocol):
    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        """Store known customers' calls in one go; returns the customer ids not found."""
        ...


@runtime_checkable
class CustomerDirectory(FastWriter, Protocol):
    """A ``FastWriter`` that also finds and creates callers by phone (``FastCallWriter``)."""

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]: ...

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]: ...


async def customers_by_phone(
    directory: CustomerDirectory, phones: Sequence[str | None], keys: Sequence[str | None] = ()
) -> list[str]:
    """The customer of each caller by ``customer_for_phone``'s rule, for a whole batch: the
    one owner of the number; a shared or withheld number → a new customer without
    identities (one each); an unknown number → a new customer owning it (one per number, or
    the one a concurrent call created a moment ago). One query, then one transaction.
    ``keys`` (one per phone) make a new customer's id: the same on a retry."""
    wanted = sorted({p for p in phones if p is not None})
    owners = await directory.phone_owners(wanted) if wanted else {}
    found = {phone: ids[0] for phone, ids in owners.items() if len(ids) == 1}
    keyed = list(zip(phones, list(keys) or [None] * len(phones), strict=True))
    to_create = [(p, k) for p, k in keyed if p is None or p not in found]
    created = iter(
        await directory.create_customers(
            [p if p not in owners else None for p, _ in to_create], [k for _, k in to_create]
        )
    )
    return [found[p] if p is not None and p in found else next(created) for p in phones]


async def store_call(store: TimelineStore, write: CallWrite) -> None:
    """Resolve the customer and store the call's events and fields.

    A customer id that no longer exists (deleted since the call) falls back to finding the
    caller by phone, so the call is still stored rather than retried forever.
    """
    if write.customer_id:
        try:
            await _store_for(store, write, write.customer_id)
            return
        except CustomerNotFound:
            log.warning("customer %s is gone; storing the call by phone", write.customer_id)
    await _store_for(store, write, await customer_for_phone(store, write.phone))


async def _store_for(store: TimelineStore, write: CallWrite, customer_id: str) -> None:
    await store.append_events([_with_customer(e, customer_id) for e in write.events])
    if write.fields:
        await store.save_known_fields(customer_id, write.fields)


async def customer_for_phone(store: TimelineStore, phone: str | None) -> str:
    """The one customer owning ``phone``, or a new one.

    A number shared by several customers is not guessed at: the call goes to a new customer
    without identities (the event keeps the caller ID) for an agent to merge, so nothing is
    written onto the wrong person's timeline.
    """
    if phone is None:
        return (await store.create_customer(None, ())).customer_id
    identity = Identity("phone", phone)
    found = await store.find_customers(identity)
    if len(found) == 1:
        return found[0].customer_id
    if len(found) > 1:
        return (await store.create_customer(None, ())).customer_id
    return await store.create_customer_for_identity(identity)


def _with_customer(event: NewTimelineEvent, customer_id: str) -> NewTimelineEvent:
    return NewTimelineEvent(**{**asdict(event), "customer_id": customer_id})

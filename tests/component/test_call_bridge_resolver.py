"""Customers resolved a batch at a time (the bridge's ``directory``: one query, one
transaction), against real SQLite and PostgreSQL: the same answers as one call at a time."""

from __future__ import annotations

from collections.abc import Callable

from crm_bridge.calls import CustomerResolver
from ivr_engine.ports import Identity
from ivr_engine.timeline import FastCallWriter, Timeline


async def test_a_batch_of_calls_gets_the_same_customers_as_one_call_at_a_time(
    timeline: Timeline, database_url: str, new_phone: Callable[[], str]
) -> None:
    known, shared, fresh = new_phone(), new_phone(), new_phone()
    ada = await timeline.store.create_customer("Ada", [Identity("phone", known)])
    for name in ("Bo", "Cy"):
        await timeline.store.create_customer(name, [Identity("phone", shared)])
    writer = FastCallWriter(database_url)
    try:
        resolver = CustomerResolver(timeline.store, directory=writer)
        calls = {"k": known, "s": shared, "f1": fresh, "f2": fresh, "w1": None, "w2": None}
        found = await resolver.customers_for(calls)
        again = await CustomerResolver(timeline.store, directory=writer).customers_for(
            {"f3": fresh, "k2": known}
        )
    finally:
        await writer.close()
    assert found["k"] == ada.customer_id == again["k2"]
    assert found["f1"] == found["f2"] == again["f3"]  # one new customer for a new number
    owners = await timeline.store.find_customers(Identity("phone", fresh))
    assert [c.customer_id for c in owners] == [found["f1"]]
    unlinked = {found["s"], found["w1"], found["w2"]}
    assert len(unlinked) == 3  # shared or withheld: a new customer per call, never a guess
    for customer_id in unlinked:
        customer = await timeline.store.get_customer(customer_id)
        assert customer is not None and customer.identities == ()
    assert (resolver.created, resolver.unlinked) == (1, 3)


async def test_a_number_created_meanwhile_by_someone_else_is_reused(
    timeline: Timeline, database_url: str, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    writer = FastCallWriter(database_url)
    try:
        assert await writer.phone_owners([phone]) == {}
        theirs = await timeline.store.create_customer_for_identity(Identity("phone", phone))
        mine = await writer.create_customers([phone, None, phone])
    finally:
        await writer.close()
    assert mine[0] == mine[2] == theirs and mine[1] != theirs

"""Two PBXs behind one engine can send the same Asterisk uniqueid (``<epoch>.<counter>``
without ``systemname``): each call must still get its own timeline identity (event id,
a first-time caller's new customer), and nothing of one caller may land on the other.
Through the real FastAGI server, the fake Asterisk, the real recorder and timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr_engine.flows.ivr_flow import IvrFlow
from ivr_engine.flows.recorder import CallRecorder
from ivr_engine.menu_config import load_menus
from ivr_engine.ports import Customer, Identity
from ivr_engine.telephony.agi import FastAgiServer
from ivr_engine.telephony.ivr_handler import ivr_handler
from ivr_engine.timeline import Timeline, open_timeline
from tests.component.fake_asterisk import AsteriskChannel, FakeAsterisk

REPO = Path(__file__).resolve().parents[2]
SHARED_UNIQUEID = "1700000100.1"  # the same on both PBXs of a load-balanced pair


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Engine:
    agi: FastAgiServer
    timeline: Timeline
    recorder: CallRecorder

    async def call(self, caller: str, keys: list[str], uniqueid: str) -> AsteriskChannel:
        asterisk = FakeAsterisk("127.0.0.1", self.agi.port)
        env = {**asterisk.env(caller_id=caller), "agi_uniqueid": uniqueid}
        channel = AsteriskChannel(keys=keys)
        transcript = await asterisk.call(channel, env=env)
        assert transcript.server_closed and not transcript.dropped
        return channel

    async def customers(self, phone: str) -> list[Customer]:
        return await self.timeline.store.find_customers(Identity("phone", phone))


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    timeline = await open_timeline(database_url, migrate=False)
    recorder = CallRecorder(timeline.store, tmp_path / "spool", fast=timeline.writer)
    await recorder.start()
    flow = IvrFlow(
        menus=load_menus(REPO / "config/menus"), lookup=timeline.lookup, sink=recorder, clock=now
    )
    agi = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, command_timeout=2.0)
    agi.register("ivr", ivr_handler(flow, now))
    await agi.start()
    try:
        yield Engine(agi, timeline, recorder)
    finally:
        await agi.close(grace=0)
        await recorder.close()
        await timeline.close()


async def test_two_pbxs_calls_with_one_uniqueid_stay_two_callers(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    first, second = new_phone(), new_phone()
    account = second[-8:]  # unique: a saved one identifies its customer (shared database)
    a = await engine.call(first, ["1"], SHARED_UNIQUEID)
    b = await engine.call(second, ["3", account, "1234"], SHARED_UNIQUEID)  # moving
    assert a.variables["IVR_OUTCOME"] == b.variables["IVR_OUTCOME"] == "routed"
    await engine.recorder.close()  # everything written

    [customer_a] = await engine.customers(first)
    [customer_b] = await engine.customers(second)
    assert customer_a.customer_id != customer_b.customer_id
    assert [i.value for i in customer_a.identities] == [first]
    assert {(i.kind, i.value) for i in customer_b.identities} == {
        ("phone", second),
        ("account", account),  # the account number entered identifies them from now on
    }
    assert dict(customer_a.known_fields) == {}
    assert {n: f.value for n, f in customer_b.known_fields.items()} == {
        "account_number": account,
        "postcode": "1234",
    }
    for customer, intent in ((customer_a, "new_service"), (customer_b, "moving")):
        [event] = (await engine.timeline.store.timeline(customer.customer_id)).events
        assert event.event_type == "call.ivr" and event.intent == intent
        assert event.data["call_id"] == SHARED_UNIQUEID  # the switch's id, as the bridge's
        assert event.event_id.startswith(f"voice:{SHARED_UNIQUEID}~")

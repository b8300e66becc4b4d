"""AmiClient's server-side event filter (``server_filter``) against the fake AMI peer, which
answers ``Filter`` as Asterisk 22 does (``MatchCriteria: name(X)``: exact names; list items
are not filtered). The same against the real Asterisk: tests/e2e/test_call_bridge_e2e.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from crm_bridge.calls import BridgeSettings
from crm_bridge.calls.normalise import ASTERISK_EVENT_NAMES, SUBSCRIBED_EVENTS
from ivr_engine.telephony.ami import AmiClient
from tests.component.test_ami_fake_peer import (
    WAIT_S,
    FakeAmi,
    PeerSession,
    channel_event,
    connected_client,
    make_client,
    next_event,
)

WANTED = ("Newchannel", "Hangup", "FullyBooted")


def filters_asked(session: PeerSession) -> list[tuple[str, str]]:
    return [
        (a.get("Operation"), a.get("MatchCriteria"))
        for a in session.received
        if a.name.lower() == "filter"
    ]


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():  # noqa: ASYNC110 (a flag of the client, a log record)
            await asyncio.sleep(0.01)


async def filtered(client: AmiClient) -> None:
    await eventually(lambda: client.server_filtered)


async def test_filter_is_installed_after_each_login(peer: FakeAmi) -> None:
    async with connected_client(peer, server_filter=WANTED) as client:
        session = await peer.next_login()
        await filtered(client)
        assert filters_asked(session) == [("Add", f"name({name})") for name in WANTED]
        assert session.event_names == set(WANTED)
        everything = client.subscribe()
        await session.event("DeviceStateChange", ("Device", "PJSIP/agent1"), ("State", "INUSE"))
        await session.event("Newchannel", ("Uniqueid", "1.1"))
        assert (await next_event(everything)).name == "Newchannel"  # the other was not sent
        listed = await client.action_list("CoreShowChannels")  # list items are never filtered
        assert [e.name for e in listed.events] == []
        peer.channels = 1
        listed = await client.action_list("CoreShowChannels")
        assert [e.name for e in listed.events] == ["CoreShowChannel"]


async def test_a_fully_booted_subscriber_can_act_while_the_filter_is_installed(
    peer: FakeAmi,
) -> None:
    """The call bridge resyncs (``CoreShowChannels``) on the ``FullyBooted`` that follows
    the login, while the filter's actions are still out: the client is connected then."""
    client = make_client(peer, server_filter=WANTED)
    booted = client.subscribe("FullyBooted")
    await client.start()
    try:
        await next_event(booted)
        listed = await client.action_list("CoreShowChannels")
        assert listed.complete is not None
        await filtered(client)
    finally:
        await client.close()


async def test_without_server_filter_no_filter_action_is_sent(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        session = await peer.next_login()
        assert filters_asked(session) == [] and not client.server_filtered
        everything = client.subscribe()
        await session.event("DeviceStateChange", ("Device", "PJSIP/agent1"))
        assert (await next_event(everything)).name == "DeviceStateChange"


async def test_a_refused_filter_is_warned_once_and_events_flow_unfiltered(
    peer: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    peer.refuse_filters_with = "Permission denied"
    caplog.set_level(logging.WARNING, logger="ivr_engine.telephony.ami.client")
    async with connected_client(peer, server_filter=WANTED) as client:
        first = await peer.next_login()
        await eventually(lambda: bool(caplog.records))
        assert len(filters_asked(first)) == len(WANTED) and not client.server_filtered
        everything = client.subscribe()
        await first.event("DeviceStateChange", ("Device", "PJSIP/agent1"))
        assert (await next_event(everything)).name == "DeviceStateChange"
        first.drop()  # a reconnect does not ask again (nor warn again)
        second = await peer.next_login()
        await client.wait_connected(10)
        assert filters_asked(second) == []
    warnings = [r for r in caplog.records if "refused the event filter" in r.getMessage()]
    assert len(warnings) == 1 and "Permission denied" in warnings[0].getMessage()


async def test_a_filter_taken_in_part_logs_in_again_without_one(peer: FakeAmi) -> None:
    """A whitelist missing a name would hide that event: the session is dropped and the
    next one reads unfiltered."""
    peer.refuse_filter_names = {"Hangup"}
    async with connected_client(peer, server_filter=WANTED) as client:
        first = await peer.next_login()
        await first.wait_closed()
        assert len(filters_asked(first)) == len(WANTED)
        second = await peer.next_login()
        await client.wait_connected(10)
        assert client.logins == 2 and not client.server_filtered
        assert filters_asked(second) == [] and second.event_names is None
        everything = client.subscribe()
        await second.event("Hangup", ("Uniqueid", "1.1"))
        assert (await next_event(everything)).name == "Hangup"


async def test_the_fake_filters_events_by_exact_name_only(peer: FakeAmi) -> None:
    async with connected_client(peer, server_filter=("Hangup",)) as client:
        session = await peer.next_login()
        await filtered(client)
        everything = client.subscribe()
        await session.event("HangupRequest", ("Uniqueid", "1.1"))
        await session.send_pairs(channel_event(1, "Hangup"))
        assert (await next_event(everything)).name == "Hangup"


def test_the_bridge_asks_asterisk_for_exactly_the_events_it_reads() -> None:
    assert sorted(name.lower() for name in ASTERISK_EVENT_NAMES) == sorted(SUBSCRIBED_EVENTS)
    assert len(set(ASTERISK_EVENT_NAMES)) == len(ASTERISK_EVENT_NAMES)
    assert all(name[0].isupper() for name in ASTERISK_EVENT_NAMES)  # as Asterisk spells them
    settings = BridgeSettings.build(
        ami_url="ami://u:s@127.0.0.1:5038", database_url="sqlite:///x.db"
    )
    assert settings.ami_server_filter is True

"""Event subscriptions against the fake AMI peer: order, bounded queues with an explicit
overflow, filters, reconnects, close; and the typed event helpers."""

from __future__ import annotations

import asyncio

import pytest

from ivr_engine.telephony.ami import (
    AmiEvent,
    ChannelState,
    SubscriptionFilterError,
    SubscriptionOverflow,
    chan_variables,
    channel_snapshot,
    hangup_info,
    int_header,
    parse_message,
    user_event_name,
)
from tests.component.test_ami_fake_peer import (
    FakeAmi,
    channel_event,
    connected_client,
    next_event,
)


async def test_events_are_delivered_in_wire_order(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        session = await peer.next_login()
        events = client.subscribe("UserEvent")
        burst = b"".join(
            b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: Seq\r\nN: %d\r\n\r\n" % n
            for n in range(500)
        )
        await session.send(burst)
        received = [int_header(await next_event(events), "N") for _ in range(500)]
        assert received == list(range(500))


async def test_slow_subscriber_gets_an_explicit_overflow_and_others_are_unaffected(
    peer: FakeAmi,
) -> None:
    async with connected_client(peer) as client:
        session = await peer.next_login()
        slow = client.subscribe("UserEvent", maxsize=5)
        fast = client.subscribe("UserEvent")
        for n in range(20):
            await session.event("UserEvent", ("UserEvent", "Seq"), ("N", str(n)))
        assert [int_header(await next_event(fast), "N") for _ in range(20)] == list(range(20))
        # The slow one holds only what fits, in order, then learns where its gap starts.
        assert slow.ended and slow.pending() == 5
        assert [int_header(await next_event(slow), "N") for _ in range(5)] == [0, 1, 2, 3, 4]
        with pytest.raises(SubscriptionOverflow) as overflow:
            await next_event(slow)
        assert overflow.value.maxsize == 5
        # Delivery to it stopped for good; the client and the other subscriber go on.
        await session.event("UserEvent", ("UserEvent", "Seq"), ("N", "20"))
        assert int_header(await next_event(fast), "N") == 20
        assert slow.pending() == 0 and client.logins == 1


async def test_glob_patterns_and_where_filter(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        session = await peer.next_login()
        agents = client.subscribe(
            "agent*", "QueueCallerJoin", where=lambda e: e.get("Queue") == "billing"
        )
        await session.event("AgentCalled", ("Queue", "support"))
        await session.event("Hangup", ("Queue", "billing"))
        await session.event("AgentConnect", ("Queue", "billing"))
        await session.event("QueueCallerJoin", ("Queue", "billing"))
        assert (await next_event(agents)).name == "AgentConnect"
        assert (await next_event(agents)).name == "QueueCallerJoin"
        assert agents.pending() == 0


async def test_a_failing_filter_ends_only_its_own_subscription(peer: FakeAmi) -> None:
    def broken(event: AmiEvent) -> bool:
        raise KeyError("Queue")

    async with connected_client(peer) as client:
        session = await peer.next_login()
        bad = client.subscribe("Newchannel", where=broken)
        good = client.subscribe("Newchannel")
        await session.event("Newchannel", ("Channel", "PJSIP/a"))
        assert (await next_event(good)).get("Channel") == "PJSIP/a"
        with pytest.raises(SubscriptionFilterError, match="KeyError"):
            await next_event(bad)
        assert client.logins == 1


async def test_subscription_survives_a_reconnect(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        first = await peer.next_login()
        events = client.subscribe("Newchannel", "FullyBooted")
        await first.event("Newchannel", ("Channel", "PJSIP/before"))
        first.drop()
        second = await peer.next_login()
        await second.event("Newchannel", ("Channel", "PJSIP/after"))
        names = [(e.name, e.get("Channel")) for e in [await next_event(events) for _ in range(3)]]
        assert names == [
            ("Newchannel", "PJSIP/before"),
            ("FullyBooted", None),  # the marker to resynchronise on
            ("Newchannel", "PJSIP/after"),
        ]


async def test_close_ends_iteration_after_the_queued_events(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        session = await peer.next_login()
        events = client.subscribe("UserEvent")
        for n in range(3):
            await session.event("UserEvent", ("N", str(n)))
        marker = client.subscribe("Marker")
        await session.event("Marker")
        await next_event(marker)  # the three are queued by now
    assert [int_header(e, "N") async for e in events] == [0, 1, 2]


async def test_unsubscribe_with_a_with_block(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        session = await peer.next_login()
        with client.subscribe() as events:
            pass
        assert events.ended
        await session.event("Newchannel")
        assert events.pending() == 0
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(events.get(), 1)
        with pytest.raises(ValueError, match="maxsize"):
            client.subscribe(maxsize=0)


# --- typed helpers over real-looking events -----------------------------------------------


def _event(text: str) -> AmiEvent:
    message = parse_message(text.strip().splitlines())
    assert isinstance(message, AmiEvent)
    return message


def test_chan_variables_from_repeated_headers() -> None:
    event = _event(
        """
Event: DialBegin
Privilege: call,all
Channel: PJSIP/sipp-caller-00000001
ChannelState: 6
ChanVariable: IVR_INTENT=billing
ChanVariable: IVR_CUSTOMER_ID=c-42
ChanVariable: EMPTY=
DestChannel: PJSIP/agent-1-00000002
DestChannelState: 5
DestChanVariable: IVR_INTENT=
DialString: agent-1
"""
    )
    assert event.get_all("ChanVariable") == (
        "IVR_INTENT=billing",
        "IVR_CUSTOMER_ID=c-42",
        "EMPTY=",
    )
    assert chan_variables(event) == {
        "IVR_INTENT": "billing",
        "IVR_CUSTOMER_ID": "c-42",
        "EMPTY": "",
    }
    assert chan_variables(event, "Dest") == {"IVR_INTENT": ""}
    assert event.to_dict()["ChanVariable"] == [
        "IVR_INTENT=billing",
        "IVR_CUSTOMER_ID=c-42",
        "EMPTY=",
    ]
    dest = channel_snapshot(event, "Dest")
    assert dest is not None and dest.state is ChannelState.RINGING


def test_channel_snapshot_and_hangup() -> None:
    pairs = channel_event(7, event="Hangup")
    text = "\n".join(f"{k}: {v}" for k, v in pairs) + "\nCause: 16\nCause-txt: Normal Clearing"
    event = _event(text)
    snapshot = channel_snapshot(event)
    assert snapshot is not None
    assert snapshot.channel == "PJSIP/sipp-caller-00000007"
    assert (snapshot.state, snapshot.priority, snapshot.context) == (ChannelState.UP, 5, "ivr-fail")
    info = hangup_info(event)
    assert info is not None and (info.cause, info.cause_txt) == (16, "Normal Clearing")
    assert hangup_info(_event("Event: Newchannel")) is None
    assert channel_snapshot(_event("Event: FullyBooted")) is None
    odd = _event("Event: Newchannel\nChannel: X\nChannelState: 42\nPriority: n/a")
    odd_snapshot = channel_snapshot(odd)  # unknown state number, non-numeric priority
    assert odd_snapshot is not None
    assert (odd_snapshot.state, odd_snapshot.priority) == (None, None)


def test_user_event_name() -> None:
    event = _event("Event: UserEvent\nUserEvent: IvrFallback\nAgiStatus: FAILURE")
    assert user_event_name(event) == "IvrFallback"
    assert user_event_name(_event("Event: Hangup")) is None

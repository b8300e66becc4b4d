"""Actions against the fake AMI peer: ActionID correlation (concurrent, out of order),
EventList collection, repeated headers both ways, timeouts, refused injection."""

from __future__ import annotations

import asyncio

import pytest

from ivr_engine.telephony.ami import (
    AmiActionFailed,
    AmiActionTimeout,
    AmiConnectionLost,
    AmiLimits,
    AmiProtocolError,
    InvalidAction,
)
from tests.component.test_ami_fake_peer import (
    WAIT_S,
    Action,
    FakeAmi,
    PeerSession,
    channel_event,
    connected_client,
    next_event,
)


async def test_ping_response_like_asterisk(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        response = await client.action("Ping")
        assert response.ok and response.response == "Success"
        assert response.get("Ping") == "Pong" and response.get("Timestamp") == "1.5"


async def test_command_output_lines_are_kept_as_a_list(peer: FakeAmi) -> None:
    peer.command_output["core show uptime"] = [
        "System uptime: 5 seconds",
        "Last reload: 5 seconds",
        "  indented: kept",
    ]
    async with connected_client(peer) as client:
        response = await client.action("Command", Command="core show uptime")
        assert response.ok and response.message == "Command output follows"
        assert response.output == (
            "System uptime: 5 seconds",
            "Last reload: 5 seconds",
            "  indented: kept",
        )
        assert response.to_dict()["Output"] == list(response.output)


async def test_repeated_header_values_are_sent_as_repeated_lines(peer: FakeAmi) -> None:
    received: list[Action] = []

    async def originate(session: PeerSession, action: Action) -> None:
        received.append(action)
        await session.respond(action, "Success", ("Message", "Originate successfully queued"))

    peer.handlers["originate"] = originate
    async with connected_client(peer) as client:
        response = await client.action(
            "Originate",
            Channel="PJSIP/agent-1",
            Exten="1000",
            Priority=1,
            Async=True,
            Variable=["IVR_INTENT=billing", "IVR_CUSTOMER_ID=c-42"],
        )
        assert response.ok
    action = received[0]
    assert action.get_all("Variable") == ["IVR_INTENT=billing", "IVR_CUSTOMER_ID=c-42"]
    assert (action.get("Priority"), action.get("Async")) == ("1", "true")


async def test_concurrent_actions_answered_out_of_order_are_correlated(peer: FakeAmi) -> None:
    waiting: list[tuple[PeerSession, Action]] = []
    count = 25

    async def getvar(session: PeerSession, action: Action) -> None:
        waiting.append((session, action))
        if len(waiting) == count:  # all in: answer newest first
            for s, a in reversed(waiting):
                await s.respond(a, "Success", ("Variable", a.get("Variable")), ("Value", "v"))

    peer.handlers["getvar"] = getvar
    async with connected_client(peer) as client:
        names = [f"VAR_{n}" for n in range(count)]
        responses = await asyncio.gather(*(client.action("Getvar", Variable=n) for n in names))
    assert [r.get("Variable") for r in responses] == names
    assert len({a.action_id for _, a in waiting}) == count


async def test_core_show_channels_collects_the_event_list(peer: FakeAmi) -> None:
    peer.channels = 3
    async with connected_client(peer) as client:
        others = client.subscribe("CoreShowChannel*")
        result = await client.action_list("CoreShowChannels")
        assert result.response.starts_list
        assert [e.get("Channel") for e in result.events] == [
            "PJSIP/sipp-caller-00000001",
            "PJSIP/sipp-caller-00000002",
            "PJSIP/sipp-caller-00000003",
        ]
        assert result.complete is not None
        assert result.complete.name == "CoreShowChannelsComplete"
        assert result.complete.get("ListItems") == "3"
        response, events, _ = await client.action_list("CoreShowChannels")  # a NamedTuple
        assert response.ok and len(events) == 3
        # List events belong to the action, not to subscribers.
        session = await peer.next_login()
        await session.event("CoreShowChannelMarker")
        assert (await next_event(others)).name == "CoreShowChannelMarker"


async def test_empty_list_and_error_response(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        result = await client.action_list("CoreShowChannels")
        assert result.events == [] and result.complete is not None
        assert result.complete.get("ListItems") == "0"
        refused = await client.action_list("QueueStatus")  # unknown to this fake
        assert not refused.response.ok and refused.events == [] and refused.complete is None
        with pytest.raises(AmiActionFailed, match="Invalid/unknown command"):
            refused.response.raise_for_error()


async def test_interleaved_lists_and_unrelated_events_stay_apart(peer: FakeAmi) -> None:
    """Two QueueStatus lists interleaved, with a live event in the middle of both."""
    actions: list[Action] = []
    both_in = asyncio.Event()

    async def queue_status(session: PeerSession, action: Action) -> None:
        actions.append(action)
        await session.respond(
            action, "Success", ("EventList", "start"), ("Message", "Queue status will follow")
        )
        if len(actions) == 2:
            both_in.set()

    peer.handlers["queuestatus"] = queue_status
    async with connected_client(peer) as client:
        session = await peer.next_login()
        live = client.subscribe()
        billing = asyncio.create_task(client.action_list("QueueStatus", Queue="billing"))
        support = asyncio.create_task(client.action_list("QueueStatus", Queue="support"))
        async with asyncio.timeout(WAIT_S):
            await both_in.wait()
        ids = {a.get("Queue"): a.action_id for a in actions}
        for queue in ("billing", "support"):
            await session.send_pairs(
                [("Event", "QueueParams"), ("ActionID", ids[queue]), ("Queue", queue)]
            )
        await session.event("Newchannel", ("Channel", "PJSIP/live-1"))
        for queue in ("support", "billing"):
            await session.send_pairs(
                [("Event", "QueueMember"), ("ActionID", ids[queue]), ("Queue", queue)]
            )
        for queue in ("billing", "support"):
            await session.send_pairs(
                [
                    ("Event", "QueueStatusComplete"),
                    ("ActionID", ids[queue]),
                    ("EventList", "Complete"),
                    ("ListItems", "2"),
                ]
            )
        for task, queue in ((billing, "billing"), (support, "support")):
            result = await task
            assert [(e.name, e.get("Queue")) for e in result.events] == [
                ("QueueParams", queue),
                ("QueueMember", queue),
            ]
        assert (await next_event(live)).get("Channel") == "PJSIP/live-1"
        assert live.pending() == 0


async def test_async_originate_response_event_reaches_subscribers(peer: FakeAmi) -> None:
    """``OriginateResponse`` carries the action's ActionID but comes after its response."""

    async def originate(session: PeerSession, action: Action) -> None:
        await session.respond(action, "Success", ("Message", "Originate successfully queued"))
        await session.send_pairs(
            [
                ("Event", "OriginateResponse"),
                ("Privilege", "call,all"),
                ("ActionID", action.action_id),
                ("Response", "Failure"),
                ("Reason", "0"),
            ]
        )

    peer.handlers["originate"] = originate
    async with connected_client(peer) as client:
        results = client.subscribe("OriginateResponse")
        response = await client.action("Originate", Channel="PJSIP/agent-9", Async="true")
        event = await next_event(results)
        assert event.action_id == response.action_id
        assert event.get("Response") == "Failure"


async def test_timeout_keeps_the_connection_and_drops_the_late_answer(peer: FakeAmi) -> None:
    slow: list[Action] = []

    async def remember(session: PeerSession, action: Action) -> None:
        slow.append(action)

    peer.handlers["slow"] = remember
    async with connected_client(peer) as client:
        session = await peer.next_login()
        with pytest.raises(AmiActionTimeout, match="Slow"):
            await client.action("Slow", timeout_s=0.05)
        await session.respond(slow[0], "Success", ("Message", "too late"))
        assert (await client.action("Ping")).get("Ping") == "Pong"
        assert client.logins == 1


async def test_list_timeout_discards_the_rest_of_that_list(peer: FakeAmi) -> None:
    started: list[Action] = []

    async def status(session: PeerSession, action: Action) -> None:
        started.append(action)
        await session.respond(action, "Success", ("EventList", "start"))
        await session.send_pairs(channel_event(1, action_id=action.action_id))

    peer.handlers["coreshowchannels"] = status
    async with connected_client(peer) as client:
        session = await peer.next_login()
        everything = client.subscribe()
        with pytest.raises(AmiActionTimeout):
            await client.action_list("CoreShowChannels", timeout_s=0.1)
        aid = started[0].action_id
        await session.send_pairs(channel_event(2, action_id=aid))
        await session.send_pairs(
            [("Event", "CoreShowChannelsComplete"), ("ActionID", aid), ("EventList", "Complete")]
        )
        await session.event("Marker")
        assert (await next_event(everything)).name == "Marker"


async def test_endless_list_is_a_protocol_error(peer: FakeAmi) -> None:
    peer.channels = 50
    limits = AmiLimits(max_list_events=10, connect_timeout_s=2, login_timeout_s=2)
    async with connected_client(peer, limits=limits) as client:
        with pytest.raises(AmiConnectionLost, match="more than 10 list events"):
            await client.action_list("CoreShowChannels")
        await peer.next_login()
        await peer.next_login()
        assert isinstance(client.last_error, AmiProtocolError)


async def test_header_injection_is_refused_before_anything_is_sent(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        session = await peer.next_login()
        with pytest.raises(InvalidAction, match="CR, LF and NUL"):
            await client.action("Originate", Channel="PJSIP/x\r\nAction: Command")
        with pytest.raises(InvalidAction, match="set by the client"):
            await client.action("Ping", ActionID="mine")
        await client.action("Ping")
        assert [a.name for a in session.received] == ["Login", "Ping"]


async def test_an_event_with_the_action_id_of_no_waiting_action_is_an_event(
    peer: FakeAmi,
) -> None:
    """Before any action, after one answered, and after a list that timed out was closed,
    an event carrying an ActionID goes to the subscribers like any other."""
    lists: list[Action] = []

    async def status(session: PeerSession, action: Action) -> None:
        lists.append(action)
        await session.respond(action, "Success", ("EventList", "start"))

    peer.handlers["coreshowchannels"] = status
    async with connected_client(peer) as client:
        session = await peer.next_login()
        everything = client.subscribe()
        await session.send_pairs(channel_event(1, action_id="ivr-none"))
        assert (await next_event(everything)).action_id == "ivr-none"
        assert (await client.action("Ping")).ok
        await session.send_pairs(channel_event(2, action_id="ivr-none"))
        assert (await next_event(everything)).get("Channel") == "PJSIP/sipp-caller-00000002"
        with pytest.raises(AmiActionTimeout):
            await client.action_list("CoreShowChannels", timeout_s=0.1)
        aid = lists[0].action_id
        await session.send_pairs(channel_event(3, action_id=aid))  # dropped: the list's
        await session.send_pairs(
            [("Event", "CoreShowChannelsComplete"), ("ActionID", aid), ("EventList", "Complete")]
        )
        await session.send_pairs(channel_event(4, action_id=aid))  # the list is over
        event = await next_event(everything)  # not the list's third event
        assert event.action_id == aid and event.get("Channel") == "PJSIP/sipp-caller-00000004"

"""``AmiConnection`` alone, its reader fed by hand so a test picks the event-loop ordering:
list actions cancelled or timed out around their list, a reader that fails unexpectedly."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NoReturn

import pytest

from ivr_engine.telephony.ami import AmiActionTimeout, AmiConnectionLost, AmiEvent
from ivr_engine.telephony.ami.connection import DEFAULT_LIMITS, AmiConnection

WAIT_S = 5.0


@dataclass
class Sink:
    """``on_event``: records the events; raises ``error`` if set (a bug in a subscriber)."""

    events: list[AmiEvent] = field(default_factory=list)
    error: Exception | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: AmiEvent) -> None:
        if self.error is not None:
            raise self.error
        self.events.append(event)
        self.arrived.set()


@dataclass
class Wire:
    """The connection under test; ``feed`` is what Asterisk sends, ``sent_ids`` what it got."""

    conn: AmiConnection
    reader: asyncio.StreamReader
    peer: socket.socket
    serve: asyncio.Task[NoReturn]
    sink: Sink

    def feed(self, *messages: str) -> None:
        self.reader.feed_data("".join(m.replace("\n", "\r\n") + "\r\n" for m in messages).encode())

    async def sent_ids(self, count: int) -> list[str]:
        """The ActionIDs of the next ``count`` actions the connection wrote."""
        data, loop = "", asyncio.get_running_loop()
        async with asyncio.timeout(WAIT_S):
            while data.count("ActionID: ") < count:
                data += (await loop.sock_recv(self.peer, 65536)).decode()
        lines = data.split("\r\n")
        return [line.split(": ", 1)[1] for line in lines if line.startswith("ActionID: ")]


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    _, writer = await asyncio.open_connection(sock=ours)
    reader = asyncio.StreamReader()
    sink = Sink()
    conn = AmiConnection(reader, writer, version="11.0.0", limits=DEFAULT_LIMITS, on_event=sink)
    serve = asyncio.create_task(conn.serve())
    try:
        yield Wire(conn, reader, theirs, serve, sink)
    finally:
        serve.cancel()
        await asyncio.gather(serve, return_exceptions=True)
        writer.transport.abort()
        theirs.close()


def list_start(action_id: str) -> str:
    return f"Response: Success\nActionID: {action_id}\nEventList: start\nMessage: will follow\n"


def item(action_id: str, name: str = "CoreShowChannel") -> str:
    return f"Event: {name}\nActionID: {action_id}\nChannel: PJSIP/a-1\n"


def list_end(action_id: str, name: str = "CoreShowChannelsComplete") -> str:
    return f"Event: {name}\nActionID: {action_id}\nEventList: Complete\nListItems: 1\n"


async def test_a_list_cancelled_as_its_complete_arrives_leaves_the_reader_running(
    wire: Wire,
) -> None:
    """Task.cancel() cancels the awaited ``list_done`` at once, but the action's ``finally``
    runs a step later: the reader may see the ``Complete`` event in between."""
    ping = asyncio.create_task(wire.conn.request("Ping", {}, WAIT_S))
    listing = asyncio.create_task(
        wire.conn.request("CoreShowChannels", {}, WAIT_S, collect_list=True)
    )
    _, list_id = await wire.sent_ids(2)
    wire.feed(list_start(list_id), item(list_id))
    await asyncio.sleep(0.01)
    wire.feed(list_end(list_id))  # the Complete arrives and, in the same iteration ...
    listing.cancel()  # ... the action's timeout (or its caller) cancels it
    await asyncio.gather(listing, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert not wire.serve.done() and not wire.conn.broken
    assert not ping.done()  # the unrelated action still waits for its own answer
    ping.cancel()
    await asyncio.gather(ping, return_exceptions=True)


async def test_an_unexpected_reader_failure_fails_the_waiting_actions(wire: Wire) -> None:
    wire.sink.error = RuntimeError("a bug in the event sink")
    ping = asyncio.create_task(wire.conn.request("Ping", {}, WAIT_S))
    await wire.sent_ids(1)
    wire.feed("Event: FullyBooted\nStatus: Fully Booted\n")
    with pytest.raises(RuntimeError, match="a bug"):
        async with asyncio.timeout(WAIT_S):
            await wire.serve
    assert wire.conn.broken
    with pytest.raises(AmiConnectionLost, match="reader failed"):
        async with asyncio.timeout(WAIT_S):
            await ping


@pytest.mark.parametrize("give_up", ["timeout", "cancel"])
async def test_a_list_answered_after_its_action_gave_up_is_not_published(
    wire: Wire, give_up: str
) -> None:
    """Asterisk answers ``EventList: start`` only after the action timed out (or was
    cancelled): its items are not live events and must not reach the subscribers."""
    timeout_s = 0.05 if give_up == "timeout" else WAIT_S
    listing = asyncio.create_task(
        wire.conn.request("DeviceStateList", {}, timeout_s, collect_list=True)
    )
    (list_id,) = await wire.sent_ids(1)
    if give_up == "cancel":
        listing.cancel()
    (outcome,) = await asyncio.gather(listing, return_exceptions=True)
    assert isinstance(outcome, AmiActionTimeout | asyncio.CancelledError)
    wire.feed(
        list_start(list_id),
        item(list_id, "DeviceStateChange"),
        list_end(list_id, "DeviceStateListComplete"),
        "Event: DeviceStateChange\nDevice: PJSIP/100\nState: INUSE\n",  # a live one
    )
    async with asyncio.timeout(WAIT_S):
        await wire.sink.arrived.wait()
    await asyncio.sleep(0.01)
    assert [(e.name, e.action_id) for e in wire.sink.events] == [("DeviceStateChange", None)]
    assert not wire.serve.done()


async def test_a_late_plain_answer_to_an_abandoned_list_action_ends_the_abandonment(
    wire: Wire,
) -> None:
    listing = asyncio.create_task(wire.conn.request("DeviceStateList", {}, 0.05, collect_list=True))
    (list_id,) = await wire.sent_ids(1)
    with pytest.raises(AmiActionTimeout):
        await listing
    wire.feed(f"Response: Error\nActionID: {list_id}\nMessage: Permission denied\n")
    await asyncio.sleep(0.01)
    assert not wire.conn._abandoned  # nothing left to drop: events take the fast path again

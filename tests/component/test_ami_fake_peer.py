"""A fake Asterisk Manager Interface for component tests, and tests of the fake itself.

``FakeAmi`` listens on 127.0.0.1 (a free port) and speaks AMI as Asterisk 22 does: the banner
``Asterisk Call Manager/11.0.0``, ``Login`` answered ``Response: Success`` / ``Message:
Authentication accepted`` then a ``FullyBooted`` event, or ``Response: Error`` / ``Message:
Authentication failed`` and the connection closed; ``Authentication Required`` for actions
before login; ``Ping`` → ``Ping: Pong`` + ``Timestamp``; ``Command`` → ``Output:`` lines;
``CoreShowChannels`` (``channels`` numbered ones, then ``live_channels``) / ``QueueStatus``
as ``EventList: start`` … ``EventList: Complete`` lists; ``Logoff`` → ``Response: Goodbye``
and close; anything else → ``Invalid/unknown command``. It parses actions with its own code
(not the client's), records them, and can misbehave on demand: raw bytes, silence, close
mid-message, refuse logins, stop and restart on the same port. Tests synchronise on
``next_login()`` / ``PeerSession.next_action()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ivr_engine.telephony.ami import AmiClient, AmiEvent, AmiLimits, Backoff, Subscription

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
WAIT_S = 5.0  # every wait on the fake is bounded: a broken client fails, never hangs

Pairs = Sequence[tuple[str, str]]


def encode(pairs: Pairs) -> bytes:
    """A message as Asterisk writes it: ``Key: Value\\r\\n`` lines and a blank line."""
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in pairs) + b"\r\n"


@dataclass
class Action:
    """One action as the fake received it."""

    pairs: list[tuple[str, str]]

    def get(self, key: str, default: str = "") -> str:
        for k, v in self.pairs:
            if k.lower() == key.lower():
                return v
        return default

    def get_all(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k.lower() == key.lower()]

    @property
    def name(self) -> str:
        return self.get("Action")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")


Handler = Callable[["PeerSession", Action], Awaitable[None]]


def channel_event(n: int, event: str = "CoreShowChannel", action_id: str | None = None) -> Pairs:
    """The channel block Asterisk 22 sends for a PJSIP caller (Newchannel, CoreShowChannel)."""
    pairs = [("Event", event)]
    if action_id is not None:
        pairs.append(("ActionID", action_id))
    else:
        pairs.append(("Privilege", "call,all"))
    pairs += [
        ("Channel", f"PJSIP/sipp-caller-{n:08x}"),
        ("ChannelState", "6"),
        ("ChannelStateDesc", "Up"),
        ("CallerIDNum", f"+1555123{n:04d}"),
        ("CallerIDName", "SIPp Caller"),
        ("ConnectedLineNum", "<unknown>"),
        ("ConnectedLineName", "<unknown>"),
        ("Language", "en"),
        ("AccountCode", ""),
        ("Context", "ivr-fail"),
        ("Exten", "s"),
        ("Priority", "5"),
        ("Uniqueid", f"1732440000.{n}"),
        ("Linkedid", f"1732440000.{n}"),
    ]
    if event == "CoreShowChannel":
        pairs += [
            ("Application", "BackGround"),
            ("ApplicationData", "ivr-engine/welcome"),
            ("Duration", "00:00:03"),
            ("BridgeId", ""),
        ]
    return pairs


def listed_channel(
    uniqueid: str, caller: str, action_id: str, variables: Mapping[str, str] = {}
) -> Pairs:
    """A ``CoreShowChannel`` item for the channel ``uniqueid`` (its own Linkedid), with
    ``variables`` as manager.conf ``channelvars`` adds them (``ChanVariable: NAME=value``)."""
    named = {"Uniqueid": uniqueid, "Linkedid": uniqueid, "CallerIDNum": caller}
    pairs = [(k, named.get(k, v)) for k, v in channel_event(0, action_id=action_id)]
    return pairs + [("ChanVariable", f"{name}={value}") for name, value in variables.items()]


class PeerSession:
    """The fake's side of one client connection."""

    def __init__(self, peer: FakeAmi, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.actions: asyncio.Queue[Action] = asyncio.Queue()
        self.received: list[Action] = []
        self.logged_in = False
        self.silent = False  # read and record actions, answer nothing (a hung Asterisk)
        self.event_names: set[str] | None = None  # the session's Filter whitelist, if any
        self.closed = asyncio.Event()  # the connection ended (either side)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_pairs(self, pairs: Pairs) -> None:
        if self.filtered_out(pairs):
            return
        await self.send(encode(pairs))

    def filtered_out(self, pairs: Pairs) -> bool:
        """As Asterisk: an event (not a list item, which carries the ActionID) whose name is
        not in the session's ``name(...)`` filters, once it has any."""
        if self.event_names is None or not pairs or pairs[0][0] != "Event":
            return False
        return pairs[0][1] not in self.event_names and all(k != "ActionID" for k, _ in pairs)

    async def event(self, name: str, *pairs: tuple[str, str]) -> None:
        await self.send_pairs([("Event", name), ("Privilege", "call,all"), *pairs])

    async def respond(
        self, action: Action, response: str = "Success", *pairs: tuple[str, str]
    ) -> None:
        await self.send_pairs([("Response", response), ("ActionID", action.action_id), *pairs])

    async def next_action(self, name: str | None = None) -> Action:
        """The next received action (named ``name``, skipping others)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                action = await self.actions.get()
                if name is None or action.name.lower() == name.lower():
                    return action

    def drop(self) -> None:
        """Close the connection at once (RST, no goodbye)."""
        self.writer.transport.abort()

    async def wait_closed(self) -> None:
        async with asyncio.timeout(WAIT_S):
            await self.closed.wait()

    async def serve(self) -> None:
        try:
            await self.send(BANNER)
            while True:
                action = await self._read_action()
                if action is None:
                    return
                self.received.append(action)
                self.actions.put_nowait(action)
                if not self.silent:
                    await self.peer.dispatch(self, action)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.set()
            self.writer.close()

    async def _read_action(self) -> Action | None:
        pairs: list[tuple[str, str]] = []
        while True:
            raw = await self.reader.readline()
            if not raw:
                return None
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if pairs:
                    return Action(pairs)
                continue
            key, _, value = line.partition(":")
            pairs.append((key.strip(), value.strip()))


@dataclass
class FakeAmi:
    username: str = "ivr"
    secret: str = "s3cret"
    command_output: dict[str, list[str]] = field(default_factory=dict)
    channels: int = 0  # channels listed by CoreShowChannels
    live_channels: dict[str, str] = field(default_factory=dict)  # also listed: Uniqueid -> caller
    channel_vars: dict[str, dict[str, str]] = field(default_factory=dict)  # Uniqueid -> vars
    handlers: dict[str, Handler] = field(default_factory=dict)  # by lower-case action name
    port: int = 0
    sessions: list[PeerSession] = field(default_factory=list)
    login_attempts: list[Action] = field(default_factory=list)
    refuse_logins_with: str | None = None  # e.g. "Asterisk is shutting down"
    refuse_filters_with: str | None = None  # e.g. "Permission denied" (no write=system)
    refuse_filter_names: set[str] = field(default_factory=set)  # refused one by one
    logins: asyncio.Queue[PeerSession] = field(default_factory=asyncio.Queue)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> FakeAmi:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (on the same port again after ``stop()``)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection (Asterisk going down)."""
        if self._server is not None:
            self._server.close()
            for session in self.sessions:
                session.drop()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = PeerSession(self, reader, writer)
        self.sessions.append(session)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await session.serve()
        finally:
            self._tasks.discard(task)

    async def next_login(self) -> PeerSession:
        """The next session that logged in successfully."""
        async with asyncio.timeout(WAIT_S):
            return await self.logins.get()

    async def dispatch(self, session: PeerSession, action: Action) -> None:
        name = action.name.lower()
        if name == "login":
            await self._login(session, action)
        elif not session.logged_in:
            await session.respond(action, "Error", ("Message", "Authentication Required"))
        elif name in self.handlers:
            await self.handlers[name](session, action)
        elif name == "ping":
            await session.respond(action, "Success", ("Ping", "Pong"), ("Timestamp", "1.5"))
        elif name == "logoff":
            await session.respond(action, "Goodbye", ("Message", "Thanks for all the fish."))
            session.writer.close()
        elif name == "command":
            await self._command(session, action)
        elif name == "coreshowchannels":
            await self._core_show_channels(session, action)
        elif name == "filter":
            await self._filter(session, action)
        else:
            await session.respond(action, "Error", ("Message", "Invalid/unknown command"))

    async def _login(self, session: PeerSession, action: Action) -> None:
        self.login_attempts.append(action)
        if self.refuse_logins_with is not None:
            await session.respond(action, "Error", ("Message", self.refuse_logins_with))
            session.writer.close()
            return
        if action.get("Username") != self.username or action.get("Secret") != self.secret:
            await session.respond(action, "Error", ("Message", "Authentication failed"))
            session.writer.close()  # Asterisk ends the session after a failed login
            return
        session.logged_in = True
        await session.respond(action, "Success", ("Message", "Authentication accepted"))
        if action.get("Events", "on").lower() != "off":
            await session.event(
                "FullyBooted", ("Uptime", "5"), ("LastReload", "5"), ("Status", "Fully Booted")
            )
        self.logins.put_nowait(session)

    async def _filter(self, session: PeerSession, action: Action) -> None:
        """Asterisk 22's ``Filter`` with ``MatchCriteria: name(X)`` (exact event names)."""
        named = re.fullmatch(r"name\(([A-Za-z0-9_]+)\)", action.get("MatchCriteria"))
        if self.refuse_filters_with is not None:
            await session.respond(action, "Error", ("Message", self.refuse_filters_with))
        elif action.get("Operation").lower() != "add":
            await session.respond(action, "Error", ("Message", "Unknown operation"))
        elif named is None or named[1] in self.refuse_filter_names:
            await session.respond(action, "Error", ("Message", "Filter was formatted incorrectly"))
        else:
            session.event_names = (session.event_names or set()) | {named[1]}
            await session.respond(action, "Success", ("Message", "Success"))

    async def _command(self, session: PeerSession, action: Action) -> None:
        lines = self.command_output.get(action.get("Command"))
        if lines is None:
            await session.respond(
                action,
                "Error",
                ("Message", "Command output follows"),
                ("Output", "No such command"),
            )
            return
        output = [("Output", line) for line in lines]
        await session.respond(action, "Success", ("Message", "Command output follows"), *output)

    async def _core_show_channels(self, session: PeerSession, action: Action) -> None:
        aid = action.action_id
        await session.respond(
            action, "Success", ("EventList", "start"), ("Message", "Channels will follow")
        )
        for n in range(1, self.channels + 1):
            await session.send_pairs(channel_event(n, action_id=aid))
        for uniqueid, caller in list(self.live_channels.items()):
            variables = self.channel_vars.get(uniqueid, {})
            await session.send_pairs(listed_channel(uniqueid, caller, aid, variables))
        await session.send_pairs(
            [
                ("Event", "CoreShowChannelsComplete"),
                ("ActionID", aid),
                ("EventList", "Complete"),
                ("ListItems", str(self.channels + len(self.live_channels))),
            ]
        )


# --- client side helpers -------------------------------------------------------------------


class RecordingBackoff(Backoff):
    """Tiny delays without jitter, and a record of every delay the client chose."""

    def __init__(self, base_s: float = 0.01, cap_s: float = 0.08) -> None:
        super().__init__(base_s=base_s, cap_s=cap_s, jitter=0.0)
        self.delays: list[tuple[str, float]] = []  # ("next" | "cap", seconds)
        self._recorded = asyncio.Event()

    def next_delay(self) -> float:
        return self._record("next", super().next_delay())

    def cap_delay(self) -> float:
        return self._record("cap", super().cap_delay())

    def _record(self, kind: str, delay: float) -> float:
        self.delays.append((kind, delay))
        self._recorded.set()
        return delay

    async def wait_for(self, count: int) -> None:
        """Until at least ``count`` delays were chosen."""
        async with asyncio.timeout(WAIT_S):
            while len(self.delays) < count:
                self._recorded.clear()
                await self._recorded.wait()


FAST_LIMITS = AmiLimits(connect_timeout_s=2.0, login_timeout_s=2.0, close_timeout_s=1.0)


def make_client(peer: FakeAmi, **options: Any) -> AmiClient:
    """A client for the fake: its credentials, no pings, tiny back-off (overridable)."""
    kwargs: dict[str, Any] = {
        "ping_interval_s": None,
        "backoff": RecordingBackoff(),
        "limits": FAST_LIMITS,
    }
    kwargs.update(options)
    return AmiClient("127.0.0.1", peer.port, peer.username, peer.secret, **kwargs)


@contextlib.asynccontextmanager
async def connected_client(peer: FakeAmi, **options: Any) -> AsyncIterator[AmiClient]:
    """A started, logged-in client (``peer.next_login()`` gives the fake's session)."""
    client = make_client(peer, **options)
    await client.start()
    try:
        await client.wait_connected(WAIT_S)
        yield client
    finally:
        await client.close()


async def next_event(subscription: Subscription) -> AmiEvent:
    """The subscription's next event, within the fake's deadline."""
    async with asyncio.timeout(WAIT_S):
        return await subscription.get()


# --- tests of the fake itself (raw sockets, no client code) --------------------------------


async def _raw_exchange(port: int, data: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(WAIT_S):
            assert await reader.readline() == BANNER
            writer.write(data)
            return await reader.readuntil(until)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_fake_answers_login_and_ping_like_asterisk() -> None:
    async with FakeAmi() as peer:
        data = (
            b"Action: Login\r\nActionID: 1\r\nUsername: ivr\r\nSecret: s3cret\r\n\r\n"
            b"Action: Ping\r\nActionID: 2\r\n\r\n"
        )
        got = await _raw_exchange(peer.port, data, b"Timestamp: 1.5\r\n\r\n")
    assert got.startswith(
        b"Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n"
        b"Event: FullyBooted\r\n"
    )
    assert got.endswith(b"Response: Success\r\nActionID: 2\r\nPing: Pong\r\nTimestamp: 1.5\r\n\r\n")


async def test_fake_refuses_bad_secret_and_closes() -> None:
    async with FakeAmi() as peer:
        data = b"Action: Login\r\nActionID: 7\r\nUsername: ivr\r\nSecret: wrong\r\n\r\n"
        got = await _raw_exchange(peer.port, data, b"\r\n\r\n")
        assert got == b"Response: Error\r\nActionID: 7\r\nMessage: Authentication failed\r\n\r\n"
        await peer.sessions[0].wait_closed()

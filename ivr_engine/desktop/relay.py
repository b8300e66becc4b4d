"""The desktop relay: what one engine process tells the desktops held by the others.

A screen pop is built once, by the process that routed the call, and must reach the agent's
WebSockets wherever they are connected; a dismissed pop, an ended session (logout, expiry,
agent deleted) likewise. Each ``DesktopNote`` names one agent or one session, and the hub
that receives it sends it only to that agent's (or session's) sockets.

Redis pub/sub, not a Stream: a pop matters only while the phone rings (seconds), every
process stays subscribed for its lifetime and keeps each agent's latest pop (as it did
before), so an agent who reconnects to any process within the ring time gets the pop in its
``hello``. A Stream would only replay to a process that was itself cut off from Redis, which
is the case where the pop is lost anyway (logged and counted by the hub); it would add
per-process read positions and trimming for no gain.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Literal, Protocol, cast, get_args

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from ivr_engine.desktop.pop import ScreenPopJson
from ivr_engine.redis_client import REDIS_FAILURES, open_redis, redis_guard

log = logging.getLogger(__name__)
DEFAULT_CHANNEL = "ivr:{desktop}:notes"
_WHAT = "desktop relay (Redis)"

NoteKind = Literal["pop", "pop_cleared", "session_ended", "forget"]
NOTE_KINDS: frozenset[str] = frozenset(get_args(NoteKind))


@dataclass(frozen=True, slots=True)
class DesktopNote:
    kind: NoteKind
    origin: str  # the hub that sent it (it does not apply its own notes twice)
    agent_id: str | None = None
    session_id: str | None = None  # session_ended
    reason: str | None = None  # session_ended
    pop: ScreenPopJson | None = None  # pop


class DesktopRelayUnavailable(Exception):
    pass


class DesktopRelay(Protocol):
    async def publish(self, note: DesktopNote) -> None:
        """Raises ``DesktopRelayUnavailable`` (within the relay's timeout)."""
        ...

    def notes(self) -> AbstractAsyncContextManager[AsyncIterator[DesktopNote]]:
        """Every note published from now on, by any process (raises when Redis fails)."""
        ...

    async def aclose(self) -> None: ...


def encode_note(note: DesktopNote) -> str:
    return json.dumps(asdict(note), separators=(",", ":"))


def decode_note(data: str | bytes) -> DesktopNote:
    """The note in ``data``; ``ValueError`` when it is not one (not JSON, not UTF-8, a field
    missing or of the wrong type): anyone who can publish on the channel can send it."""
    raw = json.loads(data)
    if not isinstance(raw, dict) or raw.get("kind") not in NOTE_KINDS:
        raise ValueError(f"not a desktop note: {str(data)[:80]!r}")
    texts = {name: raw.get(name) for name in ("origin", "agent_id", "session_id", "reason")}
    pop = raw.get("pop")
    wrong = [name for name, value in texts.items() if not isinstance(value, str | None)]
    if texts["origin"] is None or wrong or not isinstance(pop, dict | None):
        raise ValueError(f"malformed desktop {raw['kind']} note: {str(data)[:80]!r}")
    return DesktopNote(
        kind=raw["kind"],
        origin=str(texts["origin"]),
        agent_id=texts["agent_id"],
        session_id=texts["session_id"],
        reason=texts["reason"],
        pop=cast(ScreenPopJson | None, pop),
    )


class RedisDesktopRelay:
    def __init__(self, client: Redis, *, channel: str = DEFAULT_CHANNEL, timeout_s: float) -> None:
        self._client, self._channel, self._timeout_s = client, channel, timeout_s
        self._subscriptions: set[PubSub] = set()
        self._closing = False

    @classmethod
    def from_url(
        cls, url: str, *, channel: str = DEFAULT_CHANNEL, timeout_s: float = 1.0
    ) -> RedisDesktopRelay:
        client = open_redis(url, connect_timeout_s=timeout_s)
        return cls(client, channel=channel, timeout_s=timeout_s)

    async def publish(self, note: DesktopNote) -> None:
        async with redis_guard(self._timeout_s, DesktopRelayUnavailable, _WHAT):
            await self._client.publish(self._channel, encode_note(note))

    def notes(self) -> AbstractAsyncContextManager[AsyncIterator[DesktopNote]]:
        return self._subscribe()

    @asynccontextmanager
    async def _subscribe(self) -> AsyncIterator[AsyncIterator[DesktopNote]]:
        pubsub = self._client.pubsub()
        try:
            async with redis_guard(self._timeout_s, DesktopRelayUnavailable, _WHAT):
                await pubsub.subscribe(self._channel)
                while (await pubsub.get_message(timeout=None) or {}).get("type") != "subscribe":
                    pass
        except DesktopRelayUnavailable:
            await _close(pubsub)
            raise
        self._subscriptions.add(pubsub)
        try:
            yield self._listen(pubsub)
        finally:
            self._subscriptions.discard(pubsub)
            await _close(pubsub)

    async def _listen(self, pubsub: PubSub) -> AsyncIterator[DesktopNote]:
        try:
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                try:
                    note = decode_note(message["data"])
                except (ValueError, RecursionError) as exc:  # foreign or garbled: skipped
                    log.warning("desktop relay: message skipped: %s", exc)
                    continue
                yield note
        # not UTF-8: redis-py's decoding fails inside listen(); resubscribing drops the message
        except (*REDIS_FAILURES, UnicodeDecodeError) as exc:  # no deadline: waits for notes
            if not self._closing:
                raise DesktopRelayUnavailable(f"{_WHAT} failed: {exc!r}") from exc

    async def aclose(self) -> None:
        self._closing = True
        for pubsub in list(self._subscriptions):
            await _close(pubsub)
        await self._client.aclose()


async def _close(pubsub: PubSub) -> None:
    close: Callable[[], Awaitable[None]] = pubsub.aclose  # untyped in redis-py
    await close()

"""Why an agent is paused (``PauseNote``), kept beside the agent state store.

The agent state store records states, not reasons; the device tracker needs to know whether
a pause is the engine's own (given back when the phone is usable again) or the agent's (never
lifted by the engine). ``open_pause_notes`` follows the agent state URL: in-process for
``memory://``/None, one Redis hash ``<prefix>pause_notes`` (agent id → JSON) for Redis, so a
restarted engine still knows which pauses it made. Redis failures → ``AgentStateUnavailable``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from typing import Protocol, TypeVar

from redis.asyncio import Redis

from ivr_engine.agents.errors import AgentStateUnavailable
from ivr_engine.agents.redis_store import DEFAULT_PREFIX
from ivr_engine.contact_center.device_state import PauseNote
from ivr_engine.redis_client import open_redis, redis_guard

T = TypeVar("T")


class PauseNotes(Protocol):
    async def get(self, agent_id: str) -> PauseNote | None: ...

    async def put(self, agent_id: str, note: PauseNote) -> None: ...

    async def drop(self, agent_id: str) -> None: ...

    async def all(self) -> Mapping[str, PauseNote]: ...

    async def aclose(self) -> None: ...


class InMemoryPauseNotes:
    def __init__(self) -> None:
        self._notes: dict[str, PauseNote] = {}

    async def get(self, agent_id: str) -> PauseNote | None:
        return self._notes.get(agent_id)

    async def put(self, agent_id: str, note: PauseNote) -> None:
        self._notes[agent_id] = note

    async def drop(self, agent_id: str) -> None:
        self._notes.pop(agent_id, None)

    async def all(self) -> Mapping[str, PauseNote]:
        return dict(self._notes)

    async def aclose(self) -> None:
        return None


def encode_note(note: PauseNote) -> str:
    return json.dumps(
        {
            "reason": note.reason,
            "detail": note.detail,
            "since": note.since,
            "engine_made": note.engine_made,
        }
    )


def decode_note(raw: str) -> PauseNote:
    data = json.loads(raw)
    return PauseNote(
        str(data["reason"]), str(data["detail"]), float(data["since"]), bool(data["engine_made"])
    )


class RedisPauseNotes:
    def __init__(
        self, client: Redis, *, prefix: str = DEFAULT_PREFIX, timeout_s: float = 2.0
    ) -> None:
        self._client = client
        self._key = prefix + "pause_notes"
        self._timeout_s = timeout_s

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_PREFIX) -> RedisPauseNotes:
        return cls(open_redis(url, connect_timeout_s=1.0), prefix=prefix)

    async def _call(self, command: Awaitable[T]) -> T:
        async with redis_guard(self._timeout_s, AgentStateUnavailable, "pause notes (Redis)"):
            return await command

    async def get(self, agent_id: str) -> PauseNote | None:
        raw = await self._call(self._client.hget(self._key, agent_id))
        return None if raw is None else decode_note(_text(raw))

    async def put(self, agent_id: str, note: PauseNote) -> None:
        await self._call(self._client.hset(self._key, agent_id, encode_note(note)))

    async def drop(self, agent_id: str) -> None:
        await self._call(self._client.hdel(self._key, agent_id))

    async def all(self) -> Mapping[str, PauseNote]:
        raw = await self._call(self._client.hgetall(self._key))
        return {_text(agent_id): decode_note(_text(value)) for agent_id, value in raw.items()}

    async def aclose(self) -> None:
        await self._client.aclose()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def open_pause_notes(url: str | None, *, prefix: str = DEFAULT_PREFIX) -> PauseNotes:
    """Where the agent state lives: in-process for None/``memory://``, else that Redis."""
    if url is None or url == "memory://":
        return InMemoryPauseNotes()
    return RedisPauseNotes.from_url(url, prefix=prefix)

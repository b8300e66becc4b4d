"""Server-side desktop sessions behind a signed cookie (the login throttle: ``throttle``).

The cookie carries ``<session id>.<HMAC-SHA256(secret, session id)>``: the id is 256 random
bits and the session lives only in a ``SessionStore``, so a cookie cannot be forged, and
logging out ends it. Sessions end ``ttl_s`` after login (one shift); ``expire`` sweeps them.

Two stores, one contract (``tests/component/test_desktop_session_contract.py``):
``MemorySessionStore`` (one engine process, the default) and ``RedisSessionStore``
(``redis_sessions``: every engine process sharing ``agent_state_url`` sees the same sessions).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

_MAX_COOKIE = 200


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    agent_id: str
    created: float  # the store's clock, seconds
    expires: float
    credentials: str = ""  # the agent's credentials_tag at login: a change ends the session


class SessionStoreUnavailable(Exception):
    """The shared session store (Redis) did not answer: the request gets a 503."""


class SessionStore(Protocol):
    """Where sessions live; every method may raise ``SessionStoreUnavailable``."""

    def cookie_value(self, session: Session) -> str: ...

    async def create(self, agent_id: str, credentials: str = "") -> tuple[Session, list[Session]]:
        """A new session, and the agent's oldest ones it pushed out beyond the per-agent
        maximum (each returned to this caller only: it closes their sockets)."""
        ...

    async def from_cookie(self, value: str | None) -> Session | None:
        """The live session a cookie names, or None (absent, tampered, ended or expired)."""
        ...

    async def get(self, session_id: str) -> Session | None: ...

    async def drop(self, session_id: str) -> Session | None: ...

    async def sessions_of(self, agent_id: str) -> list[Session]:
        """The agent's live sessions, oldest first."""
        ...

    async def agents_with_sessions(self) -> set[str]: ...

    async def drop_agent(self, agent_id: str) -> list[Session]:
        """End every session of the agent (deleted from the roster); each session is
        returned to one caller only, like ``drop``."""
        ...

    async def expire(self) -> list[Session]:
        """Remove and return the sessions past their end (each returned to one caller only)."""
        ...

    async def aclose(self) -> None: ...


class CookieSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the session cookie secret must be at least 16 bytes")
        self._secret = secret

    def sign(self, session_id: str) -> str:
        mac = hmac.new(self._secret, session_id.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    def cookie_value(self, session: Session) -> str:
        return f"{session.session_id}.{self.sign(session.session_id)}"

    def session_id(self, value: str | None) -> str | None:
        """The session id of a well-formed, correctly signed cookie, else None."""
        if not value or len(value) > _MAX_COOKIE or not value.isascii() or "." not in value:
            return None
        session_id, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(signature, self.sign(session_id)):
            return None
        return session_id


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


class MemorySessionStore:
    """In this process only (one engine process; sessions end with it)."""

    def __init__(
        self,
        *,
        secret: bytes,
        ttl_s: float,
        max_per_agent: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._signer = CookieSigner(secret)
        self._ttl_s = ttl_s
        self._max_per_agent = max_per_agent
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._sessions)

    def cookie_value(self, session: Session) -> str:
        return self._signer.cookie_value(session)

    async def create(self, agent_id: str, credentials: str = "") -> tuple[Session, list[Session]]:
        now = self._clock()
        session = Session(new_session_id(), agent_id, now, now + self._ttl_s, credentials)
        self._sessions[session.session_id] = session
        mine = self._live_of(agent_id)
        evicted = mine[: max(0, len(mine) - self._max_per_agent)]
        for old in evicted:
            self._sessions.pop(old.session_id, None)
        return session, evicted

    async def from_cookie(self, value: str | None) -> Session | None:
        session_id = self._signer.session_id(value)
        return None if session_id is None else await self.get(session_id)

    async def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        return session if session is not None and session.expires > self._clock() else None

    async def drop(self, session_id: str) -> Session | None:
        return self._sessions.pop(session_id, None)

    def _live_of(self, agent_id: str) -> list[Session]:
        now = self._clock()
        return [s for s in self._sessions.values() if s.agent_id == agent_id and s.expires > now]

    async def sessions_of(self, agent_id: str) -> list[Session]:
        return self._live_of(agent_id)

    async def agents_with_sessions(self) -> set[str]:
        return {s.agent_id for s in self._sessions.values()}

    async def drop_agent(self, agent_id: str) -> list[Session]:
        gone = [s for s in self._sessions.values() if s.agent_id == agent_id]
        for session in gone:
            del self._sessions[session.session_id]
        return gone

    async def expire(self) -> list[Session]:
        now = self._clock()
        gone = [s for s in self._sessions.values() if s.expires <= now]
        for session in gone:
            del self._sessions[session.session_id]
        return gone

    async def aclose(self) -> None:
        self._sessions.clear()

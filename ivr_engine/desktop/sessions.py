"""Server-side desktop sessions behind a signed cookie, and the failed-login throttle.

The cookie carries ``<session id>.<HMAC-SHA256(secret, session id)>``: the id is 256 random
bits and the session lives only here, so a cookie cannot be forged, and logging out or a
restart ends it. Sessions end ``ttl_s`` after login (one shift); ``expire`` sweeps them.
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

_MAX_COOKIE = 200


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    agent_id: str
    created: float  # clock seconds (monotonic by default)
    expires: float


class SessionStore:
    def __init__(
        self,
        *,
        secret: bytes,
        ttl_s: float,
        max_per_agent: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the session cookie secret must be at least 16 bytes")
        self._secret = secret
        self._ttl_s = ttl_s
        self._max_per_agent = max_per_agent
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, agent_id: str) -> Session:
        """A new session; the agent's oldest ones go beyond ``max_per_agent``."""
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), agent_id, now, now + self._ttl_s)
        self._sessions[session.session_id] = session
        mine = self.sessions_of(agent_id)
        for old in mine[: max(0, len(mine) - self._max_per_agent)]:
            self._sessions.pop(old.session_id, None)
        return session

    def _sign(self, session_id: str) -> str:
        mac = hmac.new(self._secret, session_id.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    def cookie_value(self, session: Session) -> str:
        return f"{session.session_id}.{self._sign(session.session_id)}"

    def from_cookie(self, value: str | None) -> Session | None:
        """The live session a cookie names, or None (absent, tampered, ended or expired)."""
        if not value or len(value) > _MAX_COOKIE or not value.isascii() or "." not in value:
            return None
        session_id, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(session_id)):
            return None
        session = self._sessions.get(session_id)
        if session is None or session.expires <= self._clock():
            return None
        return session

    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        return session if session is not None and session.expires > self._clock() else None

    def drop(self, session_id: str) -> Session | None:
        return self._sessions.pop(session_id, None)

    def sessions_of(self, agent_id: str) -> list[Session]:
        now = self._clock()
        return [s for s in self._sessions.values() if s.agent_id == agent_id and s.expires > now]

    def expire(self) -> list[Session]:
        """Remove and return the sessions past their end."""
        now = self._clock()
        gone = [s for s in self._sessions.values() if s.expires <= now]
        for session in gone:
            del self._sessions[session.session_id]
        return gone


class LoginThrottle:
    """After ``max_failures`` failed logins for one key within ``window_s``, refuse for a while.

    Bounded: at most ``max_keys`` keys are remembered (oldest forgotten first), so guessing
    many agent ids cannot grow memory without limit.
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 300.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, key: str) -> list[float]:
        since = self._clock() - self._window_s
        times = [t for t in self._failures.get(key, ()) if t > since]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def retry_after(self, key: str) -> float | None:
        """Seconds to wait before trying again, or None when a login may be tried now."""
        times = self._recent(key)
        if len(times) < self._max_failures:
            return None
        return max(1.0, times[-self._max_failures] + self._window_s - self._clock())

    def failed(self, key: str) -> None:
        times = self._recent(key)
        times.append(self._clock())
        self._failures[key] = times
        self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

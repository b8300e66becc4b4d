"""The failed-login throttle of the desktop: a bounded count of recent failures per key.

A login *reserves* its attempt before the password is checked (``begin``): the attempt counts
as a failure against every key it names at once, so parallel guesses cannot all pass the
check while the first scrypt runs. A login that succeeds takes back only its own count
(``release``); the failures before it, in the same burst or not, stay until the window
forgets them.

``trust`` remembers for ``trust_s`` a key that logged in (an agent at an address): the
coarser keys (every address of an agent, every agent at an address) need not apply to it, so
guesses from elsewhere do not lock an agent out of the desk they use.

Two stores, one contract (``LoginLimits``, ``tests/component/test_desktop_login_limits.py``):
``MemoryLoginLimits`` over ``LoginThrottle`` (one engine process, the default) and
``RedisLoginLimits`` (``redis_throttle``: every engine process sharing ``agent_state_url``
counts on the same keys). ``CheckGate`` stays per process: it bounds this process's CPU.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from ivr_engine.desktop.config import DesktopConfig


class TooManyAttempts(Exception):
    """A key is at its limit: try again in ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins: try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class LoginLimitsUnavailable(Exception):
    """The shared store of the limits (Redis) did not answer: the login gets a 503 and its
    password is not checked (fail closed: an attempt that cannot be counted is not made)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """A reserved login attempt: counted against ``keys`` at ``at``; ``token`` tells it
    from every other attempt in a shared store (two processes may count at the same time)."""

    keys: tuple[str, ...]
    at: float
    token: str = ""


Limits = Sequence[tuple[str, int | None]]  # (key, limit); None: max_failures


class LoginLimits(Protocol):
    """Where failed logins are counted; every method may raise ``LoginLimitsUnavailable``."""

    async def begin(self, limits: Limits) -> Attempt:
        """Count one attempt against each key, or raise ``TooManyAttempts`` (counting
        nothing) when any key is at its limit; atomic (parallel attempts cannot pass)."""
        ...

    async def release(self, attempt: Attempt) -> None:
        """Take back this attempt's count only (it succeeded, or was never checked)."""
        ...

    async def trust(self, key: str) -> None: ...

    async def trusted(self, key: str) -> bool: ...

    async def failed(self, key: str) -> None:
        """Count a failure that was not reserved with ``begin``."""
        ...

    async def retry_after(self, key: str, limit: int | None = None) -> float | None: ...

    async def aclose(self) -> None: ...


class LoginThrottle:
    """At most ``limit`` failures (``max_failures`` by default) per key within ``window_s``.

    Bounded: at most ``max_keys`` keys are remembered (oldest forgotten first), so guessing
    many agent ids cannot grow memory without limit.
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 300.0,
        max_keys: int = 10_000,
        trust_s: float = 86_400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window_s = window_s
        self._max_keys = max_keys
        self._trust_s = trust_s
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._trusted: OrderedDict[str, float] = OrderedDict()  # key → trusted until

    def _recent(self, key: str) -> list[float]:
        since = self._clock() - self._window_s
        times = [t for t in self._failures.get(key, ()) if t > since]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def retry_after(self, key: str, limit: int | None = None) -> float | None:
        """Seconds to wait before trying again, or None when a login may be tried now."""
        limit = self._max_failures if limit is None else limit
        times = self._recent(key)
        if len(times) < limit:
            return None
        return max(1.0, times[-limit] + self._window_s - self._clock())

    def begin(self, limits: Limits) -> Attempt:
        """Count one attempt against each ``(key, limit)`` (None: ``max_failures``), or raise
        ``TooManyAttempts`` (counting nothing) when any key is at its limit."""
        waits = [wait for key, limit in limits if (wait := self.retry_after(key, limit))]
        if waits:
            raise TooManyAttempts(max(waits))
        now = self._clock()
        for key, _limit in limits:
            self._record(key, now)
        return Attempt(tuple(key for key, _limit in limits), now)

    def release(self, attempt: Attempt) -> None:
        """Take back this attempt's count (it succeeded, or was never checked): only it,
        earlier failures stay."""
        for key in attempt.keys:
            times = self._failures.get(key)
            if times is not None and attempt.at in times:
                times.remove(attempt.at)
                if not times:
                    del self._failures[key]

    def trust(self, key: str) -> None:
        """``key`` logged in: trusted for ``trust_s`` (bounded like the failures)."""
        self._trusted[key] = self._clock() + self._trust_s
        self._trusted.move_to_end(key)
        while len(self._trusted) > self._max_keys:
            self._trusted.popitem(last=False)

    def trusted(self, key: str) -> bool:
        until = self._trusted.get(key)
        if until is not None and until <= self._clock():
            del self._trusted[key]
            until = None
        return until is not None

    def failed(self, key: str) -> None:
        """Count a failure that was not reserved with ``begin``."""
        self._record(key, self._clock())

    def _record(self, key: str, at: float) -> None:
        times = self._recent(key)
        times.append(at)
        self._failures[key] = times
        self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)


class MemoryLoginLimits:
    """``LoginLimits`` in this process only (one engine process: the embedded default)."""

    def __init__(self, throttle: LoginThrottle) -> None:
        self.throttle = throttle

    @classmethod
    def for_config(
        cls, config: DesktopConfig, clock: Callable[[], float] = time.monotonic
    ) -> MemoryLoginLimits:
        throttle = LoginThrottle(
            max_failures=config.max_failed_logins,
            window_s=config.failed_login_window_s,
            trust_s=config.login_trust_s,
            clock=clock,
        )
        return cls(throttle)

    async def begin(self, limits: Limits) -> Attempt:
        return self.throttle.begin(limits)

    async def release(self, attempt: Attempt) -> None:
        self.throttle.release(attempt)

    async def trust(self, key: str) -> None:
        self.throttle.trust(key)

    async def trusted(self, key: str) -> bool:
        return self.throttle.trusted(key)

    async def failed(self, key: str) -> None:
        self.throttle.failed(key)

    async def retry_after(self, key: str, limit: int | None = None) -> float | None:
        return self.throttle.retry_after(key, limit)

    async def aclose(self) -> None:
        pass


class GateFull(Exception):
    """Every password-check slot is taken and the queue is full: answer "busy, retry"."""


class CheckGate:
    """At most ``running`` password checks at once (scrypt: tens of ms of CPU and 16 MiB
    each) and ``waiting`` more queued; beyond that ``GateFull`` at once, so a flood from
    many addresses costs at most ``running`` cores and never queues without limit."""

    def __init__(self, *, running: int, waiting: int) -> None:
        self._slots = asyncio.Semaphore(running)
        self._room = running + waiting
        self._inside = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._inside >= self._room:
            raise GateFull
        self._inside += 1
        try:
            async with self._slots:
                yield
        finally:
            self._inside -= 1

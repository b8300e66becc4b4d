"""Reconnect delays: exponential back-off with jitter, capped (pure arithmetic, no I/O).

``next_delay()`` gives ``base * 2**n`` for the n-th consecutive failure, capped at ``cap``,
minus up to ``jitter`` of it at random (so many clients restarted together do not reconnect
in lock-step); ``reset()`` after a successful login starts again from ``base``.
``cap_delay()`` jumps straight to the cap: used after a refused login, where retrying fast
only fills Asterisk's security log (and may trip fail2ban) until someone fixes the secret.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: float = 0.2  # fraction of the delay that may be taken off at random, 0..1
    rand: Callable[[], float] = field(default=random.random, repr=False)
    failures: int = 0  # consecutive failures so far

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"back-off needs 0 < base <= cap, got {self.base_s}, {self.cap_s}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"back-off jitter must be within 0..1, got {self.jitter}")

    def delay_for(self, failures: int) -> float:
        """The delay before the next attempt after ``failures`` + 1 consecutive failures."""
        exponent = min(failures, 64)  # 2**64 * base is past any cap; keeps floats finite
        delay = min(self.cap_s, self.base_s * 2.0**exponent)
        return delay * (1.0 - self.jitter * self.rand())

    def next_delay(self) -> float:
        delay = self.delay_for(self.failures)
        self.failures += 1
        return delay

    def cap_delay(self) -> float:
        """The capped delay, and later failures stay at the cap until ``reset()``."""
        self.failures = max(self.failures + 1, 64)
        return self.cap_s * (1.0 - self.jitter * self.rand())

    def reset(self) -> None:
        self.failures = 0


def make_backoff(spec: tuple[float, float] | Backoff) -> Backoff:
    """``(base_s, cap_s)`` or a ready ``Backoff``."""
    if isinstance(spec, Backoff):
        return spec
    base_s, cap_s = spec
    return Backoff(base_s=base_s, cap_s=cap_s)

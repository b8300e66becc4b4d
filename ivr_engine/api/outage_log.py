"""While the timeline is down every API request fails the same way: log it once a minute.

A load balancer probing ``/healthz`` every second during a database outage used to write a
~170-line traceback a second. Now the first failure is one WARNING line with its cause, the
next ones within ``WINDOW_S`` go to DEBUG (with the traceback) and are counted in the next
WARNING line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

WINDOW_S = 60.0

log = logging.getLogger("ivr_engine.api")


class OutageLog:
    """Rate-limited "timeline unavailable" records (one object per app, or per module)."""

    def __init__(
        self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window_s, self._clock = window_s, clock
        self._last: float | None = None
        self._quiet = 0  # failures since the last WARNING line

    def record(self, what: str, exc: BaseException) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._window_s:
            self._quiet += 1
            log.debug("%s: timeline unavailable", what, exc_info=exc)
            return
        more = (
            f"; {self._quiet} more like it in the last {self._window_s:.0f} s"
            if self._quiet
            else ""
        )
        log.warning("%s: timeline unavailable: %s%s", what, exc, more)
        self._last, self._quiet = now, 0


OUTAGE_LOG = web.AppKey[OutageLog]("outage_log")
_SHARED = OutageLog()  # for an app built without one (sub-apps look theirs up the chain)


def record_outage(request: web.Request, what: str, exc: BaseException) -> None:
    """Record a ``TimelineUnavailable`` met while answering ``request``."""
    outages = request.config_dict.get(OUTAGE_LOG, _SHARED)
    outages.record(what, exc)

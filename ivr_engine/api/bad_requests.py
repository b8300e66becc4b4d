"""Malformed HTTP requests cost one short log line, not a traceback each.

aiohttp answers a request its parser refuses (a header line over 8 KiB, a garbled request
line, ...) with a 400, then logs ``ERROR aiohttp.server: Error handling request`` with a
full traceback (``web_protocol.RequestHandler.handle_error``). A body that does not
decode (``Content-Encoding: gzip`` on plain bytes; the API answers 400 ``unreadable_body``)
is logged by aiohttp as ``Unhandled exception`` when it drains the rest of it. Any client
that reaches the port can send those, so while the API app runs a filter on that logger
turns each such record into one WARNING line without traceback, at most one per
``WINDOW_S`` (the rest go to DEBUG and are counted in the next WARNING). The reply (400)
is unchanged. Records of any other exception, such as a handler's own failure
(500), keep their level and traceback.

A filter on the logger, not a ``logger=`` given to the ``AppRunner``: it covers every
runner that serves this app (engine, tests) and goes away with the app (``cleanup_ctx``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.http import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

SERVER_LOGGER = "aiohttp.server"
WINDOW_S = 60.0
_MAX_DETAIL = 120


class BadRequestLogFilter(logging.Filter):
    """Rewrites records of a refused (4xx) request; passes every other record as it is."""

    def __init__(
        self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._warned_at: float | None = None
        self._quieted = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestPayloadError) and isinstance(exc.__cause__, HttpProcessingError):
            exc = exc.__cause__  # a body that does not decode, met again while draining it
        if not isinstance(exc, HttpProcessingError) or not 400 <= exc.code < 500:
            return True
        detail = " ".join(exc.message.split())[:_MAX_DETAIL]
        record.msg, record.args = "%s: %d %s", (record.getMessage(), exc.code, detail)
        record.exc_info = record.exc_text = record.stack_info = None
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < self._window_s:
            self._quieted += 1
            _set_level(record, logging.DEBUG)
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        if self._quieted:
            record.msg += " (and %d more since the last warning, at DEBUG)"
            record.args = (*record.args, self._quieted)
        self._warned_at, self._quieted = now, 0
        _set_level(record, logging.WARNING)
        return True


def _set_level(record: logging.LogRecord, level: int) -> None:
    record.levelno, record.levelname = level, logging.getLevelName(level)


async def quiet_bad_requests(_app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the filter on ``aiohttp.server`` while the app runs."""
    logger, quiet = logging.getLogger(SERVER_LOGGER), BadRequestLogFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)

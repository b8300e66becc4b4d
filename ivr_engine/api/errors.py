"""Every failure leaves the API as ``{"error": {"code": ..., "message": ...}}``.

Validation failures name the field path; unexpected exceptions are logged and answered
with a generic 500 that leaks nothing about the internals. A client that hangs up before its
request is done (mid-body, say) is one DEBUG line: any client can do that, and there is
nobody left to answer (``client_gone``).

Not the requests aiohttp's HTTP parser refuses before any application code runs (a request
line or header over 8 KiB, too many headers, a bad method or version, a Content-Encoding it
cannot decode such as br or zstd, a malformed chunk in the first packet): those get
aiohttp's own ``text/plain`` 400 (``web_protocol.RequestHandler.handle_error``, reached with
no route, so neither middlewares nor ``on_response_prepare`` run). aiohttp 3.14 has no public
hook for them (aio-libs/aiohttp#3287, #6463); replacing its ``RequestHandler`` would mean
overriding private parts of ``Server`` and ``AppRunner``. Their log records are shortened by
``bad_requests.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from pydantic import ValidationError

from ivr_engine.api.outage_log import record_outage
from ivr_engine.domain.errors import TimelineDataRejected, TimelineUnavailable
from ivr_engine.timeline.errors import CustomerNotFound, MergeRejected

log = logging.getLogger(__name__)

_MAX_MESSAGE = 300
_MAX_DETAILS = 20

_HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


_BODY_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH})
_JSON = "application/json"


class ApiError(Exception):
    """An expected failure with its HTTP status, machine code and human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Sequence[Mapping[str, Any]] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = tuple(details)
        self.extra = dict(extra or {})


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def bad_request(field: str, message: str, code: str = "validation_error") -> ApiError:
    detail = {"loc": field, "msg": _clip(message), "type": code}
    return ApiError(400, code, f"{field}: {_clip(message)}", details=[detail])


def from_validation_error(exc: ValidationError, where: str = "body") -> ApiError:
    """A 400 naming the first offending field path (``identities.0.value``); a rule about
    the whole body (or query string: ``where``) is named by ``where``."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if any(e["type"] == "json_invalid" for e in errors):
        first = next(e for e in errors if e["type"] == "json_invalid")
        return ApiError(400, "invalid_json", _clip(first["msg"]))
    details = [
        {"loc": _loc(e["loc"], where), "msg": _clip(_plain(e["msg"])), "type": e["type"]}
        for e in errors[:_MAX_DETAILS]
    ]
    first_detail = details[0] if details else {"loc": where, "msg": "invalid"}
    message = f"{first_detail['loc']}: {first_detail['msg']}"
    return ApiError(400, "validation_error", message, details=details)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[Mapping[str, Any]] = (),
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    return web.json_response(
        text=_error_text(code, message, details, extra), status=status, content_type=_JSON
    )


def _error_text(
    code: str,
    message: str,
    details: Sequence[Mapping[str, Any]] = (),
    extra: Mapping[str, Any] | None = None,
) -> str:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = list(details)
    if extra:
        body.update(extra)
    return json.dumps({"error": body})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.status == 408:  # the rest of the body may never come
            text = _error_text(exc.code, exc.message, exc.details, exc.extra)
            return _ClosingResponse(request.protocol, text=text, status=408, content_type=_JSON)
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.extra)
    except CustomerNotFound as exc:
        return error_response(404, "customer_not_found", str(exc))
    except MergeRejected as exc:
        return error_response(409, "merge_rejected", _clip(str(exc)))
    except TimelineDataRejected as exc:  # the database is up: it cannot hold a value given
        log.info("%s %s: value rejected: %s", request.method, request.path, exc)
        return error_response(
            400,
            "value_rejected",
            _clip(f"{exc}: change or leave out that value"),
        )
    except TimelineUnavailable as exc:
        record_outage(request, f"{request.method} {request.path}", exc)
        return error_response(503, "timeline_unavailable", "the timeline store is unavailable")
    except RequestPayloadError as exc:
        # The body broke off or does not decode (Content-Encoding: gzip on plain bytes):
        # the client's fault, told in one line.
        cause = exc.__cause__
        why = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
        log.info("%s %s: unreadable body: %s", request.method, request.path, why)
        return error_response(400, "unreadable_body", _clip(f"the body cannot be read: {why}"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason)
        _keep_headers(exc, response)
        return response
    except ConnectionResetError as exc:  # aiohttp's ClientConnectionResetError is one too
        if not client_gone(request):
            log.exception("%s %s: unhandled error", request.method, request.path)
            return error_response(500, "internal_error", "internal server error")
        log.debug("%s %s: the client hung up: %s", request.method, request.path, exc)
        # aiohttp must be given a response; writing it to the closed connection fails, and
        # aiohttp drops that quietly ("Ignored premature client disconnection")
        return error_response(400, "client_gone", "the client closed the connection")
    except Exception:
        log.exception("%s %s: unhandled error", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")


class _ClosingResponse(web.Response):
    """A response that closes its connection once sent (``Connection: close``, then the
    socket). After a body that did not arrive in time aiohttp would otherwise go on reading
    the rest of it ("lingering", 10 s), even once the client has gone, and hold an engine's
    stop that long. Closed when sent, not before: outer middlewares still add headers."""

    def __init__(self, protocol: RequestHandler, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.force_close()
        self._connection = protocol

    async def write_eof(self, data: bytes = b"") -> None:
        try:
            await super().write_eof(data)
        finally:
            self._connection.force_close()  # what was written is flushed before it closes


def client_gone(request: web.BaseRequest) -> bool:
    """True once the client's connection is closed or closing: a reset met then is the
    client's doing (a body read that broke off, a write to it), not a server fault. A reset
    while the client is still connected (a database's connection, say) is a server error."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _keep_headers(exc: web.HTTPException, response: web.Response) -> None:
    """The headers aiohttp put on ``exc`` (``Allow`` on a 405, as RFC 9110 requires), but
    not its body's: the JSON error replaces the text one."""
    for name, value in exc.headers.items():
        if name not in _BODY_HEADERS:
            response.headers.add(name, value)


def _loc(loc: Sequence[int | str], where: str) -> str:
    return ".".join(str(part) for part in loc) or where


def _plain(msg: str) -> str:
    """pydantic's message without the "Value error, " it puts before a validator's own."""
    return msg.removeprefix("Value error, ")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"

"""Bearer tokens on the HTTP API: ``Authorization: Bearer <token>`` (RFC 6750).

With ``api_tokens`` set, every route needs one of them (or the ``admin_token``, which is
accepted wherever an API token is) except the few that are open on purpose (``OPEN_PATHS``,
``OPEN_PREFIXES``): a route added later is protected unless it is listed there. Missing
header, another scheme or an empty token: 401 ``WWW-Authenticate: Bearer realm=...``; a
wrong token: 401 with ``error="invalid_token"``. Tokens are compared in constant time
(SHA-256 of both sides, ``hmac.compare_digest`` against every configured token).

Without ``api_tokens`` the middleware lets every request through whose ``Host`` is a
loopback name (``localhost``, ``127.0.0.1``, ``[::1]``, any port) or one of the configured
``allowed_hosts`` (``http_host``, ``http_allowed_hosts``...; the settings allow an open API
only on a loopback ``http_host`` or with ``allow_unauthenticated_http``). Any other ``Host``
gets 421 ``host_not_allowed``: a web page whose name was rebound to 127.0.0.1 (DNS
rebinding) is same-origin with the engine in the browser of anyone on the engine's host,
and must not read or write timelines. ``/healthz`` (no data) is exempt.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Collection, Iterable
from typing import Final, Literal

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from ivr_engine.api.errors import error_response
from ivr_engine.settings import check_token_strength

REALM: Final = "ivr-engine"
# Open without a token: liveness, the API's own description, and pages holding no data
# (the timeline page's data comes from /v1; the desktop has its own login and session).
OPEN_PATHS: Final = frozenset(
    {"/healthz", "/openapi.json", "/docs", "/v1/load.html", "/v1/load.js"}
)
OPEN_PREFIXES: Final = ("/timeline", "/desktop")
# Answered whatever the Host (no data: probes address the engine by any name).
ANY_HOST_PATHS: Final = frozenset({"/healthz"})
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost."})

Credential = Literal["api", "admin"]
# Which credential the middleware accepted (absent: the API is open, or the route is).
CREDENTIAL: Final = web.RequestKey[Credential]("credential")


def token_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None when absent, another scheme or
    empty."""
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


def _plausible(given: str) -> bool:
    """What a configured token can be (``settings.check_token_strength``): anything else
    is refused before hashing (a header may carry undecodable bytes)."""
    try:
        check_token_strength(given)
    except ValueError:
        return False
    return True


def same_token(given: str, expected: str) -> bool:
    """One token against one setting, in constant time."""
    return _plausible(given) and hmac.compare_digest(token_digest(given), token_digest(expected))


def unauthorized(message: str, *, realm: str = REALM, invalid: bool = False) -> web.Response:
    """401 with the ``WWW-Authenticate`` challenge; ``invalid``: a token was sent but refused."""
    response = error_response(401, "unauthorized", message)
    challenge = f'Bearer realm="{realm}"'
    response.headers[hdrs.WWW_AUTHENTICATE] = (
        challenge + ', error="invalid_token"' if invalid else challenge
    )
    return response


class ApiTokens:
    """The accepted bearer tokens, kept as digests only; empty: the API is open."""

    def __init__(self, api_tokens: Iterable[str], admin_token: str | None = None) -> None:
        api: list[tuple[bytes, Credential]] = [(token_digest(t), "api") for t in api_tokens]
        admin: list[tuple[bytes, Credential]] = (
            [(token_digest(admin_token), "admin")] if api and admin_token is not None else []
        )
        self._digests = tuple(api + admin)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, given: str) -> Credential | None:
        """Compared against every token (no early exit), each in constant time."""
        if not _plausible(given):
            return None
        digest = token_digest(given)
        found: Credential | None = None
        for expected, kind in self._digests:
            if hmac.compare_digest(digest, expected) and found is None:
                found = kind
        return found


class LiveTokens:
    """The tokens in force (API tokens and admin token), replaced as one by a reload
    (SIGHUP, ``Engine.use_tokens``): every check reads them when it runs, so the next request
    is checked against the new set; a request already past the check goes on."""

    def __init__(self, api_tokens: Iterable[str] = (), admin_token: str | None = None) -> None:
        self._in_force = self._made(api_tokens, admin_token)
        self.version = 1  # +1 on each replace

    @staticmethod
    def _made(api_tokens: Iterable[str], admin_token: str | None) -> tuple[ApiTokens, str | None]:
        return ApiTokens(api_tokens, admin_token), admin_token

    def replace(self, api_tokens: Iterable[str], admin_token: str | None) -> None:
        """Both at once: one assignment, no request sees half of a change."""
        self._in_force = self._made(api_tokens, admin_token)
        self.version += 1

    @property
    def api(self) -> ApiTokens:
        return self._in_force[0]

    @property
    def admin(self) -> str | None:
        return self._in_force[1]


def is_open(request: web.Request) -> bool:
    """Decided on the route that matched (what dispatches), not on the raw path."""
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else None
    if path is None:
        return False
    return path in OPEN_PATHS or any(
        path == prefix or path.startswith(prefix + "/") for prefix in OPEN_PREFIXES
    )


def refusal(request: web.Request, tokens: ApiTokens) -> web.Response | None:
    """None when the request may go on (and ``request[CREDENTIAL]`` says with what)."""
    if not tokens or is_open(request):
        return None
    given = bearer_token(request)
    kind = None if given is None else tokens.match(given)
    if kind is None:
        if given is None:
            return unauthorized("send one of api_tokens as `Authorization: Bearer <token>`")
        return unauthorized("the bearer token is not one of api_tokens", invalid=True)
    request[CREDENTIAL] = kind
    return None


def host_name(host: str) -> str:
    """The name of a ``Host`` value, without its port (``[::1]:8080`` → ``::1``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, _, port = host.rpartition(":")
    return name if name and ":" not in name and port.isdigit() else host


class AllowedHosts:
    """The ``Host`` names an open API (no ``api_tokens``) answers to: loopback ones and
    ``extra`` (each a name or an address, with or without a port; ``*``: any)."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        names = {host_name(h) for h in extra if h.strip()}
        self.any = "*" in names
        self._names = frozenset(names - {"*", "0.0.0.0", "::", ""})

    def allows(self, host: str | None) -> bool:
        """``host``: the request's ``Host`` header; None (no header, HTTP/1.0): allowed, a
        browser always sends one."""
        if host is None or self.any:
            return True
        name = host_name(host)
        return name in LOOPBACK_NAMES or name in self._names or _loopback_address(name)

    @property
    def names(self) -> Collection[str]:
        return sorted(self._names)


def _loopback_address(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_refusal(request: web.Request, hosts: AllowedHosts) -> web.Response | None:
    """421 when an open API is asked under a name it does not answer to (DNS rebinding)."""
    given = request.headers.get(hdrs.HOST)
    if hosts.allows(given) or request.path in ANY_HOST_PATHS:
        return None
    others = "".join(f", {name}" for name in hosts.names)
    message = (
        f"Host {given!r} is not a name of this engine: without api_tokens it answers only to "
        f"localhost, 127.0.0.1, [::1]{others} (protection against DNS rebinding). Use one of "
        "them, or add this name to http_allowed_hosts, or set api_tokens"
    )
    return error_response(421, "host_not_allowed", message)


def auth_middleware(
    tokens: ApiTokens | LiveTokens, allowed_hosts: Iterable[str] = ()
) -> Middleware:
    """Bearer tokens when there are tokens; else only requests under a name in
    ``allowed_hosts`` (and the loopback names). ``LiveTokens``: those in force at each
    request."""
    hosts = AllowedHosts(allowed_hosts)

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        in_force = tokens.api if isinstance(tokens, LiveTokens) else tokens
        refused = refusal(request, in_force) if in_force else host_refusal(request, hosts)
        if refused is not None:
            return refused
        return await handler(request)

    return check_token

"""Settings of the agent desktop, checked when the app is built."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ivr_engine.telephony.peers import Network

# fullmatch: re's "$" also matches before a final "\n" (that origin would never match)
_ORIGIN_RE = re.compile(
    r"https?://[a-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?"
)


@dataclass(frozen=True, slots=True)
class DesktopConfig:
    base_path: str = "/desktop"  # where the engine mounts the app: the session cookie's Path
    # Origins allowed besides the request's own scheme://host (e.g. the public https origin
    # when a TLS proxy sits in front): "https://desk.example.com".
    allowed_origins: frozenset[str] = frozenset()
    secure_cookie: bool = True  # False only for plain-http test set-ups
    # Reverse proxies in front of the desktop: a request from one of them is counted for
    # the login limits by the address X-Forwarded-For gives (the nearest one that is not a
    # trusted proxy); without them every client behind a proxy shares the proxy's address.
    trusted_proxies: tuple[Network, ...] = ()
    cookie_secret: bytes | None = None  # None: random per process (sessions are in memory)
    cookie_name: str = "ivr_desktop_session"
    session_ttl_s: float = 10 * 3600.0  # one shift; the agent logs in again after it
    max_body_bytes: int = 16 * 1024
    body_timeout_s: float = 10.0
    # Failed logins within the window: per agent id at one client address (an IPv6 client
    # by its /64), then that agent at that address waits for the rest of the window; per
    # agent from every address but those the agent logged in from within login_trust_s
    # (distributed guessing); per client address over every agent id but those it logged
    # in as lately (unknown agent ids: each costs a scrypt); token logins per address.
    # None: 4 x max_failed_logins.
    max_failed_logins: int = 5
    max_failed_logins_per_agent: int | None = None
    max_failed_logins_per_address: int | None = None
    failed_login_window_s: float = 300.0
    login_trust_s: float = 86_400.0
    # Password checks (scrypt) running at once, and queued; beyond: 503 login_busy.
    max_password_checks: int = 2
    max_waiting_password_checks: int = 16
    sweep_interval_s: float = 30.0  # how often expired sessions are swept (sockets closed)
    feed_retry_s: float = 1.0  # first wait before resubscribing to a failed change feed
    ws_heartbeat_s: float = 30.0
    # Open WebSockets per session in one engine process (one per browser tab): one more
    # is closed at once with 1008 (policy violation) and a reason.
    max_sockets_per_session: int = 8
    # Messages a desktop socket may send a minute (the page sends none; a client's "ping"
    # is answered with "pong"): beyond, the socket is closed with 1008 and a reason.
    max_socket_messages_per_minute: int = 60

    def __post_init__(self) -> None:
        if not self.base_path.startswith("/") or self.base_path.endswith("/"):
            raise ValueError(f"base_path {self.base_path!r}: start with / and end without /")
        for origin in self.allowed_origins:
            if not _ORIGIN_RE.fullmatch(origin):
                raise ValueError(
                    f"allowed_origins: {origin!r} is not scheme://host[:port] in lower case"
                )
        if self.cookie_secret is not None and len(self.cookie_secret) < 16:
            raise ValueError("cookie_secret must be at least 16 bytes")
        if min(self.max_failed_logins, self.agent_ceiling, self.address_ceiling) < 1:
            raise ValueError("max_failed_logins (and per agent, per address) must be >= 1")
        if self.max_sockets_per_session < 1 or self.max_socket_messages_per_minute < 1:
            raise ValueError(
                "max_sockets_per_session and max_socket_messages_per_minute must be >= 1"
            )
        if self.max_password_checks < 1 or self.max_waiting_password_checks < 0:
            raise ValueError("max_password_checks must be >= 1, max_waiting_password_checks >= 0")
        if self.max_body_bytes < 256 or self.session_ttl_s <= 0:
            raise ValueError("max_body_bytes must be >= 256 and session_ttl_s > 0")

    @property
    def agent_ceiling(self) -> int:
        """Failed logins per agent id from every untrusted address, within the window."""
        given = self.max_failed_logins_per_agent
        return 4 * self.max_failed_logins if given is None else given

    @property
    def address_ceiling(self) -> int:
        """Failed password logins per client address over every agent id, within the window."""
        given = self.max_failed_logins_per_address
        return 4 * self.max_failed_logins if given is None else given

"""The supervisor's hold on the engine's ports (``ivr-engine run --workers N``).

The supervisor binds one ``SO_REUSEPORT`` socket per port (FastAGI, ESL when set, HTTP) and
never listens on it. It fixes port 0 to one real port for every worker, and no other program
can take the port while a worker restarts. The kernel spreads new connections only over the
workers' listening sockets.
"""

from __future__ import annotations

import socket

from ivr_engine.domain.errors import ConfigError


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, never listening ``SO_REUSEPORT`` socket holding ``(host, port)``.

    ``SO_REUSEPORT`` lets any process of the same user join a port: a second engine started
    on the same ports would quietly take half of the calls and API requests. So a fixed port
    is first bound *without* it (``SO_REUSEADDR`` only, as any server: sockets in TIME_WAIT
    do not count), which fails while anything listens there; ``OSError`` then."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    if port != 0:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def hold_port(key: str, host: str, port: int) -> socket.socket:
    """``reserve_port`` for the setting ``key``: ``ConfigError`` naming it if the port is taken."""
    try:
        return reserve_port(host, port)
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot listen on {host}:{port}: {exc} (another ivr-engine, or another "
            "program, is there)"
        ) from exc

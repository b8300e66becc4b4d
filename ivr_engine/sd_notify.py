"""systemd's notification protocol (``sd_notify(3)``), the few lines the engine needs.

When a service manager sets ``NOTIFY_SOCKET`` (systemd with ``Type=notify`` or
``WatchdogSec=``), the engine sends ``READY=1`` once it takes calls, ``WATCHDOG=1`` at each
beat of its event loop (``loop_watchdog.py``), ``STOPPING=1`` when it stops: with
``WatchdogSec=`` systemd kills and restarts a process whose loop stopped beating, even one
frozen whole (``SIGSTOP``). One datagram each on a Unix socket; a path starting with ``@`` is in
the abstract namespace. Nothing is sent without ``NOTIFY_SOCKET``; a send that fails is
dropped (systemd gone or restarting: nothing the engine could do about it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

READY = "READY=1"
WATCHDOG = "WATCHDOG=1"
STOPPING = "STOPPING=1"


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket address of ``NOTIFY_SOCKET`` (an abstract one starts with a NUL), or None."""
    path = environ.get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":  # vsock: and relative paths are not supported here
        return None
    return "\0" + path[1:] if path.startswith("@") else path


class Notifier:
    """Sends to ``NOTIFY_SOCKET``; without it, ``send`` does nothing."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.address = notify_address(os.environ if environ is None else environ)
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, state: str) -> bool:
        """One datagram; True if it was sent."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto(state.encode(), self.address)
        except OSError as exc:
            log.debug("sd_notify %s not sent: %r", state, exc)
            return False
        return True

    def watchdog(self) -> None:
        self.send(WATCHDOG)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

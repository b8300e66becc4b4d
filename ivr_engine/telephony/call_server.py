"""What the call servers (FastAGI, the ESL outbound socket) share: the listening socket and
the per-connection tasks.

Every connection task is kept until it ends, its failure logged (a connection's crash never
reaches the server), and on shutdown the calls in flight get a grace period before the rest
are cancelled and awaited: no task is orphaned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Self

from ivr_engine.stopping import cancel_and_wait
from ivr_engine.telephony.peers import PeerAllowlist

log = logging.getLogger(__name__)

MAX_REFUSED_LOGGED = 256  # distinct refused peers warned about (then: debug)


class CallTasks:
    def __init__(self, what: str) -> None:
        self._what = what  # "AGI connection", "ESL connection": for the log
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task failed", self._what, exc_info=task.exception())

    async def drain(self, grace: float) -> None:
        """Let the tasks finish for ``grace`` seconds, then cancel and await the rest."""
        pending = set(self._tasks)
        if pending and grace > 0:
            _, pending = await asyncio.wait(pending, timeout=grace)
        await cancel_and_wait(pending)  # a call waiting on Redis can lose one cancel


class CallServer:
    """A TCP server the switch connects to for each call; subclasses say how a connection is
    served (``_serve``)."""

    def __init__(self, what: str, host: str, port: int, *, backlog: int, stream_limit: int) -> None:
        self._what = what  # "FastAGI server", "ESL outbound server": for errors
        self._host = host
        self._port = port
        self._backlog = backlog
        self._stream_limit = stream_limit
        self._tasks = CallTasks(what.replace("server", "connection"))
        self._server: asyncio.Server | None = None
        self._allowlist = PeerAllowlist()
        self._refused: set[str] = set()

    def only_from(self, allowlist: PeerAllowlist) -> None:
        """Close connections from peers the allowlist does not name (``pbx_allowlist``)."""
        self._allowlist = allowlist

    def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        """The bound port once started (useful with port 0), else the configured one."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_calls(self) -> int:
        """Connections being served (including ones still sending their first data)."""
        return len(self._tasks)

    async def start(self, *, reuse_port: bool = False) -> None:
        """Listen; ``reuse_port``: with ``SO_REUSEPORT``, so that several engine worker
        processes listen on one port and the kernel spreads the connections over them."""
        if self._server is not None:
            raise RuntimeError(f"{self._what} already started")
        self._server = await asyncio.start_server(
            self._on_connect,
            self._host,
            self._port,
            backlog=self._backlog,
            limit=self._stream_limit,
            reuse_port=reuse_port or None,
        )

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        if not self._allowlist.allows(host):
            writer.transport.abort()  # nothing read, nothing written
            self._log_refused(host)
            return
        self._tasks.spawn(self._serve(reader, writer))

    def _log_refused(self, host: str) -> None:
        if host in self._refused or len(self._refused) >= MAX_REFUSED_LOGGED:
            log.debug("%s: connection from %s refused (pbx_allowlist)", self._what, host)
            return
        self._refused.add(host)
        log.warning(
            "%s: connection from %s refused: not in pbx_allowlist (said once per address)",
            self._what,
            host,
        )

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; give calls ``grace`` seconds to finish, then cancel the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await self._tasks.drain(grace)
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

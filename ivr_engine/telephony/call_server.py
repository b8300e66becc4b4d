"""What the call servers (FastAGI, the ESL outbound socket) share: the listening socket and
the per-connection tasks.

Every connection task is kept until it ends, its failure logged (a connection's crash never
reaches the server), and on shutdown the calls in flight get a grace period before the rest
are cancelled and awaited: no task is orphaned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Self

from ivr_engine.stopping import cancel_and_wait
from ivr_engine.telephony.peers import PeerAllowlist

log = logging.getLogger(__name__)

MAX_REFUSED_LOGGED = 256  # distinct refused peers warned about (then: debug)


class CallTasks:
    def __init__(self, what: str, *, abandon_wait_s: float = 0.0) -> None:
        self._what = what  # "AGI connection", "ESL connection": for the log
        self._abandon_wait_s = abandon_wait_s  # see ``spawn``
        self._tasks: set[asyncio.Task[None]] = set()
        self._abandon: dict[asyncio.Task[None], Callable[[], bool]] = {}
        self._grace_over = asyncio.Event()  # ``end_grace``: a drain waits no longer

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self, coro: Coroutine[Any, Any, None], abandon: Callable[[], bool] | None = None
    ) -> None:
        """Run ``coro``; ``abandon``: called if it is still running when a drain's grace
        ends (tells the switch the call failed). False: the task is cancelled at once; True:
        the task now ends by itself (it tells the switch, bounded), and is cancelled only if
        it still runs ``abandon_wait_s`` later."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        if abandon is not None:
            self._abandon[task] = abandon
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._abandon.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task failed", self._what, exc_info=task.exception())

    def end_grace(self) -> None:
        """A drain in progress (or to come) waits no longer: the calls left are ended now."""
        self._grace_over.set()

    async def drain(self, grace: float) -> None:
        """Let the tasks finish for ``grace`` seconds (less if ``end_grace`` is called), then
        cancel and await the rest."""
        pending = set(self._tasks)
        if pending and grace > 0 and not self._grace_over.is_set():
            pending = await self._wait(pending, grace)
        if pending:
            log.warning(
                "%d %s(s) still in progress %s: ended as failed",
                len(pending),
                self._what,
                "when the grace was cut short"
                if self._grace_over.is_set()
                else f"after the {grace:.1f} s grace",
            )
        ending = {task for task in pending if self._abandoned(task)}
        await cancel_and_wait(pending - ending)  # a call waiting on Redis can lose one cancel
        if ending:
            await asyncio.wait(ending, timeout=self._abandon_wait_s)
            await cancel_and_wait(ending)

    def _abandoned(self, task: asyncio.Task[None]) -> bool:
        """``task``'s abandon called: whether the task now ends by itself."""
        abandon = self._abandon.get(task)
        if abandon is None:
            return False
        try:
            return abandon()
        except Exception:  # best effort: the call is cancelled all the same
            log.exception("telling the switch a %s failed did not work", self._what)
            return False

    async def _wait(self, tasks: set[asyncio.Task[None]], grace: float) -> set[asyncio.Task[None]]:
        """The tasks still running after ``grace`` seconds or ``end_grace``, whichever first."""
        cut = asyncio.create_task(self._grace_over.wait())
        ended = asyncio.create_task(asyncio.wait(tasks))  # cancelling it cancels no call
        try:
            await asyncio.wait({ended, cut}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait({cut, ended})
        return {task for task in tasks if not task.done()}


class CallServer:
    """A TCP server the switch connects to for each call; subclasses say how a connection is
    served (``_serve``)."""

    def __init__(
        self,
        what: str,
        host: str,
        port: int,
        *,
        backlog: int,
        stream_limit: int,
        abandon_wait_s: float = 0.0,
    ) -> None:
        self._what = what  # "FastAGI server", "ESL outbound server": for errors
        self._host = host
        self._port = port
        self._backlog = backlog
        self._stream_limit = stream_limit
        what_connection = what.replace("server", "connection")
        self._tasks = CallTasks(what_connection, abandon_wait_s=abandon_wait_s)
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

    def _abandon(self, writer: asyncio.StreamWriter) -> bool:
        """A call still running when the stop's grace ends: tell the switch (best effort) so
        its dialplan falls back. False: done (without waiting), cancel the call now; True:
        the call tells the switch itself and ends within ``abandon_wait_s``. Default:
        nothing told, False."""
        return False

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
        self._tasks.spawn(self._serve(reader, writer), lambda: self._abandon(writer))

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

    def stop_accepting(self) -> None:
        """Close the listening socket now; the calls in progress go on (``close`` drains
        them)."""
        if self._server is not None:
            self._server.close()

    def end_grace(self) -> None:
        """The calls ``close`` is giving a grace (or will) are ended now (a second stop
        signal): told failed where the server can, then cancelled."""
        self._tasks.end_grace()

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; give calls ``grace`` seconds to finish, then end the rest
        (``_abandon``, then cancelled)."""
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

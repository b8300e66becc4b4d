"""The supervisor of ``ivr-engine run --workers N``: N engine worker processes, one port.

Start-up, in order (any failure: the workers started are stopped, exit non-zero):

1. the settings were validated by the CLI; here the menus and prompts are checked once and
   a SQLite timeline is migrated once (the workers open it without migrating: N Alembic
   runs on one new file would race);
2. the call ports (FastAGI, ESL when set) and the HTTP port are *reserved*
   (``port_reservation.py``): one real port each for every worker, held while workers
   restart;
3. the workers start (``worker_process.py``, ``child.py``) and each says ``ready`` once it
   listens; then, and only then, the ``--ready-file`` is written (``AGI_PORT HTTP_PORT``, as
   one engine writes it).

With ``agents_file`` the supervisor also keeps the engine's one load state
(``load_ledger.py``): each worker it starts gets a Unix socket to it, sends its load updates
there, and worker 0 serves ``/v1/load`` and ``/metrics`` from it, so they count every
worker's calls; the ledger outlives the workers' restarts.

Running: SIGHUP is passed to every ready worker (each reloads its menus and logs the
outcome); the supervisor itself reads the HTTP API's tokens again from the settings' sources
(``token_reload.py``) and, if they pass, sends the new settings down every ready worker's
stdin (worker 0 serves the API and puts them in force; ``child.py``) and starts any worker
restarted later with them; if they fail, it logs why and nothing changes. SIGTERM or SIGINT
is passed to every worker, which stops accepting and lets its calls finish (the engine's own
drain, ``shutdown_grace_s``), and the supervisor exits 0 once they have all exited (any left
``STOP_MARGIN_S`` after the grace are killed); a second SIGTERM or SIGINT ends the workers'
grace at once (passed on as ``END_GRACE_SIGNAL``: a worker may get SIGTERM/SIGINT twice on one
stop, so it takes the end of its grace from the supervisor only). A worker that exits on its
own is restarted, in the same role, after a back-off (1 s, doubling while it keeps dying
within ``HEALTHY_AFTER_S`` of starting, at most 30 s: ``Worker`` in ``worker_process.py``),
and logged. Its calls in progress were cut off (Asterisk: ``AGISTATUS=FAILURE``, the dialplan's
``ivr-fail`` static menu); the other workers' calls are separate processes and go on, and
new calls go to the workers still listening while it restarts.

A worker whose event loop stops (``loop_watchdog_s``, ``loop_watchdog.py``) exits by itself
with code 70 and is restarted like any other death; a worker frozen whole (``SIGSTOP``)
cannot: each worker writes a byte per beat down a pipe to the supervisor
(``liveness.py``), and a ready worker silent for ``loop_watchdog_s`` is killed (SIGKILL) and
restarted. With ``NOTIFY_SOCKET`` (systemd) the supervisor sends ``READY=1`` once every worker
is ready, ``WATCHDOG=1`` from its own loop, ``STOPPING=1`` at the stop (``sd_notify.py``);
the workers do not get ``NOTIFY_SOCKET``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from ivr_engine.domain.errors import ConfigError
from ivr_engine.engine_process import END_GRACE_SIGNAL
from ivr_engine.loop_watchdog import beat_interval
from ivr_engine.sd_notify import READY, STOPPING, Notifier
from ivr_engine.settings import Settings
from ivr_engine.task_dump import log_tasks
from ivr_engine.token_reload import (
    SettingsSource,
    describe,
    describe_unexpected,
    reload_tokens,
)
from ivr_engine.workers.child import EXIT_CONFIG, settings_json
from ivr_engine.workers.child_watcher import watch_children_by_pidfd
from ivr_engine.workers.liveness import silent_workers
from ivr_engine.workers.load_ledger import LoadLedger
from ivr_engine.workers.port_reservation import hold_port
from ivr_engine.workers.role import WorkerRole
from ivr_engine.workers.worker_process import (
    Worker,
    WorkerFailed,
    describe_exit,
    start_worker,
)

log = logging.getLogger(__name__)

STOP_MARGIN_S = 50.0  # after shutdown_grace_s: the recorder's flush, closing the rest


@dataclass
class Supervisor:
    settings: Settings
    ready_file: Path | None = None
    source: SettingsSource | None = None  # where the settings came from: SIGHUP reads it
    workers: list[Worker] = field(default_factory=list)
    _held: list[socket.socket] = field(default_factory=list)
    _ports: dict[str, int] = field(default_factory=dict)  # setting -> the port held
    _worker_settings: str = ""
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _watchers: list[asyncio.Task[None]] = field(default_factory=list)
    _ledger: LoadLedger | None = None  # with agents_file: the load view's state
    _reloads: set[asyncio.Task[None]] = field(default_factory=set)
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock)
    _notifier: Notifier = field(default_factory=Notifier)

    async def run(self) -> int:
        """Until SIGTERM/SIGINT (0), or the workers could not start (non-zero)."""
        count = self.settings.workers
        self.workers = [Worker(WorkerRole(i, count)) for i in range(count)]
        try:
            await self._prepare()
            self._handle_signals()
            return await self._serve()
        finally:
            for sock in self._held:
                sock.close()

    async def _prepare(self) -> None:
        from ivr_engine.checked_menus import load_checked_menus
        from ivr_engine.data_dirs import check_spool_dir
        from ivr_engine.timeline.migrate import upgrade
        from ivr_engine.timeline.urls import parse_database_url

        settings = self.settings
        await asyncio.to_thread(load_checked_menus, settings)
        await asyncio.to_thread(check_spool_dir, settings.spool_dir, create=True)
        if settings.agents_file is not None:
            self._ledger = LoadLedger()
        if parse_database_url(settings.database_url).dialect == "sqlite":
            await upgrade(settings.database_url)
        ports = {"agi_port": (settings.agi_host, settings.agi_port)}
        ports["http_port"] = (settings.http_host, settings.http_port)
        if settings.esl_port is not None:
            ports["esl_port"] = (settings.esl_host, settings.esl_port)
        self._ports = {key: self._hold(key, *where) for key, where in ports.items()}
        self._worker_settings = settings_json(settings.model_copy(update=self._ports))

    def _hold(self, key: str, host: str, port: int) -> int:
        sock = hold_port(key, host, port)
        self._held.append(sock)
        return int(sock.getsockname()[1])

    def _handle_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGUSR1, self._dump_tasks)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        """The first SIGTERM/SIGINT stops (``_stop``); a second one ends the workers' grace
        now: passed on to each worker as ``END_GRACE_SIGNAL`` (each tells its calls left
        they failed, writes or spools them, and exits)."""
        if not self._stopping.is_set():
            self._stopping.set()
            return
        told = self._signal_workers(END_GRACE_SIGNAL)
        log.warning(
            "second signal (%s): ending the grace now, %d worker(s) told to cut their calls",
            sig.name,
            told,
        )

    def _reload(self) -> None:
        log.info(
            "SIGHUP: asking %d worker(s) to reload their menus", self._signal_workers(signal.SIGHUP)
        )
        if self.source is not None:
            task = asyncio.get_running_loop().create_task(self._reload_tokens(self.source))
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def _reload_tokens(self, source: SettingsSource) -> None:
        """The API's tokens read again; if they pass, to every worker now and at restarts."""
        async with self._reloading:
            try:
                reload = await asyncio.to_thread(reload_tokens, self.settings, source)
            except (ConfigError, OSError, ValueError) as exc:
                log.error("API tokens NOT reloaded, the ones in force stay: %s", exc)
                return
            except Exception as exc:  # unexpected, but still a refused reload: said so
                log.error(
                    "API tokens NOT reloaded, the ones in force stay: %s", describe_unexpected(exc)
                )
                return
            self.settings = reload.settings
            self._worker_settings = settings_json(reload.settings.model_copy(update=self._ports))
            ready = [w for w in self.workers if w.ready]
            sent = await asyncio.gather(*(w.send_settings(self._worker_settings) for w in ready))
        not_ready = len(self.workers) - len(ready)
        log.log(
            logging.INFO if all(sent) else logging.WARNING,
            "%s; sent to %d of %d worker(s)%s",
            describe(reload, source), sum(sent), len(ready),
            f"; {not_ready} not ready: each gets them at its start" if not_ready else "",
        )  # fmt: skip

    def _dump_tasks(self) -> None:
        """This process's tasks, then each worker's (the same signal: ``task_dump.py``)."""
        log_tasks()
        self._signal_workers(signal.SIGUSR1)

    def _signal_workers(self, sig: signal.Signals) -> int:
        """Send ``sig`` to every worker that is up; how many."""
        ready = [w.process for w in self.workers if w.ready and w.process is not None]
        for process in (p for p in ready if p.returncode is None):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
        return len(ready)

    async def _serve(self) -> int:
        started = await asyncio.gather(
            *(self._start(w) for w in self.workers), return_exceptions=True
        )
        failed = [exc for exc in started if isinstance(exc, BaseException)]
        if self._stopping.is_set():  # SIGTERM during the start: not a failure
            await self._stop()
            return 0
        if failed:
            await self._stop()
            return _exit_code(failed)
        self._watchers = [
            asyncio.create_task(self._watch(w), name=w.role.name) for w in self.workers
        ]
        await self._write_ready()
        self._notifier.send(READY)
        self._watchers.append(asyncio.create_task(self._check_beats(), name="worker-beats"))
        await self._stopping.wait()
        self._notifier.send(STOPPING)
        await self._stop()
        return 0

    async def _write_ready(self) -> None:
        s, agi, http = self.settings, self._ports["agi_port"], self._ports["http_port"]
        if self.ready_file is not None:
            text = f"{agi} {http}\n"
            await asyncio.to_thread(self.ready_file.write_text, text, encoding="utf-8")
        log.info(
            "engine ready: %d workers, FastAGI %s:%s, HTTP %s:%s (worker 0)",
            len(self.workers), s.agi_host, agi, s.http_host, http,
        )  # fmt: skip

    async def _start(self, worker: Worker) -> None:
        """Start the worker's process; return once it says it takes calls (with the
        settings of a token reload made meanwhile)."""
        sent = self._worker_settings
        watch = self.settings.loop_watchdog_s > 0
        await start_worker(worker, sent, self._ledger, self._stopping, watch_beats=watch)
        if self._worker_settings != sent:
            await worker.send_settings(self._worker_settings)

    async def _watch(self, worker: Worker) -> None:
        """Restart the worker whenever it exits, until the engine stops."""
        while True:
            assert worker.process is not None
            pid, code = worker.process.pid, await worker.process.wait()
            if self._stopping.is_set():
                return
            delay = worker.backoff_after_death(time.monotonic())
            log.error(
                "%s (pid %d) exited unexpectedly (%s): its calls in progress were cut off "
                "(no IVR_OUTCOME: the dialplan's ivr-fail static menu); restarting it in %.0f s",
                worker.role.name, pid, describe_exit(code), delay,
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                await self._start(worker)
            except WorkerFailed as exc:
                log.error("restart failed: %s", exc)

    async def _check_beats(self) -> None:
        """Until the stop: ``WATCHDOG=1`` to systemd, and every ready worker that has not
        beaten for ``loop_watchdog_s`` killed (its watch restarts it). Off at 0."""
        timeout_s = self.settings.loop_watchdog_s
        if timeout_s == 0:
            return
        while not self._stopping.is_set():
            self._notifier.watchdog()
            for worker in self._silent(timeout_s):
                assert worker.process is not None
                log.error(
                    "%s (pid %d): no beat of its event loop for over %.1f s (loop_watchdog_s; "
                    "frozen or stopped): killing it, its calls get the dialplan's static menu",
                    worker.role.name, worker.process.pid, timeout_s,
                )  # fmt: skip
                worker.ready = False
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(beat_interval(timeout_s)):
                    await self._stopping.wait()

    def _silent(self, timeout_s: float) -> list[Worker]:
        watched = {
            w.role.name: w
            for w in self.workers
            if w.ready and w.beats is not None and w.process and w.process.returncode is None
        }
        beats = [(name, w.beats) for name, w in watched.items() if w.beats is not None]
        return [watched[name] for name, _ in silent_workers(beats, time.monotonic(), timeout_s)]

    async def _stop(self) -> None:
        """SIGTERM to every worker (each drains its calls); kill what is left after
        ``shutdown_grace_s`` + ``STOP_MARGIN_S``."""
        self._stopping.set()
        for task in list(self._reloads):
            task.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)
        running = [w.process for w in self.workers if w.process and w.process.returncode is None]
        log.info(
            "stopping: SIGTERM to %d worker(s), their calls in progress may finish", len(running)
        )
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        waiting = [*self._watchers, *(p.wait() for p in running)]
        stop_timeout_s = self.settings.shutdown_grace_s + STOP_MARGIN_S
        try:
            async with asyncio.timeout(stop_timeout_s):
                await asyncio.gather(*waiting)
        except TimeoutError:
            log.error("workers still running after %.0f s: killed", stop_timeout_s)
            for process in running:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await asyncio.gather(*(p.wait() for p in running))
        if self._ledger is not None:
            await self._ledger.aclose()
        for worker in self.workers:
            if worker.beats is not None:
                worker.beats.close()
        self._notifier.close()
        log.info("all workers stopped")


def _exit_code(failed: list[BaseException]) -> int:
    for exc in failed:
        log.error("engine not started: %s", exc)
    codes = [exc.returncode for exc in failed if isinstance(exc, WorkerFailed)]
    if EXIT_CONFIG in codes:
        return EXIT_CONFIG
    return 1 if failed else 0


async def run_supervisor(
    settings: Settings, ready_file: Path | None = None, source: SettingsSource | None = None
) -> int:
    """``ivr-engine run`` with ``workers`` > 1; the process's exit code. ``source``: where
    ``settings`` came from (SIGHUP reads the API's tokens from it again)."""
    watch_children_by_pidfd()
    return await Supervisor(settings, ready_file, source).run()

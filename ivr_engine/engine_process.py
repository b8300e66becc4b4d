"""The engine as a running process (``ivr-engine run``, or one worker of several): start it,
settle the heap, write the ready file, then run until SIGINT/SIGTERM (a second one ends the
stop's grace at once: ``stop_signals``); SIGHUP reloads the
menus and the HTTP API's tokens (``token_reload.py``), SIGUSR1 dumps the tasks
(``task_dump.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from ivr_engine.app import Engine
from ivr_engine.domain.errors import ConfigError
from ivr_engine.heap import settle_heap
from ivr_engine.loop_watchdog import LoopWatchdog
from ivr_engine.sd_notify import READY, STOPPING, Notifier
from ivr_engine.settings import Settings
from ivr_engine.task_dump import dump_tasks_on_sigusr1
from ivr_engine.token_reload import SettingsSource, describe, describe_unexpected
from ivr_engine.workers.role import WorkerRole

log = logging.getLogger(__name__)

# From the supervisor to its workers only: end the stop's grace now (its second stop signal).
END_GRACE_SIGNAL = signal.SIGUSR2


async def reload_logged(engine: Engine) -> bool:
    """``engine.reload_menus`` for a signal: the outcome is logged, never raised."""
    try:
        menus = await engine.reload_menus()
    except (ConfigError, OSError, ValueError) as exc:
        log.error("menus NOT reloaded, the ones in force stay: %s", exc)
        return False
    except Exception as exc:  # unexpected, but still a refused reload: said so, by type
        log.error("menus NOT reloaded, the ones in force stay: %s", describe_unexpected(exc))
        return False
    log.info(
        "menus reloaded: %s",
        ", ".join(f"{m.name} ({len(m.options)} options)" for m in menus.values()),
    )
    return True


async def reload_tokens_logged(engine: Engine, source: SettingsSource) -> bool:
    """``engine.reload_tokens`` for a signal: the outcome is logged (never a token), never
    raised."""
    try:
        reload = await engine.reload_tokens(source)
    except (ConfigError, OSError, ValueError) as exc:
        log.error("API tokens NOT reloaded, the ones in force stay: %s", exc)
        return False
    except Exception as exc:  # unexpected, but still a refused reload: said so, by type
        log.error("API tokens NOT reloaded, the ones in force stay: %s", describe_unexpected(exc))
        return False
    log.info("%s", describe(reload, source))
    return True


def stop_signals(engine: Engine, stop: asyncio.Event, *, worker: bool) -> Callable[[int], None]:
    """The handler of the stop signals: the first SIGTERM or SIGINT stops the engine
    (``stop``), a second one ends the stop's grace now (``Engine.end_grace``). A worker
    (``worker``) takes the end of its grace from its supervisor only (``END_GRACE_SIGNAL``):
    it gets SIGINT and SIGTERM twice on one stop (Ctrl-C reaches its whole process group,
    or a service manager signals every process, and the supervisor passes the stop on)."""

    def on_signal(sig: int) -> None:
        name = "the supervisor's" if sig == END_GRACE_SIGNAL else signal.Signals(sig).name
        if sig == END_GRACE_SIGNAL or (stop.is_set() and not worker):
            stop.set()
            cut = engine.end_grace()
            log.warning("second signal (%s): ending the grace now, %d call(s) cut", name, cut)
        elif stop.is_set():
            log.info("%s: already stopping (the supervisor says when to end the grace)", name)
        else:
            stop.set()

    return on_signal


async def run_engine(
    settings: Settings,
    ready_file: Path | None = None,
    *,
    role: WorkerRole | None = None,
    on_ready: Callable[[Engine], None] | None = None,
    load_link_fd: int | None = None,
    source: SettingsSource | None = None,
    follow: Callable[[Engine], Coroutine[Any, Any, None]] | None = None,
    beats: Sequence[Callable[[], None]] = (),
) -> None:
    """Run until SIGINT/SIGTERM; SIGHUP reloads the menus, and with ``source`` (where
    ``settings`` came from) the API's tokens. ``role``: one of several workers
    (``ivr_engine.workers``); ``on_ready``: called once the engine takes calls;
    ``load_link_fd``: the worker's socket to the supervisor's load ledger; ``follow``: run
    once the engine is ready, until it stops (a worker's settings from its supervisor);
    ``beats``: called at each beat of the loop watchdog (a worker's beat to its supervisor).
    With ``NOTIFY_SOCKET`` set (systemd), READY/WATCHDOG/STOPPING go there (``sd_notify.py``)."""
    engine = Engine(settings)
    engine.role = role
    engine.load_link_fd = load_link_fd
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    on_stop_signal = stop_signals(engine, stop, worker=role is not None)
    for sig in (signal.SIGINT, signal.SIGTERM, *((END_GRACE_SIGNAL,) if role is not None else ())):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_stop_signal, sig)
    reloads: set[asyncio.Task[Any]] = set()

    def keep(task: asyncio.Task[Any]) -> None:
        reloads.add(task)
        task.add_done_callback(ended)

    def ended(task: asyncio.Task[Any]) -> None:
        """A reload or the settings follower that failed is said at once (not by the
        collector, some time later, as "never retrieved"): by type and place only."""
        reloads.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s task ended: %s", task.get_name(), describe_unexpected(exc))

    def on_sighup() -> None:
        keep(loop.create_task(reload_logged(engine), name="menu-reload"))
        if source is not None:
            keep(loop.create_task(reload_tokens_logged(engine, source), name="token-reload"))

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    dump_tasks_on_sigusr1()
    try:
        await engine.start()
    except BaseException:
        await engine.stop()  # what started (threads, pools) must not keep the process alive
        raise
    settle_heap()
    notifier = Notifier()
    watchdog = arm_watchdog(settings, [*beats, notifier.watchdog])
    try:
        if ready_file is not None:
            assert engine.agi is not None
            ports = f"{engine.agi.port} {engine.http_port}\n"
            await asyncio.to_thread(ready_file.write_text, ports, encoding="utf-8")
        if on_ready is not None:
            on_ready(engine)
        notifier.send(READY)
        if follow is not None:
            keep(loop.create_task(follow(engine), name="follow-settings"))
        await stop.wait()
        notifier.send(STOPPING)
        engine.stop_accepting()
        log.info(
            "stopping: no new calls; %d call(s) in progress may finish within %.1f s",
            engine.active_calls,
            settings.shutdown_grace_s,
        )
    finally:
        for task in list(reloads):  # a reload still running must not outlive the engine
            task.cancel()
        await asyncio.gather(*reloads, return_exceptions=True)
        try:
            await engine.stop()  # async: the loop beats on through the drain
        finally:
            if watchdog is not None:
                watchdog.stop()
            notifier.close()
    log.info("engine stopped")


def arm_watchdog(settings: Settings, beats: list[Callable[[], None]]) -> LoopWatchdog | None:
    """The loop watchdog started (``loop_watchdog_s``), or None when it is 0 (off: no beats,
    so none to a supervisor or systemd either, which then watch nothing)."""
    if settings.loop_watchdog_s == 0:
        log.warning("loop_watchdog_s is 0: a stuck event loop leaves its callers in silence")
        return None
    watchdog = LoopWatchdog(settings.loop_watchdog_s, on_beat=beats)
    watchdog.start()
    return watchdog

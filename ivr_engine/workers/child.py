"""One engine worker process, started by the supervisor (``supervisor.py``), never by hand:

    python -m ivr_engine.workers.child INDEX COUNT SUPERVISOR_PID LOAD_LINK_FD BEAT_FD  < settings

The settings come on stdin as one JSON line, already validated by the supervisor (secrets
included: they never appear in the command line, the environment or a file). The pipe stays
open: after a token reload (SIGHUP) the supervisor sends the new settings there, one line
each, and the worker puts their HTTP API tokens in force (``follow_supervisor``). A line that
holds no settings is logged, never its content, and skipped (a first one: the worker says
``refused``); the end of the pipe ends the reloads, not the worker. Once the engine takes
calls the worker writes one line ``ready AGI_PORT HTTP_PORT`` to stdout (``-`` for no HTTP),
then points its stdout at stderr. It logs to stderr with its index. If the supervisor dies,
the kernel sends the worker SIGTERM (Linux ``PR_SET_PDEATHSIG``): it drains its calls and
exits instead of serving on unsupervised. ``LOAD_LINK_FD`` is the worker's end of its socket
to the supervisor's load ledger (``load_ledger.py``), ``-`` for none (no agents).
``BEAT_FD`` is the write end of a pipe to the supervisor: one byte per beat of the loop
watchdog (``loop_watchdog.py``), so the supervisor sees a worker frozen whole (``SIGSTOP``)
and replaces it; ``-`` for none.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import IO, Any

from pydantic import SecretStr, ValidationError

from ivr_engine.app import Engine
from ivr_engine.domain.errors import ConfigError
from ivr_engine.engine_process import run_engine
from ivr_engine.settings import Settings, problem
from ivr_engine.workers.role import WorkerRole

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
EXIT_CONFIG = 2  # as ``ivr-engine``: a configuration error, nothing to restart for
REFUSED = "refused"  # the line a worker sends instead of "ready" for a configuration error
EXIT_ORPHANED = 3
NO_LINK = "-"  # LOAD_LINK_FD when the engine has no load view (no agents_file)
MAX_SETTINGS_LINE = 1 << 20


def settings_json(settings: Settings) -> str:
    """The settings as the worker reads them back (``Settings.model_validate``), secrets in
    clear: this text goes only down the worker's stdin pipe."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return str(value)  # Path

    return json.dumps(settings.model_dump(), default=plain)


def announce(engine: Engine) -> None:
    """Tell the supervisor this worker takes calls, then stop writing to the pipe."""
    assert engine.agi is not None
    http = str(engine.http_port) if engine.http is not None else "-"
    sys.stdout.write(f"ready {engine.agi.port} {http}\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


async def follow_supervisor(engine: Engine, pipe: IO[Any] | None = None) -> None:
    """The settings the supervisor sends after a token reload (``pipe``: stdin): their tokens
    in force, until the pipe closes. A line that holds no settings (not JSON, not valid
    settings, over ``MAX_SETTINGS_LINE``, cut short by the end of the pipe) is logged, never
    its content, and skipped: the tokens in force stay and the next line is read. The end of
    the pipe ends this (logged); the engine goes on serving calls."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_SETTINGS_LINE)
    protocol = asyncio.StreamReaderProtocol(reader)
    source = sys.stdin if pipe is None else pipe
    transport, _ = await loop.connect_read_pipe(lambda: protocol, source)
    try:
        while (line := await next_line(reader)) != b"":
            try:
                settings = settings_from_line(line)
            except BadSettingsLine as exc:  # a bug between supervisor and worker: say so, go on
                log.error(
                    "settings line from the supervisor skipped, the tokens in force stay: %s", exc
                )
                continue
            engine.use_tokens(settings)
            log.info(
                "API tokens in force (from the supervisor's reload): %d API token(s), "
                "admin_token %s",
                len(settings.api_tokens),
                "set" if settings.admin_token is not None else "not set",
            )
        log.warning(
            "the supervisor's settings pipe (stdin) is closed: no token reload can reach this "
            "worker any more; the tokens in force stay"
        )
    finally:
        transport.close()


async def next_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line, with its newline; at the end of the pipe the bytes left (b"" if none);
    None for a line over the reader's limit, read to its end and dropped as a whole (its
    tail is no line of its own). Each pass takes what is buffered or waits for more."""
    too_long = False
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            line = exc.partial
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
            too_long = True
            continue
        return None if too_long else line


class BadSettingsLine(Exception):
    """A line from the supervisor that holds no settings: the message says why, never with
    the line's content (it holds tokens)."""


def settings_from_line(line: bytes | None) -> Settings:
    """The settings of one line from the supervisor (``next_line``), else ``BadSettingsLine``."""
    if line is None:
        raise BadSettingsLine(f"longer than {MAX_SETTINGS_LINE} bytes")
    size = f"{len(line)} bytes"
    if not line.endswith(b"\n"):
        raise BadSettingsLine(f"{size}, cut short by the end of the pipe (no newline)")
    try:
        return Settings.model_validate(json.loads(line))
    except ValidationError as exc:
        why = f"not valid settings: {describe_invalid(exc)}"
    except RecursionError:
        why = "not JSON: nested too deeply"
    except UnicodeDecodeError as exc:
        why = f"not UTF-8 text (byte {exc.start})"
    except json.JSONDecodeError as exc:
        why = f"not JSON: {exc.msg} (character {exc.pos})"
    except ValueError as exc:  # json's own limits (an integer of too many digits)
        why = f"not JSON ({type(exc).__name__})"
    raise BadSettingsLine(f"{size}, {why}")


def describe_invalid(exc: ValidationError, most: int = 5) -> str:
    """The settings named and what is wrong, as ``load_settings`` says it; never a value,
    nor a key that is no setting (it could be anything)."""
    said = []
    for error in exc.errors(include_url=False, include_input=False)[:most]:
        loc = error["loc"]
        if error["type"] == "extra_forbidden":
            said.append("a key that is no setting")
            continue
        if not loc:
            key = str(error.get("ctx", {}).get("key", "<top>"))
        else:
            key = str(loc[0]) if loc[0] in Settings.model_fields else "?"
        said.append(f"{key}: {problem(error)}")
    more = exc.error_count() - most
    return "; ".join(said) + (f"; and {more} more" if more > 0 else "")


def beat_to(fd: int) -> Callable[[], None]:
    """One byte down the supervisor's beat pipe, never waited for: a full pipe (the
    supervisor reads later) or a closed one (it is gone) drops the beat."""
    os.set_blocking(fd, False)

    def beat() -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(fd, b".")

    return beat


def _die_with(parent: int) -> None:
    """SIGTERM when the supervisor goes, however it goes (Linux); gone already: exit."""
    name = ctypes.util.find_library("c")
    if name is not None and sys.platform.startswith("linux"):
        ctypes.CDLL(name, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(EXIT_ORPHANED)


def main(argv: list[str]) -> int:
    index, count, parent = (int(arg) for arg in argv[:3])
    link = argv[3] if len(argv) > 3 else NO_LINK
    beat_fd = argv[4] if len(argv) > 4 else NO_LINK
    _die_with(parent)
    role = WorkerRole(index, count)
    try:
        settings = settings_from_line(sys.stdin.buffer.readline())
    except BadSettingsLine as exc:  # said without the line: it holds secrets
        print(f"settings from the supervisor not read ({role.name}): {exc}", file=sys.stderr)
        sys.stdout.write(f"{REFUSED}\n")
        sys.stdout.flush()
        return EXIT_CONFIG
    fmt = f"%(asctime)s %(levelname)s [{role.name} pid {os.getpid()}] %(name)s: %(message)s"
    logging.basicConfig(level=settings.log_level, format=fmt)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        link_fd = None if link == NO_LINK else int(link)
        asyncio.run(
            run_engine(
                settings,
                role=role,
                on_ready=announce,
                load_link_fd=link_fd,
                follow=follow_supervisor,
                beats=() if beat_fd == NO_LINK else (beat_to(int(beat_fd)),),
            )
        )
    except ConfigError as exc:
        print(f"configuration error ({role.name}):\n{exc}", file=sys.stderr)
        # Said on the pipe too: the supervisor must not depend on the exit status, which
        # Python 3.11's child watchers can misreport (255) when two workers exit at once.
        sys.stdout.write(f"{REFUSED}\n")
        sys.stdout.flush()
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

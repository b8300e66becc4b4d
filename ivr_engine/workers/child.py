"""One engine worker process, started by the supervisor (``supervisor.py``), never by hand:

    python -m ivr_engine.workers.child INDEX COUNT SUPERVISOR_PID LOAD_LINK_FD  < settings JSON

The settings come on stdin as one JSON line, already validated by the supervisor (secrets
included: they never appear in the command line, the environment or a file). The pipe stays
open: after a token reload (SIGHUP) the supervisor sends the new settings there, one line
each, and the worker puts their HTTP API tokens in force (``follow_supervisor``). Once the
engine takes calls the worker writes one line ``ready AGI_PORT HTTP_PORT`` to stdout (``-``
for no HTTP), then points its stdout at stderr. It logs to stderr with its index. If the
supervisor dies, the kernel sends the worker SIGTERM (Linux ``PR_SET_PDEATHSIG``): it drains
its calls and exits instead of serving on unsupervised. ``LOAD_LINK_FD`` is the worker's end
of its socket to the supervisor's load ledger (``load_ledger.py``), ``-`` for none (no
agents).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import sys
from typing import Any

from pydantic import SecretStr

from ivr_engine.app import Engine
from ivr_engine.domain.errors import ConfigError
from ivr_engine.engine_process import run_engine
from ivr_engine.settings import Settings
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


async def follow_supervisor(engine: Engine) -> None:
    """The settings the supervisor sends after a token reload: their tokens in force, until
    the pipe closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_SETTINGS_LINE)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_read_pipe(lambda: protocol, sys.stdin)
    try:
        while line := await reader.readline():
            try:
                settings = Settings.model_validate(json.loads(line))
            except ValueError as exc:  # a bug between supervisor and worker: say so, go on
                log.error("settings from the supervisor not read: %s", type(exc).__name__)
                continue
            engine.use_tokens(settings)
            log.info(
                "API tokens in force (from the supervisor's reload): %d API token(s), "
                "admin_token %s",
                len(settings.api_tokens),
                "set" if settings.admin_token is not None else "not set",
            )
    finally:
        transport.close()


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
    _die_with(parent)
    role = WorkerRole(index, count)
    settings = Settings.model_validate(json.loads(sys.stdin.readline()))
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

#!/usr/bin/env python3
"""Classic (process-per-call) AGI entry for PBXs where FastAGI cannot be used.

Dialplan: ``AGI(/usr/share/asterisk/agi-bin/ivr_agi.py,menu=main)``. It runs the same call
flow as the FastAGI server, over stdin/stdout, on the same protocol layer. Costlier: a Python
start-up per call (measured in bench/results.md); prefer FastAGI.

Settings come from ``IVR_ENGINE_*`` environment variables and ``IVR_ENGINE_CONFIG`` (a YAML
settings file). Logs go to stderr (stdout is the AGI channel). It imports only the call
path: the raw-driver lookup and writer (``open_call_path``), not SQLAlchemy, Alembic, the
HTTP API or the desktop, nor asyncpg on SQLite (a test checks), and does not migrate the
database: run ``ivr-engine migrate`` once, as for the FastAGI engine. The settings and
menus are validated (pydantic, PyYAML) by the first process after they change, which caches
the result in the spool directory; the next processes read that back without pydantic
(``ivr_engine/classic_config.py``). A call that cannot be written (the database is down) is
spooled, and written by a later call's process.
"""

from __future__ import annotations

from ivr_engine.telephony.hangup_signal import catch_hangup

# First, before the imports below take their time: a caller who hangs up now is a call
# recorded as abandoned, not a process killed by SIGHUP's default action (a lost call).
HANGUP = catch_hangup() if __name__ == "__main__" else None  # not in a process importing it

import asyncio  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from ivr_engine.classic_config import load_call_config  # noqa: E402
from ivr_engine.domain.errors import ConfigError  # noqa: E402
from ivr_engine.flows.ivr_flow import IvrFlow  # noqa: E402
from ivr_engine.flows.recorder import CallRecorder  # noqa: E402
from ivr_engine.telephony.agi import AgiChannel, AgiRequest, run_stdio_agi  # noqa: E402
from ivr_engine.telephony.ivr_handler import incoming_call  # noqa: E402
from ivr_engine.timeline.call_path import open_call_path  # noqa: E402


def utc_now() -> datetime:
    return datetime.now(UTC)


async def main() -> None:
    settings, menus = load_call_config(os.environ)  # cached; prompts: `ivr-engine check-config`
    # No migration per call: run `ivr-engine migrate` once (the FastAGI engine's start does).
    timeline = open_call_path(settings.database_url)
    # No store: first-time callers are created through the raw writer too.
    recorder = CallRecorder(
        None,
        settings.spool_dir,
        fast=timeline.writer,
        max_line_bytes=settings.spool_max_line_bytes,
    )
    await recorder.start(spool_required=False)  # the caller waits: no spool is no reason to drop
    flow = IvrFlow(
        menus=menus,
        lookup=timeline.lookup,
        sink=recorder,
        clock=utc_now,
        decision_deadline_s=settings.decision_deadline_ms / 1000,
        default_region=settings.default_region,
        country_code_without_plus=settings.caller_id_country_code_without_plus,
        use_withheld_caller_id=settings.use_withheld_caller_id,
    )

    async def handle(request: AgiRequest, channel: AgiChannel) -> None:
        menu = request.args[0].removeprefix("menu=") if request.args else "main"
        await flow.run(incoming_call(request, utc_now(), menu=menu), channel)

    try:
        await run_stdio_agi(handle, hangup=HANGUP)
    finally:
        await recorder.close()
        await timeline.close()


def run() -> int:
    """The process's exit code. A configuration error is one line on stderr (Asterisk's
    console), not a traceback; the dialplan sees no IVR_OUTCOME and plays its static menu."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        asyncio.run(main())
    except ConfigError as exc:
        logging.getLogger("ivr_agi").error("configuration error, static menu: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run())

"""The project's commands as child processes: the ``ivr-engine`` command, and the classic
(stdin/stdout) AGI script answering one call as Asterisk runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.component.fake_asterisk import asterisk_env, header_block

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "ivr_engine"]
CLASSIC_SCRIPT = REPO / "agi_scripts/ivr_agi.py"
# Asterisk's replies to a call that presses 1: EXEC Read (the menu), GET FULL VARIABLE (key 1),
# EXEC MSet (intent, target, customer, decision, outcome).
PRESSES_1 = b"200 result=0\n200 result=1 (1|OK)\n200 result=0\n"


async def start(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """``argv`` started in the repository with ``env`` on top of this process's environment;
    its stdin, stdout and stderr are pipes."""
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes = b"",
    limit_s: float = 60,
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``argv`` run as ``start`` runs it, ``stdin`` its input."""
    proc = await start(argv, env=env)
    async with asyncio.timeout(limit_s):
        out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def classic_headers(
    caller_id: str = "+15551230001", *, args: Sequence[str] = ("menu=main",)
) -> dict[str, str]:
    """The header block Asterisk 22 sends for ``AGI(/usr/share/asterisk/agi-bin/ivr_agi.py,
    <args>)`` (a local script: no ``agi_network``)."""
    headers = asterisk_env("unused", 0, caller_id=caller_id, args=args)
    del headers["agi_network"], headers["agi_network_script"]
    headers["agi_request"] = "/usr/share/asterisk/agi-bin/ivr_agi.py"
    return headers


async def run_classic_call(
    env: Mapping[str, str],
    caller_id: str,
    *,
    replies: bytes = PRESSES_1,
    argv: Sequence[str] = (sys.executable, str(CLASSIC_SCRIPT)),
) -> tuple[int, str, str]:
    """(exit code, the AGI commands it sent, stderr) of the classic AGI script (or ``argv``
    running it) taking a call from ``caller_id``: the settings ``env`` (``IVR_ENGINE_*``) on
    top of this process's environment, Asterisk's headers then ``replies`` on its stdin."""
    return await run(
        argv,
        env={**env, "PYTHONPATH": str(REPO)},
        stdin=header_block(classic_headers(caller_id)) + replies,
    )

"""The tests' inline FastAGI server (``test_testbed_smoke.InlineFastAgi``) tells a session that
never arrived (its own TimeoutError) from one whose script raised, here a read that timed out."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from sipp import run_sipp_call
from test_testbed_smoke import AgiSession, InlineFastAgi, ScriptFailed, assert_sipp_ok

if TYPE_CHECKING:
    from conftest import Testbed  # the `asterisk` fixture's type (annotations only)


async def test_a_script_that_times_out_is_not_a_missing_session(asterisk: Testbed) -> None:
    caller = "+15551230051"

    async def script(agi: AgiSession) -> None:
        await agi.read_line(timeout_s=0.2)  # Asterisk sends nothing before a command

    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call(caller_id=caller, hangup_after_ms=1500))
        with pytest.raises(ScriptFailed) as failed:
            await server.finished_session()
        result = await call

    assert not isinstance(failed.value, TimeoutError)
    assert isinstance(failed.value.__cause__, TimeoutError)
    assert f"caller {caller} raised TimeoutError()" in str(failed.value)
    assert_sipp_ok(result)

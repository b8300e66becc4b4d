"""Stopping the engine with a call still in its menu, through a real Asterisk 22: once
``shutdown_grace_s`` is over the engine queues ``SET VARIABLE IVR_OUTCOME failed`` on the call
and closes it; Asterisk runs it after the ``Read`` the caller is in, and the dialplan plays
its static menu (``ivr-fail``, whose ``IvrFallback`` event reports the outcome). Before, the
connection was only closed: ``IVR_OUTCOME`` stayed empty."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ami import AmiClient, Message
from conftest import Testbed
from engine_harness import engine_settings
from sipp import run_sipp_call

from ivr_engine.app import Engine


async def test_a_call_in_its_menu_when_the_engine_stops_gets_the_static_menu(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551240091"
    settings = engine_settings(f"sqlite:///{tmp_path / 'timeline.db'}", tmp_path / "spool")
    engine = Engine(settings.model_copy(update={"shutdown_grace_s": 1.0}))
    await engine.start()
    try:  # a caller who presses nothing, through the whole menu (~15 s) and its timeout
        call = asyncio.create_task(run_sipp_call([], caller_id=caller, hangup_after_ms=40000))

        def menu_read(event: Message) -> bool:
            return (
                event.get("Event") == "AGIExecStart"
                and event.get("CallerIDNum") == caller
                and event.get("Command", "").startswith('EXEC "Read"')
            )

        await ami.wait_for(menu_read, timeout_s=15)
    finally:
        await engine.stop()  # what SIGTERM runs: the grace, then the call is ended as failed
    fallback = await ami.wait_for_event(
        "UserEvent", UserEvent="IvrFallback", CallerIDNum=caller, timeout_s=40
    )
    await call
    assert fallback["Outcome"] == "failed"

"""Once started, the engine hides its start-up objects from the cyclic collector, so a full
collection during calls does not walk them (and stall every call in progress)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from ivr_engine import app


def test_settle_heap_freezes_what_start_up_left() -> None:
    # in a child process: freezing the test runner's own heap would outlive the test
    code = (
        "import gc, ivr_engine.app as a; before = gc.get_freeze_count(); a.settle_heap(); "
        "print(before, gc.get_freeze_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert before == 0
    assert after > 10_000  # the modules, classes and objects an imported engine holds


async def test_run_engine_settles_the_heap_after_start_and_before_serving_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: list[str] = []

    class StartedEngine:
        agi = None

        def __init__(self, settings: object) -> None:
            pass

        async def start(self) -> None:
            steps.append("start")
            asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)

        async def stop(self) -> None:
            steps.append("stop")

    monkeypatch.setattr(app, "Engine", StartedEngine)
    monkeypatch.setattr(app, "settle_heap", lambda: steps.append("settle"))
    await app.run_engine(None)  # type: ignore[arg-type]
    assert steps == ["start", "settle", "stop"]

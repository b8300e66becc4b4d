"""``run_engine``: once started, the engine hides its start-up objects from the cyclic
collector (a full collection during calls does not walk them and stall every call in
progress); SIGHUP reloads the menus; SIGTERM stops it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from typing import ClassVar

import pytest

from ivr_engine import engine_process
from ivr_engine.domain.errors import ConfigError
from ivr_engine.heap import BRIDGE_YOUNG_THRESHOLD
from ivr_engine.settings import Settings


def test_settle_heap_freezes_what_start_up_left() -> None:
    # in a child process: freezing the test runner's own heap would outlive the test
    code = (
        "import gc, ivr_engine.app; from ivr_engine.heap import settle_heap; "
        "before, default = gc.get_freeze_count(), gc.get_threshold()[0]; settle_heap(); "
        "print(before, gc.get_freeze_count(), default, gc.get_threshold()[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after, default, young = map(int, out.stdout.split())
    # 3.12.1 starts with a few hundred objects frozen already; 3.13's default threshold is 2000
    assert after > before + 10_000  # the modules, classes and objects an imported engine holds
    assert young == default  # the engine keeps Python's default young threshold


def test_the_bridge_process_settles_with_a_higher_young_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crm_bridge.calls import service

    settled: list[int | None] = []

    class StartedBridge:
        def __init__(self, settings: object) -> None:
            pass

        async def __aenter__(self) -> StartedBridge:
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

        async def wait(self) -> None:
            pass

    monkeypatch.setattr(service, "Bridge", StartedBridge)
    monkeypatch.setattr(service, "settle_heap", settled.append)
    asyncio.run(service.run_bridge(None, tune_gc=True))  # type: ignore[arg-type]
    asyncio.run(service.run_bridge(None))  # type: ignore[arg-type]  # a library caller
    assert settled == [BRIDGE_YOUNG_THRESHOLD]


def test_both_bridge_entry_points_tune_the_gc() -> None:
    """``ivr-engine bridge`` and ``python -m crm_bridge.calls`` own their process."""
    import inspect

    import crm_bridge.calls.__main__ as bridge_main
    import ivr_engine.cli as cli

    for module in (bridge_main, cli):
        assert "tune_gc=True" in inspect.getsource(module), module.__name__


class ScriptedEngine:
    """Stands in for ``Engine``: records what ``run_engine`` asks of it; once started, the
    signals in ``SIGNALS`` (delay, signal) arrive."""

    SIGNALS: ClassVar[tuple[tuple[float, signal.Signals], ...]] = ((0.05, signal.SIGTERM),)
    steps: ClassVar[list[str]] = []
    agi = None
    active_calls = 0

    def __init__(self, settings: object) -> None:
        pass

    async def start(self) -> None:
        self.steps.append("start")
        for delay, sig in self.SIGNALS:
            asyncio.get_running_loop().call_later(delay, os.kill, os.getpid(), sig)

    async def reload_menus(self) -> dict[str, object]:
        self.steps.append("reload")
        if self.steps.count("reload") == 2:
            raise ConfigError("main.yaml: broken")  # logged; the engine goes on
        return {}

    def stop_accepting(self) -> None:
        pass

    async def stop(self) -> None:
        self.steps.append("stop")


async def run_scripted(
    monkeypatch: pytest.MonkeyPatch, *signals: tuple[float, signal.Signals]
) -> list[str]:
    steps: ClassVar[list[str]] = []
    engine = type("Scripted", (ScriptedEngine,), {"SIGNALS": signals, "steps": steps})
    monkeypatch.setattr(engine_process, "Engine", engine)
    monkeypatch.setattr(engine_process, "settle_heap", lambda: steps.append("settle"))
    await engine_process.run_engine(Settings())
    return steps


async def test_run_engine_settles_the_heap_after_start_and_before_serving_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = await run_scripted(monkeypatch, (0.05, signal.SIGTERM))
    assert steps == ["start", "settle", "stop"]


async def test_sighup_reloads_the_menus_and_the_engine_keeps_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hup = (0.05, signal.SIGHUP)
    steps = await run_scripted(monkeypatch, hup, hup, (0.3, signal.SIGTERM))
    assert steps == ["start", "settle", "reload", "reload", "stop"]


async def test_a_stopping_engine_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ivr_engine.engine_process"):
        await run_scripted(monkeypatch, (0.05, signal.SIGTERM))
    said = [r.getMessage() for r in caplog.records if r.name == "ivr_engine.engine_process"]
    assert said[-2:] == [
        "stopping: no new calls; 0 call(s) in progress may finish within 10.0 s",
        "engine stopped",
    ]


async def test_a_failed_settings_follower_is_said_at_once_without_its_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose settings follower dies keeps serving with the tokens in force; the
    log says so when it happens, by type and place (the message could quote a token)."""
    engine = type("Scripted", (ScriptedEngine,), {"SIGNALS": ((0.2, signal.SIGTERM),)})
    monkeypatch.setattr(engine_process, "Engine", engine)
    monkeypatch.setattr(engine_process, "settle_heap", lambda: None)

    async def follow(_engine: object) -> None:
        raise RuntimeError("api_tokens: tok-0123456789abcdef")

    with caplog.at_level(logging.ERROR, logger="ivr_engine.engine_process"):
        await engine_process.run_engine(Settings(), follow=follow)
    said = [r.getMessage() for r in caplog.records if r.name == "ivr_engine.engine_process"]
    assert len(said) == 1, said
    assert said[0].startswith("follow-settings task ended: unexpected RuntimeError (in ")
    assert "tok-0123456789abcdef" not in said[0]

"""A real engine on PostgreSQL given its password as ``?password=`` says 'engine ready'
without it; ``ivr-engine check-config`` names a mistyped agent_state_url without its
password."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ivr_engine.app import Engine
from ivr_engine.cli import main
from tests.component.test_ivr_flow import REPO, settings_for

SECRET = "hunter2-secret"


@pytest.mark.postgres
async def test_engine_ready_hides_a_query_password(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{pg_url}?password={SECRET}"  # trust auth: accepted, and it must not be shown
    engine = Engine(settings_for(url, tmp_path))
    with caplog.at_level(logging.INFO):
        await engine.start()
        await engine.stop()
    ready = [r.getMessage() for r in caplog.records if "engine ready" in r.getMessage()]
    assert len(ready) == 1 and "password=***" in ready[0], ready
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_check_config_hides_the_password_of_a_mistyped_agent_state_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IVR_ENGINE_MENUS_DIR", str(REPO / "config/menus"))
    monkeypatch.setenv("IVR_ENGINE_SOUNDS_DIR", str(REPO / "prompts/en"))
    monkeypatch.setenv("IVR_ENGINE_AGENTS_FILE", str(REPO / "config/agents.yaml"))
    monkeypatch.setenv("IVR_ENGINE_ROUTING_FILE", str(REPO / "config/routing.yaml"))
    monkeypatch.setenv("IVR_ENGINE_AGENT_STATE_URL", f"reds://:{SECRET}@10.0.0.9:6379/0")
    assert main(["check-config"]) == 2
    out = capsys.readouterr()
    said = "agent_state_url (env IVR_ENGINE_AGENT_STATE_URL): 'reds://:***@10.0.0.9:6379/0'"
    assert said in out.err + out.out  # refused as the settings load
    assert SECRET not in out.err + out.out

"""API tokens rotated on a running engine: SIGHUP re-reads ``api_tokens`` and ``admin_token``
from the settings' sources (the file again; the environment and command line as they were),
checks them like at start-up and puts them in force for the next request. A real engine
(SQLite timeline, HTTP API on a real port), what SIGHUP runs (``reload_tokens_logged``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest
import yaml

from ivr_engine.app import Engine
from ivr_engine.engine_process import reload_tokens_logged
from ivr_engine.settings import Settings
from ivr_engine.token_reload import SettingsSource
from tests.component.test_agents_management_api import NEW_AGENT
from tests.component.test_ivr_flow import REPO

TOKEN_A = "token-a-" + "a" * 40
TOKEN_B = "token-b-" + "b" * 40
ADMIN_A = "admin-a-" + "c" * 40
ADMIN_B = "admin-b-" + "d" * 40
ENV_TOKEN = "token-env-" + "e" * 40
PREVIEW = "/v1/menu-preview?phone=%2B15550100001&menu=main"


def write_config(path: Path, base: Mapping[str, object], **tokens: object) -> None:
    path.write_text(yaml.safe_dump({**base, **tokens}), encoding="utf-8")


def write_broken(path: Path, base: Mapping[str, object], tail: str) -> None:
    path.write_text(yaml.safe_dump(dict(base)) + tail, encoding="utf-8")


@pytest.fixture
def base(sqlite_url: str, tmp_path: Path) -> dict[str, object]:
    return {
        "database_url": sqlite_url,
        "agi_port": 0,
        "http_port": 0,
        "menus_dir": str(REPO / "config/menus"),
        "sounds_dir": str(REPO / "prompts/en"),
        "spool_dir": str(tmp_path / "spool"),
    }


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "engine.yaml"


@pytest.fixture
async def engines() -> AsyncIterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        await engine.stop()


async def start(engines: list[Engine], source: SettingsSource) -> Engine:
    engine = Engine(source.load())
    engines.append(engine)
    await engine.start()
    return engine


async def status(engine: Engine, token: str | None, path: str = PREVIEW) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{engine.http_port}") as http,
        http.get(path, headers=headers) as response,
    ):
        return response.status


async def test_a_reload_puts_the_files_new_token_in_force_and_the_old_one_out(
    engines: list[Engine], config: Path, base: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    write_config(config, base, api_tokens=[TOKEN_A])
    engine = await start(engines, SettingsSource(config, environ={}))
    assert (await status(engine, TOKEN_A), await status(engine, TOKEN_B)) == (200, 401)
    write_config(config, base, api_tokens=[TOKEN_B], decision_deadline_ms=300)
    with caplog.at_level(logging.INFO):
        assert await reload_tokens_logged(engine, SettingsSource(config, environ={}))
    assert await status(engine, TOKEN_B) == 200
    assert await status(engine, TOKEN_A) == 401
    assert await status(engine, None) == 401
    assert "API tokens reloaded" in caplog.text
    # the other settings in the file are checked, not applied: a restart applies them
    assert engine.settings.decision_deadline_ms == 150
    assert "decision_deadline_ms" in caplog.text and "restart" in caplog.text
    assert TOKEN_A not in caplog.text and TOKEN_B not in caplog.text


async def test_an_invalid_file_keeps_the_tokens_in_force_and_logs_the_file_and_key(
    engines: list[Engine], config: Path, base: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    write_config(config, base, api_tokens=[TOKEN_A])
    source = SettingsSource(config, environ={})
    engine = await start(engines, source)
    weak = "short-but-secret"
    write_config(config, base, api_tokens=[TOKEN_B, weak])
    with caplog.at_level(logging.INFO):
        assert not await reload_tokens_logged(engine, source)
    assert await status(engine, TOKEN_A) == 200
    assert await status(engine, TOKEN_B) == 401
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert str(config) in errors[0] and "api_tokens" in errors[0] and "token 2 of 2" in errors[0]
    # a file that is not even YAML, broken on the token's own line
    write_broken(config, base, f'api_tokens: ["{TOKEN_B}\n')
    assert not await reload_tokens_logged(engine, source)
    assert await status(engine, TOKEN_A) == 200
    for secret in (TOKEN_A, TOKEN_B, weak):
        assert secret[:12] not in caplog.text


async def test_removing_every_token_is_refused_and_the_api_stays_protected(
    engines: list[Engine], config: Path, base: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """On loopback the start-up rules would allow an open API; a reload still does not open a
    protected one (a restart does)."""
    write_config(config, base, api_tokens=[TOKEN_A])
    source = SettingsSource(config, environ={})
    engine = await start(engines, source)
    for emptied in ({}, {"api_tokens": []}):
        write_config(config, base, **emptied)
        assert not await reload_tokens_logged(engine, source)
        assert await status(engine, None) == 401
        assert await status(engine, TOKEN_A) == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(str(config) in e and "api_tokens" in e and "restart" in e for e in errors)


async def test_the_admin_token_is_reloaded_too(
    engines: list[Engine], config: Path, base: dict[str, object], tmp_path: Path
) -> None:
    agents = {
        "agents_file": str(REPO / "config/agents.yaml"),
        "routing_file": str(REPO / "config/routing.yaml"),
        "desktop_secure_cookie": False,
    }
    write_config(config, {**base, **agents}, api_tokens=[TOKEN_A], admin_token=ADMIN_A)
    source = SettingsSource(config, environ={})
    engine = await start(engines, source)
    write_config(config, {**base, **agents}, api_tokens=[TOKEN_A], admin_token=ADMIN_B)
    assert await reload_tokens_logged(engine, source)
    base_url = f"http://127.0.0.1:{engine.http_port}"
    async with aiohttp.ClientSession(base_url=base_url) as http:
        old = {"Authorization": f"Bearer {ADMIN_A}"}
        async with http.post("/v1/agents", json=NEW_AGENT, headers=old) as response:
            assert response.status == 401
        new = {"Authorization": f"Bearer {ADMIN_B}"}
        async with http.post("/v1/agents", json=NEW_AGENT, headers=new) as response:
            assert response.status == 201, await response.text()
    assert await status(engine, ADMIN_B) == 200  # accepted wherever an API token is
    assert await status(engine, ADMIN_A) == 401


async def test_a_token_from_the_environment_stays_as_it_was(
    engines: list[Engine], config: Path, base: dict[str, object]
) -> None:
    """The environment beats the file, and a running process's environment does not change."""
    write_config(config, base, api_tokens=[TOKEN_A])
    source = SettingsSource(config, environ={"IVR_ENGINE_API_TOKENS": ENV_TOKEN})
    engine = await start(engines, source)
    write_config(config, base, api_tokens=[TOKEN_B])
    assert await reload_tokens_logged(engine, source)
    assert (await status(engine, ENV_TOKEN), await status(engine, TOKEN_B)) == (200, 401)


async def test_an_open_api_can_be_given_tokens_by_a_reload(
    engines: list[Engine], config: Path, base: dict[str, object]
) -> None:
    write_config(config, base)
    source = SettingsSource(config, environ={})
    engine = await start(engines, source)
    assert await status(engine, None) == 200
    write_config(config, base, api_tokens=[TOKEN_A])
    assert await reload_tokens_logged(engine, source)
    assert (await status(engine, None), await status(engine, TOKEN_A)) == (401, 200)


async def test_a_value_yaml_cannot_build_is_a_refused_reload_named_by_file_and_line(
    engines: list[Engine], config: Path, base: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """``!!timestamp`` on a token's line: PyYAML's constructor raises AttributeError, not a
    YAML error; still a refused reload, logged, and the tokens in force stay."""
    write_config(config, base, api_tokens=[TOKEN_A])
    source = SettingsSource(config, environ={})
    engine = await start(engines, source)
    write_broken(config, {**base, "api_tokens": [TOKEN_A]}, f"admin_token: !!timestamp {ADMIN_B}\n")
    with caplog.at_level(logging.INFO):
        assert not await reload_tokens_logged(engine, source)
    assert await status(engine, TOKEN_A) == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert "API tokens NOT reloaded" in errors[0] and str(config) in errors[0]
    assert "a !!timestamp value cannot be built (AttributeError) (line " in errors[0]
    assert ADMIN_B[:12] not in caplog.text


class _FailingSource(SettingsSource):
    """A source whose reading fails in a way no check expects (no real file does that since
    ``load_yaml`` turns every constructor failure into a YAML error): the handler's last
    line of defence, with a token in the exception's message."""

    def load(self) -> Settings:
        raise TypeError(f"surprise, with {TOKEN_B} in it")


async def test_any_exception_of_a_reload_is_a_refused_reload_logged_by_type_only(
    engines: list[Engine], config: Path, base: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    write_config(config, base, api_tokens=[TOKEN_A])
    engine = await start(engines, SettingsSource(config, environ={}))
    with caplog.at_level(logging.INFO):
        assert not await reload_tokens_logged(engine, _FailingSource(config, environ={}))
    assert await status(engine, TOKEN_A) == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert errors[0].startswith("API tokens NOT reloaded, the ones in force stay: unexpected ")
    assert "TypeError (in " in errors[0] and "load" in errors[0]
    assert TOKEN_B[:12] not in caplog.text

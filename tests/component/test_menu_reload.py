"""Menus edited on a running engine: ``reload_menus`` (SIGHUP) puts them in force for the next
call after the same checks as at start-up; menus that fail a check are refused and the ones
in force stay. Real FastAGI socket, real SQLite timeline, the repo's menus and prompts."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ivr_engine.app import Engine
from ivr_engine.domain.errors import ConfigError
from ivr_engine.engine_process import reload_logged
from tests.component.test_agents_management_api import start_engine as start_contact_centre
from tests.component.test_ivr_flow import REPO, call, labels, settings_for

DEFAULT_ORDER = ["new-service", "tech-support", "moving", "outage", "cancel", "billing", "operator"]


@pytest.fixture
def menus_dir(tmp_path: Path) -> Path:
    target = tmp_path / "menus"
    shutil.copytree(REPO / "config/menus", target)
    return target


def edit(menus_dir: Path, old: str, new: str) -> None:
    path = menus_dir / "main.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def without_moving(menus_dir: Path) -> None:
    """The sample menu with its ``moving`` option removed."""
    path = menus_dir / "main.yaml"
    text = path.read_text()
    start = text.index("  - intent: moving")
    end = text.index("  - intent:", start + 1)
    path.write_text(text[:start] + text[end:])


@pytest.fixture
async def engine(sqlite_url: str, tmp_path: Path, menus_dir: Path) -> AsyncIterator[Engine]:
    running = Engine(settings_for(sqlite_url, tmp_path, menus_dir=menus_dir))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_the_next_call_hears_the_reloaded_menu(
    engine: Engine, menus_dir: Path, new_phone: Callable[[], str]
) -> None:
    before = await call(engine, new_phone(), ["1"])
    assert labels(before.heard[0]) == DEFAULT_ORDER
    version = engine.menus.version
    without_moving(menus_dir)
    menus = await engine.reload_menus()
    assert [o.intent for o in menus["main"].options if o.intent == "moving"] == []
    assert engine.menus.version == version + 1
    after = await call(engine, new_phone(), ["4"])
    assert labels(after.heard[0]) == [x for x in DEFAULT_ORDER if x != "moving"]
    assert after.variables["IVR_INTENT"] == "outage"  # the configured digits, minus moving


async def test_menus_that_fail_a_check_are_refused_and_the_old_ones_stay(
    engine: Engine, menus_dir: Path, new_phone: Callable[[], str]
) -> None:
    version = engine.menus.version
    edit(menus_dir, "\ndigit_policy: positional", "\ndigit_policy: sideways")
    with pytest.raises(ConfigError, match=r"main\.yaml.*digit_policy"):
        await engine.reload_menus()
    assert not await reload_logged(engine)  # what SIGHUP runs: logged, not raised
    assert engine.menus.version == version
    heard = await call(engine, new_phone(), ["1"])
    assert labels(heard.heard[0]) == DEFAULT_ORDER


async def test_a_menu_naming_a_missing_prompt_is_refused(
    engine: Engine, menus_dir: Path, new_phone: Callable[[], str]
) -> None:
    edit(menus_dir, "prompt: ivr-engine/label-moving", "prompt: ivr-engine/label-nowhere")
    with pytest.raises(ConfigError, match="label-nowhere"):
        await engine.reload_menus()
    heard = await call(engine, new_phone(), ["1"])
    assert labels(heard.heard[0]) == DEFAULT_ORDER


async def test_the_api_menu_preview_follows_the_reload(engine: Engine, menus_dir: Path) -> None:
    import aiohttp

    base = f"http://127.0.0.1:{engine.http_port}"
    async with aiohttp.ClientSession(base_url=base) as http:
        query = {"phone": "+15550199999", "menu": "main"}
        async with http.get("/v1/menu-preview", params=query) as response:
            assert response.status == 200, await response.text()
            assert "moving" in await response.text()
        without_moving(menus_dir)
        await engine.reload_menus()
        async with http.get("/v1/menu-preview", params=query) as response:
            assert response.status == 200
            assert '"moving"' not in await response.text()


async def test_with_agents_an_intent_without_a_routing_rule_is_refused(
    sqlite_url: str, tmp_path: Path, menus_dir: Path
) -> None:
    engine = await start_contact_centre(sqlite_url, tmp_path, menus_dir=menus_dir)
    try:
        edit(menus_dir, "  - intent: moving", "  - intent: relocation")
        with pytest.raises(ConfigError, match="no routing rule for relocation"):
            await engine.reload_menus()
        assert "moving" in {o.intent for o in engine.menus["main"].options}
    finally:
        await engine.stop()

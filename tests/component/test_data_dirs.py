"""``menus_dir`` and ``spool_dir`` problems stop the engine at start-up with the setting, the
path and what is wrong. Before, a spool_dir that was a file was an ``OSError`` without the
setting's name, a spool_dir the engine cannot write to started "ready" and lost the calls
it had to spool when the database was down, and a menus_dir that was a file was "not found"."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ivr_engine.app import Engine
from ivr_engine.config_check import check_offline
from ivr_engine.domain.errors import ConfigError
from tests.component.test_ivr_flow import settings_for


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in (root ignores modes: sysfs)."""
    if os.geteuid() == 0:
        return Path("/sys/fs")
    path = tmp_path / "read-only"
    path.mkdir(mode=0o500)
    return path


async def start_refused(tmp_path: Path, **extra: object) -> str:
    engine = Engine(settings_for(f"sqlite:///{tmp_path / 't.db'}", tmp_path, **extra))
    try:
        with pytest.raises(ConfigError) as refused:
            await engine.start()
    finally:
        await engine.stop()
    return str(refused.value)


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "spool-file"
    path.write_text("not a directory")
    return path


@pytest.mark.parametrize(
    ("make", "said"),
    [(a_file, "is not a directory"), (unwritable_dir, "not writable by this process")],
)
async def test_a_spool_dir_the_engine_cannot_spool_to_stops_the_start(
    tmp_path: Path, make: Callable[[Path], Path], said: str
) -> None:
    spool = make(tmp_path)
    message = await start_refused(tmp_path, spool_dir=spool)
    assert message.startswith(f"spool_dir: {spool}: {said}")
    with pytest.raises(ConfigError, match=f"spool_dir: {spool}: {said}"):
        check_offline(settings_for("sqlite:///unused.db", tmp_path, spool_dir=spool))


async def test_a_missing_spool_dir_is_created_and_one_under_a_file_is_refused(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "data" / "spool"
    assert "ok: spool_dir" in "\n".join(
        check_offline(settings_for("sqlite:///unused.db", tmp_path, spool_dir=spool))
    )
    assert not spool.exists()  # check-config creates nothing
    engine = Engine(settings_for(f"sqlite:///{tmp_path / 't.db'}", tmp_path, spool_dir=spool))
    await engine.start()
    await engine.stop()
    assert spool.is_dir()
    (tmp_path / "file").write_text("")
    under_a_file = tmp_path / "file" / "spool"
    message = await start_refused(tmp_path, spool_dir=under_a_file)
    assert message.startswith(f"spool_dir: {under_a_file}: cannot be created: ")
    with pytest.raises(ConfigError, match=f"spool_dir: {under_a_file}: cannot be created: "):
        check_offline(settings_for("sqlite:///unused.db", tmp_path, spool_dir=under_a_file))


async def test_a_menus_dir_that_is_missing_or_a_file_is_said_so(tmp_path: Path) -> None:
    missing = tmp_path / "menus"
    message = await start_refused(tmp_path, menus_dir=missing)
    assert message == f"menus_dir: {missing}: does not exist (the directory of menu *.yaml)"
    missing.write_text("main: {}\n")
    message = await start_refused(tmp_path, menus_dir=missing)
    assert message == f"menus_dir: {missing}: is not a directory (the directory of menu *.yaml)"

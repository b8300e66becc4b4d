"""A setting's file or directory that cannot be read: the error names the setting, and for a
relative path the working directory it was looked up in. The defaults are relative
(config/menus, config/routing.yaml): a service started from / looked for /config/routing.yaml
and said only "config/routing.yaml: cannot read routing configuration: [Errno 2] ..."."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.data_dirs import check_menus_dir
from ivr_engine.domain.errors import ConfigError
from ivr_engine.routing import load_routing_config


def _error(load: object, path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load(path)  # type: ignore[operator]
    return str(raised.value)


def test_relative_paths_name_the_setting_and_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    where = f"(relative to the working directory {tmp_path})"
    assert _error(load_routing_config, Path("config/routing.yaml")) == (
        "routing_file: config/routing.yaml: cannot read routing configuration: "
        f"No such file or directory {where}"
    )
    assert _error(load_agent_profiles, Path("config/agents.yaml")) == (
        "agents_file: config/agents.yaml: cannot read the agents file: "
        f"No such file or directory {where}"
    )
    assert _error(check_menus_dir, Path("config/menus")) == (
        f"menus_dir: config/menus: does not exist (the directory of menu *.yaml) {where}"
    )


def test_absolute_paths_name_the_setting_only(tmp_path: Path) -> None:
    routing = tmp_path / "routing.yaml"
    assert _error(load_routing_config, routing) == (
        f"routing_file: {routing}: cannot read routing configuration: No such file or directory"
    )
    agents = tmp_path / "agents.yaml"
    assert _error(load_agent_profiles, agents) == (
        f"agents_file: {agents}: cannot read the agents file: No such file or directory"
    )

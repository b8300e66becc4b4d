"""Every configuration loader says its problems one way: ``file: key: problem``, every
problem on its own line (not only the first), list items as ``[N]``, the document as
``<top>``, and never the value at fault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crm_bridge.webhooks.subscriptions import parse_subscriptions
from ivr_engine.config_errors import key_path
from ivr_engine.contact_center.agents_file import parse_agent_profiles
from ivr_engine.desktop.directory import parse_agent_directory
from ivr_engine.domain.errors import ConfigError
from ivr_engine.menu_config import parse_menu
from ivr_engine.routing.config import parse_routing_config

SECRET = "s3cr3t-value-xyz"
TWO_BAD_AGENTS = f"""agents:
  - agent_id: "a 1"
    name: Ada
    sip_endpoint: "PJSIP/{SECRET},60,U(x)"
"""

LOADERS: dict[str, Callable[[Path, str], Any]] = {
    "agents file": parse_agent_profiles,
    "desktop directory": parse_agent_directory,
}


@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
def test_every_problem_is_listed_with_its_key(loader: Callable[[Path, str], Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        loader(Path("conf/agents.yaml"), TWO_BAD_AGENTS)
    lines = str(caught.value).splitlines()
    keys = {line.split(": ")[1] for line in lines}
    assert {"agents[0].agent_id", "agents[0].sip_endpoint"} <= keys, lines
    assert all(line.startswith("conf/agents.yaml: ") for line in lines)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "parse",
    [
        lambda text: parse_menu(Path("m.yaml"), text),
        lambda text: parse_routing_config(Path("m.yaml"), text),
        lambda text: parse_agent_profiles(Path("m.yaml"), text),
        lambda text: parse_agent_directory(Path("m.yaml"), text),
        lambda text: parse_subscriptions("m.yaml", text),
    ],
    ids=["menu", "routing", "agents file", "desktop directory", "webhooks"],
)
def test_a_document_that_is_not_a_mapping_is_said_at_top(parse: Callable[[str], Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse("- just\n- a list\n")
    assert str(caught.value).startswith("m.yaml: <top>: "), caught.value


def test_key_paths_read_as_the_file_writes_them() -> None:
    assert key_path(("options", 3, "label")) == "options[3].label"
    assert key_path(("skills", "two words")) == "skills.'two words'"
    assert key_path(()) == "<top>"

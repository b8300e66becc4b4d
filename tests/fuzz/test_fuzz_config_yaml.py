"""Targeted property tests: every YAML configuration parser promises ``ConfigError``
naming the file for any text. PyYAML's safe loader raises more than ``yaml.YAMLError``: a
scalar that looks like a timestamp but is not a date (``2024-02-30``), an explicit
``!!int``/``!!float`` tag on text that is not a number, and deep nesting raise ``ValueError``
or ``RecursionError`` from the constructors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crm_bridge.webhooks.subscriptions import parse_subscriptions
from ivr_engine.contact_center.agents_file import parse_agent_profiles
from ivr_engine.desktop.directory import parse_agent_directory
from ivr_engine.domain.errors import ConfigError
from ivr_engine.menu_config import parse_menu
from ivr_engine.routing.config import parse_routing_config

PARSERS: dict[str, Callable[[str], object]] = {
    "menu": lambda text: parse_menu(Path("m.yaml"), text),
    "routing": lambda text: parse_routing_config(Path("r.yaml"), text),
    "directory": lambda text: parse_agent_directory(Path("d.yaml"), text),
    "agents": lambda text: parse_agent_profiles(Path("a.yaml"), text),
    "subscriptions": lambda text: parse_subscriptions("s.yaml", text, {}),
}

_scalar = st.sampled_from(
    ["2024-02-30", "2024-13-01", "2024-01-01T25:00:00", "2001-12-14t21:59:43.10-05:00",
     "!!int x", "!!float x", "!!int 0x", "!!binary ab", "!!timestamp 2020-02-31", "1e999",
     "0o9", "~", "'x'", "[", "{", "&a x", "*a", "!!set {a}", "!!omap [a: 1]", "!!str 1"]
)  # fmt: skip
_key = st.sampled_from(["menu", "options", "x", "skills", "intents", "agents", "subscriptions"])


@st.composite
def _documents(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.tuples(_key, _scalar), min_size=1, max_size=4))
    return "".join(f"{key}: {value}\n" for key, value in lines)


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(text=_documents())
@example(text="x: 2024-02-30\n")
def test_yaml_config_parsers_raise_only_config_error(name: str, text: str) -> None:
    with contextlib.suppress(ConfigError):
        PARSERS[name](text)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_deeply_nested_yaml_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError):
        PARSERS[name]("x: " + "[" * 5000)


@pytest.mark.parametrize("text", ["x: 2024-02-30\n", "x: !!float x\n", "x: " + "[" * 5000])
def test_yaml_files_are_config_errors(text: str, tmp_path: Path) -> None:
    """The settings file and the prompt texts file: read from disk, same promise."""
    from ivr_engine.prompt_texts import load_prompt_texts
    from ivr_engine.settings import _from_file

    path = tmp_path / "c.yaml"
    path.write_text(text)
    for load in (_from_file, load_prompt_texts):
        with pytest.raises(ConfigError):
            load(path)

"""Every YAML configuration loader says a file that does not parse by file, line, column and
problem (``yaml_load.describe_yaml_error``), never with PyYAML's copy of the offending line:
a menu, routing, agents, webhooks or prompts file may hold a secret on the line that broke."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from crm_bridge.webhooks.subscriptions import load_subscriptions
from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.desktop.directory import load_agent_directory
from ivr_engine.domain.errors import ConfigError
from ivr_engine.menu_config import load_menus
from ivr_engine.prompt_texts import load_prompt_texts
from ivr_engine.routing.config import load_routing_config
from ivr_engine.settings import load_settings
from ivr_engine.yaml_load import describe_yaml_error, load_yaml

SECRET = "s3cret-" + "x" * 40

# (text, the 1-based line the secret is on); each fails to parse on or from that line
BROKEN = {
    "scanner": ("a: 1\nsecret: @{secret}\n", 2),  # '@' cannot start a token
    "binary": ("a: 1\nsecret: !!binary {secret}x\n", 2),  # not base64
    "tab": ("a: 1\n\tsecret: {secret}\n", 2),  # a tab where indentation goes
    "quote": ('a: 1\nsecret: "{secret}\n', 2),  # never closed
    "alias": ("a: 1\nsecret: *{secret}\n", 2),  # PyYAML quotes the alias's name
    "tag": ("a: 1\nsecret: !{secret} x\n", 2),  # and the tag it has no constructor for
}


def _menus(path: Path) -> object:
    return load_menus(path.parent)


LOADERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "menus": ("menus/main.yaml", _menus),
    "routing": ("routing.yaml", load_routing_config),
    "agents": ("agents.yaml", load_agent_profiles),
    "directory": ("agents.yaml", load_agent_directory),
    "webhooks": ("webhooks.yaml", lambda path: load_subscriptions(path, {})),
    "prompts": ("prompts.yaml", load_prompt_texts),
}


@pytest.mark.parametrize("broken", list(BROKEN))
@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_file_that_does_not_parse_is_said_by_file_and_line_without_its_text(
    tmp_path: Path, loader: str, broken: str
) -> None:
    name, load = LOADERS[loader]
    text, line = BROKEN[broken]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.format(secret=SECRET), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert f"(line {line}, column " in message
    assert "s3cret" not in message and "xxxxxxxx" not in message
    assert "\n" not in message  # one line: no snippet, no pointer under it


def test_a_duplicate_prompt_is_named_whatever_its_length(tmp_path: Path) -> None:
    """The one loader whose own YAML check names a key: the key is not masked as a quoted
    piece of the file (it is an id, not a value)."""
    path = tmp_path / "prompts.yaml"
    path.write_text("language: en\nprompts:\n  welcome_back: Hi\n  welcome_back: Hello\n")
    with pytest.raises(ConfigError) as raised:
        load_prompt_texts(path)
    assert str(raised.value) == (
        f"{path}: invalid YAML: while constructing a mapping (line 3, column 3); "
        "duplicate key: welcome_back (line 4, column 3)"
    )


def test_pyyaml_token_names_are_not_masked(tmp_path: Path) -> None:
    """``'<scalar>'`` is PyYAML's name for what it found, not a piece of the file."""
    path = tmp_path / "routing.yaml"
    path.write_text("skills:\n  - a\n b\n")
    with pytest.raises(ConfigError) as raised:
        load_routing_config(path)
    assert "but found '<scalar>' (line 3, column 2)" in str(raised.value)


def _settings(path: Path) -> object:
    return load_settings(path, environ={})


@pytest.mark.parametrize("loader", [*LOADERS, "settings"])
def test_a_key_given_twice_is_refused_by_file_line_and_column(tmp_path: Path, loader: str) -> None:
    """PyYAML keeps the last of two equal keys silently: a second ``digit:`` or ``admin_token:``
    would quietly win. Every loader refuses it, naming the file, the key and where."""
    name, load = LOADERS.get(loader, ("engine.yaml", _settings))
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("first: 1\nnested:\n  a: 1\n  b: 2\n  a: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert message.endswith("duplicate key: a (line 5, column 3)")


def test_keys_merged_in_may_be_overridden_and_a_long_key_is_not_shown() -> None:
    assert load_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n") == {
        "base": {"x": 1, "y": 2},
        "other": {"x": 3, "y": 2},
    }
    with pytest.raises(yaml.YAMLError) as raised:
        load_yaml(f"{SECRET}{SECRET}: 1\n{SECRET}{SECRET}: 2\n")
    described = describe_yaml_error(raised.value)
    assert described.endswith("duplicate key (line 2, column 1)")
    assert "xxxxxxxx" not in described

"""YAML configuration loading (``yaml_load``): whatever a PyYAML constructor raises on a value
is a ``yaml.YAMLError`` saying where (line, column), the tag and the exception's type, never
the exception's own message: it quotes the value (``int()`` up to 200 characters of it, past
the masking of quoted pieces), and a configuration file holds secrets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crm_bridge.webhooks.subscriptions import parse_subscriptions
from ivr_engine.domain.errors import ConfigError
from ivr_engine.menu_config import parse_menu
from ivr_engine.yaml_load import UnbuildableValue, describe_yaml_error, load_yaml

SECRET = "Q" + "k" * 300  # tokens may be up to 512 characters


@pytest.mark.parametrize(
    ("text", "said", "kind"),
    [
        # PyYAML's timestamp constructor calls .groupdict() on a failed match
        (f"a: 1\nadmin_token: !!timestamp {SECRET}\n", "a !!timestamp value", "AttributeError"),
        (f"a: 1\nadmin_token: !!int {SECRET}\n", "a !!int value", "ValueError"),
        (f"a: 1\nadmin_token: !!float {SECRET}\n", "a !!float value", "ValueError"),
        ("a: 1\nadmin_token: 2024-02-30\n", "a !!timestamp value", "ValueError"),
    ],
)
def test_a_value_that_cannot_be_built_is_said_by_line_tag_and_type_only(
    text: str, said: str, kind: str
) -> None:
    with pytest.raises(UnbuildableValue) as raised:
        load_yaml(text)
    assert describe_yaml_error(raised.value) == (
        f"{said} cannot be built ({kind}) (line 2, column 14)"
    )
    assert "kkkkkkkk" not in str(raised.value)  # str(): what the other loaders print
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_the_place_is_the_innermost_value_that_failed() -> None:
    with pytest.raises(UnbuildableValue) as raised:
        load_yaml(f"api_tokens:\n  - fine\n  - {{x: [1, !!int {SECRET}]}}\n")
    assert describe_yaml_error(raised.value).endswith("(line 3, column 13)")  # its "!!int"


def test_nesting_too_deep_is_a_yaml_error_too() -> None:
    with pytest.raises(UnbuildableValue, match=r"nested too deeply \(RecursionError\)"):
        load_yaml("x: " + "[" * 5000)


@pytest.mark.parametrize(
    "parse",
    [
        lambda text: parse_menu(Path("m.yaml"), text),
        lambda text: parse_subscriptions("s.yaml", text, {}),  # subscriptions hold secrets
    ],
    ids=["menu", "subscriptions"],
)
@pytest.mark.parametrize("tag", ["!!int", "!!timestamp"])
def test_loaders_that_print_the_error_whole_do_not_copy_the_value(
    parse: Callable[[str], object], tag: str
) -> None:
    text = f"subscriptions:\n  - id: a\n    secret: {tag} {SECRET}\n"
    with pytest.raises(ConfigError) as raised:
        parse(text)
    assert "line 3, column 13" in str(raised.value)
    assert "kkkkkkkk" not in str(raised.value)

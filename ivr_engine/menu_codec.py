"""Validated menus to plain JSON data and back, with the standard library only.

For caches of menus that ``menu_config`` validated (``classic_config``): decoding does not
validate again, it only rebuilds the frozen dataclasses, and refuses (``ValueError``,
``TypeError``, ``KeyError``) data whose keys are not exactly the dataclasses' fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any, TypeVar

from ivr_engine.domain.models import (
    DigitPolicy,
    FieldSpec,
    Menu,
    MenuOption,
    MenuPrompts,
    RankingPolicy,
    ShortcutPolicy,
    SpeechPolicy,
)

T = TypeVar("T")


def encode_menus(menus: Mapping[str, Menu]) -> list[dict[str, Any]]:
    """JSON-ready: tuples become lists, the digit policy its string."""
    return [asdict(menu) for menu in menus.values()]


def decode_menus(data: list[dict[str, Any]]) -> dict[str, Menu]:
    """The inverse of ``encode_menus``: ``decode_menus(encode_menus(m)) == m``."""
    if not isinstance(data, list):
        raise TypeError("menus: expected a list")
    menus = [_decode_menu(item) for item in data]
    return {menu.name: menu for menu in menus}


def _decode_menu(data: dict[str, Any]) -> Menu:
    values = _exact(Menu, data)
    specs = values["fields"]
    if not isinstance(specs, dict):
        raise TypeError("fields: expected a mapping")
    return Menu(
        **{
            **values,
            "options": tuple(_decode_option(o) for o in values["options"]),
            "digit_policy": DigitPolicy(values["digit_policy"]),
            "ranking": RankingPolicy(**_exact(RankingPolicy, values["ranking"])),
            "shortcut": ShortcutPolicy(**_exact(ShortcutPolicy, values["shortcut"])),
            "prompts": MenuPrompts(**_exact(MenuPrompts, values["prompts"])),
            "fields": {name: FieldSpec(**_exact(FieldSpec, s)) for name, s in specs.items()},
            "speech": SpeechPolicy(**_exact(SpeechPolicy, values["speech"])),
        }
    )


def _decode_option(data: dict[str, Any]) -> MenuOption:
    values = _exact(MenuOption, data)
    tuples = {key: tuple(values[key]) for key in ("required_fields", "phrases")}
    return MenuOption(**{**values, **tuples})


def _exact(cls: type[T], data: object) -> dict[str, Any]:
    """``data`` as keyword arguments of ``cls``: every field, nothing else."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected a mapping")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if set(data) != names:
        raise ValueError(f"{cls.__name__}: keys {sorted(data)}, expected {sorted(names)}")
    return data

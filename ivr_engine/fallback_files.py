"""``ivr-engine dialplan fallback``: the static fallback menu of one menu, to a file or out
(``pbx``: ``asterisk``, an ``[ivr-fail]`` context; ``freeswitch``, ``ivr-fail`` extensions)."""

from __future__ import annotations

import os
from pathlib import Path

from ivr_engine.domain.errors import ConfigError
from ivr_engine.fallback_dialplan import render_fallback
from ivr_engine.fallback_freeswitch import render_fallback_xml
from ivr_engine.menu_config import load_menu_files
from ivr_engine.settings import Settings


def write_fallback(
    settings: Settings, menu_name: str, output: Path | None, pbx: str = "asterisk"
) -> str:
    """The generated dialplan (no ``output``), or a line saying what was written where."""
    files = load_menu_files(settings.menus_dir)
    if menu_name not in files:
        raise ConfigError(
            f"--menu {menu_name}: no such menu in menus_dir {settings.menus_dir} "
            f"(menus: {', '.join(sorted(files))})"
        )
    source, menu = files[menu_name]
    render = render_fallback if pbx == "asterisk" else render_fallback_xml
    try:
        text = render(menu, source.as_posix())
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    if output is None:
        return text.rstrip("\n")
    partial = output.with_name(f".{output.name}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, output)  # a dialplan reload (or reloadxml) never reads half a file
    return f"wrote the {pbx} static fallback menu of {menu_name} ({source}) to {output}"

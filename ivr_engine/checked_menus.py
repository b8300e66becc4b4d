"""The menus as the engine puts them in force, at start-up and on reload: validated, and every
prompt they reference present and playable (when ``check_prompts`` is on)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import Menu
from ivr_engine.menu_config import check_prompts_exist, load_menus, referenced_prompts
from ivr_engine.prompt_checks import available_prompt_ids, check_prompt_files
from ivr_engine.settings import Settings


def load_checked_menus(settings: Settings) -> Mapping[str, Menu]:
    """Menus validated, and every prompt they reference present (when checking is on)."""
    menus = load_menus(settings.menus_dir)
    if settings.check_prompts:
        if not settings.sounds_dir.is_dir():
            raise ConfigError(f"sounds_dir: {settings.sounds_dir} is not a directory")
        available = available_prompt_ids(settings.sounds_dir)
        for menu in menus.values():
            check_prompts_exist(menu, settings.menus_dir / f"{menu.name}.yaml", available)
        _check_prompt_audio(settings.sounds_dir, menus)
    return menus


def _check_prompt_audio(sounds_dir: Path, menus: Mapping[str, Menu]) -> None:
    """A WAV prompt Asterisk cannot play as-is (not 8 kHz mono 16-bit, truncated, empty)
    would be dead air for the caller: refuse to start, naming the file and the problem."""
    own = {
        prompt
        for menu in menus.values()
        for prompt in referenced_prompts(menu)
        if (sounds_dir / f"{prompt}.wav").is_file()
    }
    problems = check_prompt_files(sounds_dir, own)
    if problems:
        lines = [f"{sounds_dir / prompt}.wav: {'; '.join(why)}" for prompt, why in problems.items()]
        raise ConfigError("unplayable prompt files:\n" + "\n".join(lines))

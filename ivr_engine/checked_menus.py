"""The menus as the engine puts them in force, at start-up and on reload: validated, every
``EXEC Read`` line they can make short enough for Asterisk to read as one AGI command, and
every prompt they reference present and playable (when ``check_prompts`` is on)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import Menu, PresentedOption, ShortcutOffer
from ivr_engine.menu_config import check_prompts_exist, load_menu_files, referenced_prompts
from ivr_engine.personalize import (
    digit_prompt,
    menu_prompt_sequence,
    shortcut_prompt_sequence,
    static_menu,
)
from ivr_engine.prompt_checks import available_prompt_ids, check_prompt_sounds
from ivr_engine.settings import Settings
from ivr_engine.telephony.agi.channel import read_command_line
from ivr_engine.telephony.agi.protocol import AGI_BUF_LEN, MAX_COMMAND_BYTES, command_bytes

Read = tuple[str, tuple[str, ...], int, int]  # what it is, prompts, timeout (ms), max digits


def load_checked_menus(settings: Settings) -> Mapping[str, Menu]:
    """Menus validated, and every prompt they reference present (when checking is on)."""
    files = load_menu_files(settings.menus_dir)
    for path, menu in files.values():
        check_read_lines(menu, path)
    menus = {name: menu for name, (_, menu) in files.items()}
    if settings.check_prompts:
        if not settings.sounds_dir.is_dir():
            raise ConfigError(f"sounds_dir: {settings.sounds_dir} is not a directory")
        available = available_prompt_ids(settings.sounds_dir)
        for path, menu in files.values():
            check_prompts_exist(menu, path, available)
        _check_prompt_audio(settings.sounds_dir, menus)
    return menus


def _check_prompt_audio(sounds_dir: Path, menus: Mapping[str, Menu]) -> None:
    """A prompt file Asterisk cannot play as-is (a WAV not 8 kHz mono 16-bit, truncated,
    empty; a GSM, G.711 or signed linear file empty, too short or cut mid-frame) would be
    dead air for the caller: refuse to start, naming the file and the problem."""
    own = {prompt for menu in menus.values() for prompt in referenced_prompts(menu)}
    problems = check_prompt_sounds(sounds_dir, own)
    problems = {path: why for path, why in problems.items() if why != ["missing file"]}
    if problems:
        lines = [f"{path}: {'; '.join(why)}" for path, why in problems.items()]
        raise ConfigError("unplayable prompt files:\n" + "\n".join(lines))


def check_read_lines(menu: Menu, source: Path) -> None:
    """Refuse a menu whose longest ``EXEC Read`` line Asterisk would cut: res_agi.c reads a
    command into ``char buf[AGI_BUF_LEN]``, the rest of a longer line becomes a second command
    and every later reply is out of step (the engine would refuse to send it: a failed call)."""
    what, size = longest_read_line(menu)
    if size > MAX_COMMAND_BYTES:
        raise ConfigError(
            f"{source}: {what} would be an AGI command line of {size} bytes; Asterisk reads "
            f"at most {MAX_COMMAND_BYTES} bytes per command (res_agi.c AGI_BUF_LEN "
            f"{AGI_BUF_LEN}; 8192 in releases since 2025, not relied on): use fewer options "
            "or shorter prompt ids (options[].prompt, prompts.*, fields.*.prompt)"
        )


def longest_read_line(menu: Menu) -> tuple[str, int]:
    """The longest ``EXEC Read`` line the call flow can send for ``menu``: what it is, and
    its bytes with the newline. Built from the same functions as the flow's prompt lists."""
    sizes = [
        (what, command_bytes(read_command_line(prompts, timeout_ms, max_digits)))
        for what, prompts, timeout_ms, max_digits in worst_case_reads(menu)
    ]
    return max(sizes, key=lambda item: item[1])


def worst_case_reads(menu: Menu) -> Iterator[Read]:
    """Every kind of ``Read`` the flow makes for ``menu``, each at its longest."""
    lead_in = (max(menu.prompts.invalid, menu.prompts.no_input, key=len),)
    yield from _menu_reads(menu, lead_in)
    yield from _shortcut_reads(menu)
    for spec in menu.fields.values():
        what = f"the question for field {spec.name}"
        before = max(lead_in[0], menu.prompts.no_match, key=len) if spec.sensitive else lead_in[0]
        yield what, (before, spec.prompt), spec.timeout_ms, spec.max_digits


def _menu_reads(menu: Menu, lead_in: tuple[str, ...]) -> Iterator[Read]:
    """Every option announced, each with the longest digit prompt, after the welcome or after
    a lead-in, with the continue-by-SMS offer at the end."""
    prompts = menu.prompts
    digit = max((o.digit for o in menu.options), key=lambda d: len(digit_prompt(prompts, d)))
    entries = tuple(PresentedOption(digit, option) for option in menu.options)
    every_option = dataclasses.replace(static_menu(menu, "longest line"), entries=entries)
    what = f"the menu read (all {len(entries)} options announced)"
    for greeting, before in ((True, ()), (False, lead_in)):
        sequence = menu_prompt_sequence(every_option, prompts, greeting=greeting)
        yield what, (*before, *sequence, prompts.continue_sms_offer), menu.input_timeout_ms, 1


def _shortcut_reads(menu: Menu) -> Iterator[Read]:
    """The "calling about X again?" and "continue your open case?" questions."""
    policy = menu.shortcut
    for option in menu.options if policy.enabled else ():
        if option.shortcut_prompt is None:
            continue
        for case in (None, "case"):
            offer = ShortcutOffer(
                option.intent, option.shortcut_prompt, policy.yes_digit, policy.no_digit, "", case
            )
            question = shortcut_prompt_sequence(offer, menu.prompts, greeting=True)
            yield f"the shortcut question for {option.intent}", question, menu.input_timeout_ms, 1

"""Finding 4: an AGI command line longer than Asterisk's 2048-byte read buffer.

res_agi.c reads each command with ``fgets`` into ``char buf[AGI_BUF_LEN]`` (2048): a line of
more than 2047 bytes, newline included, runs truncated and its rest is answered as a second
command (``510``), so every later reply is out of step. The engine refuses such a line before
sending it, and refuses at start-up a menu whose ``EXEC Read`` line could get that long.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ivr_engine.checked_menus import load_checked_menus, longest_read_line, worst_case_reads
from ivr_engine.domain.errors import ConfigError
from ivr_engine.menu_config import load_menus
from ivr_engine.settings import Settings
from ivr_engine.telephony.agi.channel import read_command_line
from ivr_engine.telephony.agi.protocol import (
    MAX_COMMAND_BYTES,
    check_command,
    command_bytes,
    format_command,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_limit_is_res_agi_buffer_less_its_terminating_nul() -> None:
    assert MAX_COMMAND_BYTES == 2047


def test_a_command_of_exactly_the_limit_passes_one_byte_more_is_refused() -> None:
    fits = 'VERBOSE "' + "x" * (MAX_COMMAND_BYTES - len('VERBOSE ""') - 1) + '"'
    assert command_bytes(fits) == MAX_COMMAND_BYTES
    check_command(fits)
    over = fits[:-1] + 'x"'
    assert command_bytes(over) == MAX_COMMAND_BYTES + 1
    with pytest.raises(ValueError, match="2048 bytes with its newline, over the 2047"):
        check_command(over)


def test_format_command_counts_bytes_not_characters() -> None:
    text = "x" * (MAX_COMMAND_BYTES - len('VERBOSE ""') - 1)
    assert command_bytes(format_command("VERBOSE", text)) == MAX_COMMAND_BYTES
    with pytest.raises(ValueError, match="AGI_BUF_LEN 2048"):
        format_command("VERBOSE", "é" + text[1:])  # same characters, one byte more
    with pytest.raises(ValueError):
        format_command("VERBOSE", text + "x")


def test_read_command_line_is_what_read_digits_sends() -> None:
    line = read_command_line(["ivr-engine/welcome", "digits/1"], 5000, 1)
    assert line == 'EXEC "Read" "IVR_READ,ivr-engine/welcome&digits/1,1,,1,5"'


def _settings(menus_dir: Path) -> Settings:
    return Settings(menus_dir=menus_dir, check_prompts=False)


def test_the_sample_menus_pass_with_room_to_spare() -> None:
    menus = load_checked_menus(_settings(REPO / "config/menus"))
    for menu in menus.values():
        what, size = longest_read_line(menu)
        assert size < MAX_COMMAND_BYTES // 2, (menu.name, what, size)


def _big_menu(prompt_len: int, *, word_len: int | None = None) -> str:
    """Ten options (keys 0-9, the most a menu has) with ``prompt_len``-character prompt ids;
    ``word_len``: "for" and "press" prompt ids that long too (every option says both)."""
    label = "acme/en-GB/ivr/" + "l" * (prompt_len - len("acme/en-GB/ivr/"))
    digits = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
    options = "".join(
        f"  - intent: opt_{i}\n    digit: '{d}'\n    label: Option {i}\n"
        f"    prompt: {label[:-2]}{i:02d}\n"
        for i, d in enumerate(digits)
    )
    words = ""
    if word_len is not None:
        word = "acme/en-GB/ivr/" + "w" * (word_len - len("acme/en-GB/ivr/") - 4)
        words = f"prompts:\n  for_word: {word}-for\n  press_word: {word}-prs\n"
    return f"menu: big\nfallback_intent: opt_0\n{words}options:\n{options}"


def test_a_ten_option_menu_with_long_prompt_ids_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text(_big_menu(120, word_len=100))
    with pytest.raises(ConfigError) as refused:
        load_checked_menus(_settings(tmp_path))
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'big.yaml'}: the menu read (all 10 options announced)")
    size = longest_read_line(load_menus(tmp_path)["big"])[1]
    assert size > MAX_COMMAND_BYTES
    assert f"AGI command line of {size} bytes" in message
    assert "at most 2047 bytes per command" in message


def test_the_worst_case_is_the_line_the_flow_would_send(tmp_path: Path) -> None:
    """The check measures every option with the longest digit prompt (every ``digits/N`` is
    as long), after the longer lead-in, with the continue-by-SMS offer: the line the flow
    can send."""
    (tmp_path / "big.yaml").write_text(_big_menu(40))
    menu = load_menus(tmp_path)["big"]
    p = menu.prompts
    worst: list[str] = [p.invalid]
    for option in menu.options:
        worst += [p.for_word, option.prompt, p.press_word, "digits/1"]
    worst.append(p.continue_sms_offer)
    expected = command_bytes(read_command_line(worst, menu.input_timeout_ms, 1))
    assert longest_read_line(menu) == ("the menu read (all 10 options announced)", expected)
    load_checked_menus(_settings(tmp_path))  # 40-character prompt ids: it fits


def test_a_sensitive_fields_question_is_measured_after_the_no_match_prompt() -> None:
    """A wrong sensitive answer is asked again after ``prompts.no_match``: the question's
    line is measured with it when it is the longer lead-in."""
    menu = load_menus(REPO / "config/menus")["main"]
    long_no_match = "acme/" + "n" * 110
    menu = dataclasses.replace(
        menu, prompts=dataclasses.replace(menu.prompts, no_match=long_no_match)
    )
    reads = {what: prompts for what, prompts, _, _ in worst_case_reads(menu)}
    assert reads["the question for field postcode"] == (long_no_match, "ivr-engine/enter-postcode")
    assert long_no_match not in reads["the question for field account_number"]  # not sensitive

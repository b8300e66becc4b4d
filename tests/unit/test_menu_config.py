from pathlib import Path

import pytest

from ivr_engine.checked_menus import load_checked_menus
from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import DigitPolicy
from ivr_engine.menu_config import check_prompts_exist, load_menus, parse_menu, referenced_prompts
from ivr_engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "menus" / "main.yaml"

MINIMAL = """
menu: small
fields:
  account_number: {prompt: ivr-engine/enter-account-number, min_digits: 6, max_digits: 10}
options:
  - {intent: billing, digit: "1", label: Billing, prompt: ivr-engine/label-billing,
     required_fields: [account_number]}
  - {intent: operator, digit: "0", label: Agent, prompt: ivr-engine/label-operator, pinned: true}
"""


def test_sample_menu_loads() -> None:
    menu = load_menus(SAMPLE.parent)["main"]
    assert [o.digit for o in menu.options] == ["1", "2", "3", "4", "5", "6", "0"]
    billing = menu.option("billing")
    assert billing is not None and billing.digit == "6"
    assert billing.required_fields == ("account_number",)
    assert menu.digit_policy is DigitPolicy.POSITIONAL
    assert menu.fields["postcode"].sensitive
    assert menu.ranking.open_case_max_age_days == 14


def test_open_case_max_age_days_is_read() -> None:
    text = MINIMAL.replace("menu: small", "menu: small\nranking: {open_case_max_age_days: 3.5}")
    assert parse_menu(Path("x.yaml"), text).ranking.open_case_max_age_days == 3.5


def test_sample_menu_prompts_are_all_built() -> None:
    menu = load_menus(SAMPLE.parent)["main"]
    sounds = ROOT / "prompts" / "en"
    available = {f"ivr-engine/{p.stem}" for p in (sounds / "ivr-engine").glob("*.wav")}
    check_prompts_exist(menu, SAMPLE, available)


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_menu(Path("menus/x.yaml"), text)
    return str(info.value)


def test_minimal_menu_parses() -> None:
    menu = parse_menu(Path("x.yaml"), MINIMAL)
    assert menu.name == "small" and menu.fallback_intent == "operator"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('digit: "1"', 'digit: "12"'), "menus/x.yaml: options[0].digit"),
        (("intent: billing", "intent: Billing!"), "menus/x.yaml: options[0].intent"),
        (("intent: operator", "intent: billing"), "options[1].intent: duplicate intent"),
        (('digit: "0"', 'digit: "1"'), "options[1].digit: digit 1 already used by options[0]"),
        (("[account_number]", "[postcode]"), "'postcode' is not defined under fields"),
        (("min_digits: 6", "min_digits: 12"), "fields.account_number: min_digits"),
        (("menu: small", "menu: small\nsurprise: 1"), "surprise: Extra inputs are not permitted"),
        (("menu: small", "menu: small\nfallback_intent: sales"), "fallback_intent: 'sales'"),
        # '#' ends Read's input, '*' continues by text: neither can choose an option
        (('digit: "1"', 'digit: "#"'), "options[0].digit: '#' ends input in Asterisk's Read"),
        (('digit: "1"', 'digit: "*"'), "options[0].digit: '*' is the engine's key to continue"),
        (("menu: small", "menu: small\nshortcut: {no_digit: '#'}"), "shortcut.no_digit: '#'"),
        # unquoted, YAML reads a key as a number: "should be '0', '1', ..." named no fix
        (('digit: "1"', "digit: 1"), 'options[0].digit: a key is text: quote it, "1", not 1'),
        (("menu: small", "menu: small\nshortcut: {yes_digit: 9}"), "shortcut.yes_digit: a key"),
        # the shortcut question's keys win over a pinned key pressed there
        (
            ("menu: small", "menu: small\nshortcut: {yes_digit: '0'}"),
            "shortcut.yes_digit: 0 is the pinned key of options[1] ('operator')",
        ),
        (
            ("menu: small", "menu: small\nshortcut: {no_digit: '0'}"),
            "shortcut.no_digit: 0 is the pinned key of options[1] ('operator')",
        ),
        # the sample question prompts say "press 1" / "press 2" in their words
        (
            ("menu: small", "menu: small\nshortcut: {yes_digit: '3', no_digit: '4'}"),
            "prompts.shortcut_again: ivr-engine/shortcut-again says 'press 1' for yes",
        ),
        (
            ("menu: small", "menu: small\nshortcut: {yes_digit: '2', no_digit: '1'}"),
            "prompts.continue_question: ivr-engine/continue-question says 'press 1'",
        ),
        (
            ("menu: small", "menu: small\nranking: {open_case_max_age_days: 0}"),
            "menus/x.yaml: ranking.open_case_max_age_days: Input should be greater than 0",
        ),
        (
            ("menu: small", "menu: small\nranking: {open_case_max_age_days: soon}"),
            "ranking.open_case_max_age_days: Input should be a valid number",
        ),
        (
            ("menu: small", "menu: small\nverification_attempts: 0"),
            "menus/x.yaml: verification_attempts: Input should be greater than or equal to 1",
        ),
        (
            ("menu: small", "menu: small\nverification_attempts: 6"),
            "menus/x.yaml: verification_attempts: Input should be less than or equal to 5",
        ),
        (
            ("menu: small", "menu: small\nprompts: {no_match: '../x'}"),
            "menus/x.yaml: prompts.no_match: String should match pattern",
        ),
    ],
)
def test_errors_name_file_and_key(change: tuple[str, str], expected: str) -> None:
    assert expected in _error(MINIMAL.replace(*change, 1))


def test_other_shortcut_keys_pass_with_prompts_that_say_them() -> None:
    own = (
        "menu: small\nshortcut: {yes_digit: '3', no_digit: '4'}\n"
        "prompts: {shortcut_again: acme/again-3-4, continue_question: acme/continue-3-4}"
    )
    menu = parse_menu(Path("x.yaml"), MINIMAL.replace("menu: small", own, 1))
    assert (menu.shortcut.yes_digit, menu.shortcut.no_digit) == ("3", "4")
    off = "menu: small\nshortcut: {enabled: false, yes_digit: '3', no_digit: '4'}"
    assert not parse_menu(Path("x.yaml"), MINIMAL.replace("menu: small", off, 1)).shortcut.enabled


def test_verification_attempts_are_read_two_by_default() -> None:
    """Answers to a known sensitive field before the call goes on unverified."""
    assert parse_menu(Path("x.yaml"), MINIMAL).verification_attempts == 2
    text = MINIMAL.replace("menu: small", "menu: small\nverification_attempts: 3")
    assert parse_menu(Path("x.yaml"), text).verification_attempts == 3
    assert load_menus(SAMPLE.parent)["main"].verification_attempts == 2


def test_the_no_match_prompt_is_required_only_where_a_wrong_answer_is_asked_again() -> None:
    """A sensitive field and a second answer allowed: "that does not match our records"
    must be installed (start-up names the key); no sensitive field, or one answer: not."""
    sensitive = MINIMAL.replace("max_digits: 10}", "max_digits: 10, sensitive: true}")
    menu = parse_menu(Path("x.yaml"), sensitive)
    assert "ivr-engine/no-match" in referenced_prompts(menu)
    with pytest.raises(ConfigError, match=r"ivr-engine/no-match \(prompts.no_match\)"):
        check_prompts_exist(
            menu, Path("x.yaml"), referenced_prompts(menu) - {"ivr-engine/no-match"}
        )
    assert "ivr-engine/no-match" not in referenced_prompts(parse_menu(Path("x.yaml"), MINIMAL))
    once = sensitive.replace("menu: small", "menu: small\nverification_attempts: 1")
    assert "ivr-engine/no-match" not in referenced_prompts(parse_menu(Path("x.yaml"), once))


def test_broken_yaml_and_wrong_top_level() -> None:
    assert "not valid YAML" in _error("menu: [unclosed")
    assert "<top>: expected a mapping" in _error("- just\n- a list\n")


def test_missing_prompts_are_reported() -> None:
    menu = parse_menu(Path("x.yaml"), MINIMAL)
    with pytest.raises(ConfigError, match="ivr-engine/label-billing"):
        check_prompts_exist(menu, Path("x.yaml"), {"ivr-engine/welcome"})
    assert "digits/7" in referenced_prompts(menu)


def test_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"menus_dir: .*nope: does not exist"):
        load_menus(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no menu files"):
        load_menus(tmp_path)
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yaml").write_text(MINIMAL)
    with pytest.raises(ConfigError, match="defined twice"):
        load_menus(tmp_path)
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"b\.yaml: cannot read"):
        load_menus(tmp_path)


def test_a_missing_prompt_names_the_keys_that_use_it() -> None:
    menu = parse_menu(Path("x.yaml"), MINIMAL)
    available = referenced_prompts(menu) - {"ivr-engine/label-billing", "ivr-engine/for"}
    with pytest.raises(ConfigError) as caught:
        check_prompts_exist(menu, Path("x.yaml"), available)
    message = str(caught.value)
    assert "ivr-engine/label-billing (options[0].prompt)" in message
    assert "ivr-engine/for (prompts.for_word)" in message


def test_checks_after_loading_name_the_menus_own_file_and_the_options_index(
    tmp_path: Path,
) -> None:
    """The file a menu came from is named even when it is not ``<menu>.yaml`` (was: a guess,
    ``menus/small.yaml``, a file that does not exist), and an option by its index in the
    file's ``options:`` list, as the load errors say it (was: ``options[operator]``)."""
    menus, sounds = tmp_path / "menus", tmp_path / "sounds"
    menus.mkdir()
    sounds.mkdir()
    (menus / "after-hours.yml").write_text(MINIMAL)
    settings = Settings(menus_dir=menus, sounds_dir=sounds, check_prompts=True)
    with pytest.raises(ConfigError) as caught:
        load_checked_menus(settings)
    message = str(caught.value)
    assert message.startswith(f"{menus / 'after-hours.yml'}: prompts not found: ")
    assert "ivr-engine/label-operator (options[1].prompt)" in message
    assert "ivr-engine/enter-account-number (fields.account_number.prompt)" in message


def test_a_menu_defined_twice_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yml").write_text(MINIMAL)
    with pytest.raises(ConfigError) as caught:
        load_menus(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'b.yml'}: menu: 'small' is defined twice (also in {tmp_path / 'a.yaml'})"
    )

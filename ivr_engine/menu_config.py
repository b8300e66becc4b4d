"""Load IVR menus from YAML into the frozen domain ``Menu``; every error names file and key.

Validation happens once, at start-up: a broken menu stops the engine with a precise message
instead of leaving a caller in a half-configured menu.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ivr_engine.config_errors import load_mapping, validation_problems
from ivr_engine.data_dirs import check_menus_dir
from ivr_engine.domain.errors import ConfigError
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

_KEY = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
_PROMPT = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$", max_length=120)]
# a phrase a caller may say: lower-case words (a letter, then letters or apostrophes), 1-6 words
_PHRASE = Annotated[str, Field(pattern=r"^[a-z][a-z']*( [a-z][a-z']*){0,5}$", max_length=80)]
_DIGIT = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
_MENU_DIGITS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")
# Keys a menu may not give an option: why, in the error that names the file and key.
RESERVED_KEYS = {
    "#": "'#' ends input in Asterisk's Read and FreeSWITCH's read, so it can never choose",
    "*": "'*' is the engine's key to continue by text message",
}


def _not_reserved(value: object) -> object:
    if isinstance(value, str) and value in RESERVED_KEYS:
        raise ValueError(f"{RESERVED_KEYS[value]}: use 0-9")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        # YAML reads `digit: 3` as a number; "should be '0', ..., '9'" hid the fix
        raise ValueError(f'a key is text: quote it, "{value}", not {value}')
    return value


_KeyDigit = Annotated[_DIGIT, BeforeValidator(_not_reserved)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _FieldModel(_Strict):
    prompt: _PROMPT
    min_digits: int = Field(1, ge=1, le=32)
    max_digits: int = Field(16, ge=1, le=32)
    sensitive: bool = False
    timeout_ms: int = Field(6000, ge=1000, le=60000)
    attempts: int = Field(2, ge=1, le=5)

    @model_validator(mode="after")
    def _bounds(self) -> _FieldModel:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is greater than max_digits")
        return self


class _OptionModel(_Strict):
    intent: _KEY
    digit: _KeyDigit
    label: str = Field(min_length=1, max_length=80)
    prompt: _PROMPT
    pinned: bool = False
    required_fields: tuple[_KEY, ...] = ()
    target: str = Field("", max_length=120, pattern=r"^[A-Za-z0-9_:\-/.@]*$")
    shortcut_prompt: _PROMPT | None = None
    phrases: tuple[_PHRASE, ...] = Field((), max_length=20)


class _RankingModel(_Strict):
    half_life_days: float = Field(30.0, gt=0, le=3650)
    max_events: int = Field(50, ge=1, le=500)
    max_age_days: float = Field(365.0, gt=0, le=36500)
    open_case_boost: bool = True
    min_contacts: int = Field(2, ge=1, le=100)
    open_case_max_age_days: float = Field(14.0, gt=0, le=36500)


class _ShortcutModel(_Strict):
    enabled: bool = True
    min_share: float = Field(0.6, gt=0, le=1)
    min_contacts: int = Field(3, ge=1, le=100)
    yes_digit: _KeyDigit = "1"
    no_digit: _KeyDigit = "2"


class _PromptsModel(_Strict):
    welcome: _PROMPT = "ivr-engine/welcome"
    for_word: _PROMPT = "ivr-engine/for"
    press_word: _PROMPT = "ivr-engine/press"
    digit_prefix: str = Field("digits/", pattern=r"^[A-Za-z0-9_\-/]+/$")
    invalid: _PROMPT = "ivr-engine/invalid-option"
    no_input: _PROMPT = "ivr-engine/no-input"
    shortcut_intro: _PROMPT = "ivr-engine/shortcut-calling-about"
    shortcut_again: _PROMPT = "ivr-engine/shortcut-again"
    continue_intro: _PROMPT = "ivr-engine/continue-open-case"
    continue_question: _PROMPT = "ivr-engine/continue-question"
    continue_sms_offer: _PROMPT = "ivr-engine/continue-sms-offer"
    continue_sms_sent: _PROMPT = "ivr-engine/continue-sms-sent"
    thank_you: _PROMPT = "ivr-engine/thank-you"
    transfer: _PROMPT = "ivr-engine/transfer"
    no_match: _PROMPT = "ivr-engine/no-match"


class _SpeechModel(_Strict):
    enabled: bool = False
    prompt: _PROMPT = "ivr-engine/say-or-press"
    key_wait_ms: int = Field(700, ge=100, le=10000)
    listen_ms: int = Field(5000, ge=1000, le=20000)
    silence_s: int = Field(2, ge=1, le=5)


class _MenuModel(_Strict):
    menu: _KEY
    digit_policy: DigitPolicy = DigitPolicy.POSITIONAL
    input_timeout_ms: int = Field(5000, ge=1000, le=60000)
    attempts: int = Field(3, ge=1, le=10)
    fallback_intent: _KEY = "operator"
    verification_attempts: int = Field(2, ge=1, le=5)
    ranking: _RankingModel = _RankingModel()
    shortcut: _ShortcutModel = _ShortcutModel()
    prompts: _PromptsModel = _PromptsModel()
    fields: dict[_KEY, _FieldModel] = {}
    speech: _SpeechModel = _SpeechModel()
    options: tuple[_OptionModel, ...] = Field(min_length=1, max_length=10)  # keys 0-9


def _check_consistency(model: _MenuModel) -> list[tuple[str, str]]:
    """Cross-field rules pydantic cannot express; returns (key, problem) pairs."""
    problems: list[tuple[str, str]] = []
    seen_intents: dict[str, int] = {}
    seen_digits: dict[str, int] = {}
    for index, option in enumerate(model.options):
        key = f"options[{index}]"
        if option.intent in seen_intents:
            problems.append((f"{key}.intent", f"duplicate intent {option.intent!r}"))
        if option.digit in seen_digits:
            other = seen_digits[option.digit]
            problems.append(
                (f"{key}.digit", f"digit {option.digit} already used by options[{other}]")
            )
        seen_intents.setdefault(option.intent, index)
        seen_digits.setdefault(option.digit, index)
        for name in option.required_fields:
            if name not in model.fields:
                problems.append(
                    (f"{key}.required_fields", f"{name!r} is not defined under fields:")
                )
    if model.fallback_intent not in seen_intents:
        problems.append(("fallback_intent", f"{model.fallback_intent!r} is not an option's intent"))
    if model.shortcut.enabled and model.shortcut.yes_digit == model.shortcut.no_digit:
        problems.append(("shortcut.no_digit", "must differ from shortcut.yes_digit"))
    if model.shortcut.enabled:
        problems += _shortcut_keys_on_pinned_options(model)
        problems += _shortcut_keys_the_prompts_say(model)
    problems += _speech_phrases(model)
    return problems


def _speech_phrases(model: _MenuModel) -> list[tuple[str, str]]:
    """A speech menu needs something to say; one phrase cannot choose two options."""
    problems: list[tuple[str, str]] = []
    owners: dict[str, int] = {}
    for index, option in enumerate(model.options):
        for phrase in option.phrases:
            other = owners.setdefault(phrase, index)
            if other != index:
                where = f"options[{index}].phrases"
                problems.append((where, f"{phrase!r} is also a phrase of options[{other}]"))
    if model.speech.enabled and not owners:
        problems.append(("speech.enabled", "no option has phrases: to say, give options phrases:"))
    return problems


#: The sample prompts that name the shortcut question's keys in their words ("If so, press 1.
#: For all other options, press 2."): other keys need other recordings.
_PROMPTS_SAYING_1_AND_2 = {
    "shortcut_again": "ivr-engine/shortcut-again",
    "continue_question": "ivr-engine/continue-question",
}


def _shortcut_keys_the_prompts_say(model: _MenuModel) -> list[tuple[str, str]]:
    """Keys other than 1/2 with the sample question prompts: callers would press the key
    they are told and get the full menu instead."""
    keys = (model.shortcut.yes_digit, model.shortcut.no_digit)
    if keys == ("1", "2"):
        return []
    problems = []
    for name, sample in _PROMPTS_SAYING_1_AND_2.items():
        if getattr(model.prompts, name) == sample:
            problems.append(
                (
                    f"prompts.{name}",
                    f"{sample} says 'press 1' for yes and 'press 2' for no, but"
                    f" shortcut.yes_digit/no_digit are {keys[0]}/{keys[1]}: record a prompt"
                    " that says those keys and name it here",
                )
            )
    return problems


def _shortcut_keys_on_pinned_options(model: _MenuModel) -> list[tuple[str, str]]:
    """A pinned option's key works at the shortcut question too, but the question's own
    yes/no keys win there: on the same key, a caller pressing it for (say) the operator
    would get the shortcut's topic instead."""
    problems = []
    for name in ("yes_digit", "no_digit"):
        digit = getattr(model.shortcut, name)
        for index, option in enumerate(model.options):
            if option.pinned and option.digit == digit:
                problems.append(
                    (
                        f"shortcut.{name}",
                        f"{digit} is the pinned key of options[{index}] ({option.intent!r}):"
                        " callers pressing it at the shortcut question would not reach"
                        f" {option.intent!r}; pick another key",
                    )
                )
    return problems


def referenced_prompts(menu: Menu) -> set[str]:
    """Every prompt id a menu can play (digits included), for start-up checks."""
    return set(prompt_keys(menu))


def prompt_keys(menu: Menu) -> dict[str, list[str]]:
    """Every prompt id a menu can play → the YAML keys that name it (for error messages)."""
    prompts = menu.prompts
    named = ["welcome", "for_word", "press_word", "invalid", "no_input", "thank_you", "transfer"]
    if menu.shortcut.enabled:
        named += ["shortcut_intro", "shortcut_again", "continue_intro", "continue_question"]
    named += ["continue_sms_offer", "continue_sms_sent"]
    if menu.verification_attempts > 1 and any(s.sensitive for s in menu.fields.values()):
        named.append("no_match")  # before a known sensitive field is asked again
    keys: dict[str, list[str]] = {}
    for name in named:
        keys.setdefault(getattr(prompts, name), []).append(f"prompts.{name}")
    if menu.speech.enabled:
        keys.setdefault(menu.speech.prompt, []).append("speech.prompt")
    for index, option in enumerate(menu.options):  # the index in the file's options: list
        keys.setdefault(option.prompt, []).append(f"options[{index}].prompt")
        if option.shortcut_prompt and menu.shortcut.enabled:
            where = f"options[{index}].shortcut_prompt"
            keys.setdefault(option.shortcut_prompt, []).append(where)
    for name, spec in menu.fields.items():
        keys.setdefault(spec.prompt, []).append(f"fields.{name}.prompt")
    for digit in _MENU_DIGITS:
        keys.setdefault(_digit_prompt(prompts.digit_prefix, digit), []).append(
            "prompts.digit_prefix"
        )
    return keys


def _digit_prompt(prefix: str, digit: str) -> str:
    return prefix + {"*": "star", "#": "pound"}.get(digit, digit)


def _to_domain(model: _MenuModel) -> Menu:
    return Menu(
        name=model.menu,
        options=tuple(MenuOption(**option.model_dump()) for option in model.options),
        digit_policy=model.digit_policy,
        ranking=RankingPolicy(**model.ranking.model_dump()),
        shortcut=ShortcutPolicy(**model.shortcut.model_dump()),
        prompts=MenuPrompts(**model.prompts.model_dump()),
        fields={
            name: FieldSpec(name=name, **spec.model_dump()) for name, spec in model.fields.items()
        },
        input_timeout_ms=model.input_timeout_ms,
        attempts=model.attempts,
        fallback_intent=model.fallback_intent,
        speech=SpeechPolicy(**model.speech.model_dump()),
        verification_attempts=model.verification_attempts,
    )


def parse_menu(path: Path, text: str) -> Menu:
    """Parse and validate one menu document; raise ``ConfigError`` naming file and key."""
    raw = load_mapping(path, text, "'menu:' and 'options:'")
    try:
        model = _MenuModel.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_problems(path, exc)) from exc
    problems = _check_consistency(model)
    if problems:
        raise ConfigError("\n".join(f"{path}: {key}: {msg}" for key, msg in problems))
    return _to_domain(model)


def check_prompts_exist(menu: Menu, source: Path, available: Collection[str]) -> None:
    """Fail start-up when a menu names a prompt that is not installed."""
    core = re.compile(r"^digits/")
    keys = prompt_keys(menu)
    missing = sorted(p for p in keys if p not in available and not core.match(p))
    if missing:
        named = ", ".join(f"{p} ({', '.join(keys[p])})" for p in missing)
        raise ConfigError(
            f"{source}: prompts not found: {named} "
            "(build them with `ivr-engine prompts build` or fix the prompt ids)"
        )


def load_menus(directory: Path) -> Mapping[str, Menu]:
    """Load every ``*.yaml`` menu in ``directory``; menu names must be unique."""
    return {name: menu for name, (_, menu) in load_menu_files(directory).items()}


def load_menu_files(directory: Path) -> Mapping[str, tuple[Path, Menu]]:
    """``load_menus`` with the file each menu came from (its name need not be the menu's),
    for the checks after loading to name it."""
    check_menus_dir(directory)
    menus: dict[str, tuple[Path, Menu]] = {}
    for path in sorted(directory.glob("*.y*ml")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
        menu = parse_menu(path, text)
        if menu.name in menus:
            other = menus[menu.name][0]
            raise ConfigError(f"{path}: menu: {menu.name!r} is defined twice (also in {other})")
        menus[menu.name] = (path, menu)
    if not menus:
        raise ConfigError(f"{directory}: no menu files (*.yaml) found")
    return menus

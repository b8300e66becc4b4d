"""The classic AGI script's cached configuration (ivr_engine/classic_config.py): a cache
hit gives exactly what the full validation gives; anything stale, broken or unreadable
goes back to the full validation (and its errors), never to other behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from ivr_engine import classic_config
from ivr_engine.classic_config import CACHE_FILE, CallSettings, load_call_config
from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import DigitPolicy, Menu
from ivr_engine.menu_codec import decode_menus, encode_menus
from ivr_engine.menu_config import load_menus, parse_menu
from ivr_engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_MENUS = ROOT / "config" / "menus"
STABLE = """\
menu: other
digit_policy: stable
shortcut: {enabled: false, min_share: 0.75}
ranking: {half_life_days: 7}
options:
  - {intent: billing, digit: "1", label: Billing, prompt: p/billing}
  - {intent: operator, digit: "0", label: Operator, prompt: p/operator, pinned: true}
"""

Loaded = tuple[CallSettings, Mapping[str, Menu]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    menus = tmp_path / "menus"
    menus.mkdir()
    (menus / "main.yaml").write_bytes((SAMPLE_MENUS / "main.yaml").read_bytes())
    (menus / "other.yaml").write_text(STABLE)
    return {
        "IVR_ENGINE_MENUS_DIR": str(menus),
        "IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool"),
        "IVR_ENGINE_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
        "PATH": "/usr/bin",  # not a setting: ignored, as by load_settings
    }


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Loaded]:
    """Every full validation load_call_config runs, with what it returned."""
    seen: list[Loaded] = []
    real = classic_config.validate

    def counted(
        config_file: Path | None, environ: Mapping[str, str]
    ) -> tuple[CallSettings, Mapping[str, Menu], str | None]:
        result = real(config_file, environ)
        seen.append(result[:2])
        return result

    monkeypatch.setattr(classic_config, "validate", counted)
    return seen


def cache_of(env: Mapping[str, str]) -> Path:
    return Path(env["IVR_ENGINE_SPOOL_DIR"]) / CACHE_FILE


def test_codec_round_trip_is_exact() -> None:
    menus = dict(load_menus(SAMPLE_MENUS))
    menus["other"] = parse_menu(Path("other.yaml"), STABLE)
    assert menus["other"].digit_policy is DigitPolicy.STABLE
    decoded = decode_menus(json.loads(json.dumps(encode_menus(menus))))
    assert decoded == menus
    assert isinstance(decoded["main"].options, tuple)
    assert isinstance(decoded["main"].options[1].required_fields, tuple)


def test_codec_refuses_missing_or_extra_keys() -> None:
    encoded = encode_menus(load_menus(SAMPLE_MENUS))
    del encoded[0]["options"][0]["label"]
    with pytest.raises(ValueError, match="MenuOption"):
        decode_menus(encoded)
    encoded = encode_menus(load_menus(SAMPLE_MENUS))
    encoded[0]["ranking"]["surprise"] = 1
    with pytest.raises(ValueError, match="RankingPolicy"):
        decode_menus(encoded)


def test_default_spool_dir_is_the_settings_default() -> None:
    assert Path(classic_config.DEFAULT_SPOOL_DIR) == Settings.model_fields["spool_dir"].default


def test_second_load_is_a_cache_hit_equal_to_validation(
    env: dict[str, str], validations: list[Loaded]
) -> None:
    first = load_call_config(env)
    assert len(validations) == 1 and cache_of(env).is_file()
    assert load_call_config(env) == first == validations[0]
    assert len(validations) == 1  # no second validation
    assert first[0].decision_deadline_ms == 150 and set(first[1]) == {"main", "other"}


def test_the_caller_id_country_code_rule_survives_the_cache(
    env: dict[str, str], validations: list[Loaded]
) -> None:
    env = {**env, "IVR_ENGINE_CALLER_ID_COUNTRY_CODE_WITHOUT_PLUS": "always"}
    first = load_call_config(env)
    assert load_call_config(env) == first and len(validations) == 1  # from the cache
    assert first[0].caller_id_country_code_without_plus == "always"


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "",
        lambda text: "[]",
        lambda text: text.replace("Technical support", "Technical SUPPORT"),  # digest
        lambda text: text.replace(f'"format": {classic_config.FORMAT}', '"format": 99'),
        lambda text: text.replace('"decision_deadline_ms"', '"deadline"'),
    ],
)
def test_a_broken_cache_is_validated_again_and_rewritten(
    env: dict[str, str], validations: list[Loaded], damage: object
) -> None:
    expected = load_call_config(env)
    cache = cache_of(env)
    assert callable(damage)
    cache.write_text(damage(cache.read_text()))
    assert load_call_config(env) == expected
    assert len(validations) == 2
    assert load_call_config(env) == expected and len(validations) == 2  # rewritten


def test_a_forged_cache_with_a_matching_digest_but_wrong_shape_is_refused(
    env: dict[str, str], validations: list[Loaded]
) -> None:
    expected = load_call_config(env)
    cache = cache_of(env)
    document = json.loads(cache.read_text())
    document["body"]["menus"][0]["options"][0].pop("label")
    document["digest"] = classic_config._digest(document["body"])
    cache.write_text(json.dumps(document))
    assert load_call_config(env) == expected and len(validations) == 2


def test_changed_menus_or_settings_are_validated_again(
    env: dict[str, str], validations: list[Loaded]
) -> None:
    load_call_config(env)
    other = Path(env["IVR_ENGINE_MENUS_DIR"]) / "other.yaml"
    other.write_text(STABLE.replace("label: Billing", "label: Bills"))
    _, menus = load_call_config(env)
    assert menus["other"].options[0].label == "Bills" and len(validations) == 2
    settings, _ = load_call_config({**env, "IVR_ENGINE_DECISION_DEADLINE_MS": "90"})
    assert settings.decision_deadline_ms == 90 and len(validations) == 3


def test_a_menu_edited_while_it_is_validated_is_not_cached_under_the_new_key(
    env: dict[str, str], validations: list[Loaded], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit lands after the files were read and before the cache is written: the next
    process must validate again (and hear the edit), not reuse the old menus."""
    import ivr_engine.menu_config as menu_config

    other = Path(env["IVR_ENGINE_MENUS_DIR"]) / "other.yaml"
    real_load = menu_config.load_menus

    def load_then_edit(directory: Path) -> dict[str, Menu]:
        menus = real_load(directory)
        other.write_text(STABLE.replace("label: Billing", "label: Bills"))
        return menus

    monkeypatch.setattr(menu_config, "load_menus", load_then_edit)
    _, menus = load_call_config(env)
    assert menus["other"].options[0].label == "Billing"  # what was read
    monkeypatch.setattr(menu_config, "load_menus", real_load)
    _, menus = load_call_config(env)
    assert menus["other"].options[0].label == "Bills" and len(validations) == 2


def test_an_invalid_change_fails_as_before_even_with_a_cache(env: dict[str, str]) -> None:
    load_call_config(env)
    other = Path(env["IVR_ENGINE_MENUS_DIR"]) / "other.yaml"
    other.write_text(STABLE.replace('digit: "0"', 'digit: "1"'))
    with pytest.raises(ConfigError, match=r"other\.yaml: options\[1\]\.digit"):
        load_call_config(env)
    with pytest.raises(ConfigError, match="IVR_ENGINE_DECISION_DEADLINE_MS"):
        load_call_config({**env, "IVR_ENGINE_DECISION_DEADLINE_MS": "1"})
    with pytest.raises(ConfigError, match="IVR_ENGINE_NO_SUCH: unknown setting"):
        load_call_config({**env, "IVR_ENGINE_NO_SUCH": "1"})


def test_settings_file_named_by_ivr_engine_config(
    env: dict[str, str], tmp_path: Path, validations: list[Loaded]
) -> None:
    spool = tmp_path / "spool-from-file"
    config = tmp_path / "settings.yaml"
    config.write_text(f"spool_dir: {spool}\ndecision_deadline_ms: 200\n")
    del env["IVR_ENGINE_SPOOL_DIR"]
    env["IVR_ENGINE_CONFIG"] = str(config)  # the file, not a setting: no "unknown setting"
    settings, _ = load_call_config(env)
    assert (settings.spool_dir, settings.decision_deadline_ms) == (spool, 200)
    assert (spool / CACHE_FILE).is_file()
    assert load_call_config(env)[0] == settings and len(validations) == 1
    config.write_text(f"spool_dir: {spool}\ndecision_deadline_ms: 300\n")
    assert load_call_config(env)[0].decision_deadline_ms == 300 and len(validations) == 2


def test_an_unwritable_spool_only_costs_the_cache(
    env: dict[str, str], tmp_path: Path, validations: list[Loaded]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env["IVR_ENGINE_SPOOL_DIR"] = str(blocker / "spool")  # cannot be made: a file is there
    first = load_call_config(env)
    assert load_call_config(env) == first and len(validations) == 2


def test_the_cache_key_covers_every_module_the_validation_imports() -> None:
    """A change to any module of ours that validating settings and menus runs (the URL
    parser, the data-dir checks, YAML loading...) must miss the cache; a module left out of
    the key would let an old cache pass what the new code refuses."""
    probe = (
        "import json, sys; import ivr_engine.settings, ivr_engine.menu_config, "
        "ivr_engine.menu_codec; print(json.dumps(sorted(m.__file__ for n, m in "
        "sys.modules.items() if n.startswith('ivr_engine') and getattr(m, '__file__', None))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    package = Path(classic_config.__file__).parent
    imported = {Path(f).relative_to(package).as_posix() for f in json.loads(out)}
    assert imported <= set(classic_config._VALIDATORS), imported - set(classic_config._VALIDATORS)


def test_a_new_phonenumbers_release_misses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """default_region is checked against the regions phonenumbers knows: another release of
    it must validate again."""
    before = classic_config.settings_key(None, {})
    fake = tmp_path / "phonenumbers"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "0.0.1"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert classic_config.settings_key(None, {}) != before

"""Second-round property tests: settings from the environment and the switch/database URLs.

``load_settings`` promises ``ConfigError`` naming the source and key for any environment;
``parse_ami_url`` / ``parse_esl_url`` promise ``ValueError``; ``parse_database_url`` promises
``UnsupportedDatabaseUrl``; ``redact`` never raises. Nothing else may escape."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import Settings, load_settings, parse_ami_url, parse_esl_url
from ivr_engine.timeline.errors import UnsupportedDatabaseUrl
from ivr_engine.timeline.urls import parse_database_url, redact, split_url

_NAMES = sorted(Settings.model_fields)

_pieces = st.sampled_from(
    ["ami://", "esl://", "redis://", "sqlite:///", "postgresql://", "postgres://", "u", ":",
     "@", "[", "]", "::1", "[::1]", "%", "%zz", "%00", "/", "?", "#", "5038", "0", "65536",
     "-1", "²", "٣", "1_0", " ", "\t", "\n", "\x00", "\ud800", "é", "İ", "localhost",
     "127.0.0.1", "0.0.0.0", "10.0.0.0/8", "::ffff:10.0.0.5", "10.0.0.0/33", ",", ",,",
     "true", "false", "yes", "1e999", "nan", "inf", "-0", "1" * 30, "x" * 40, "~", "null"]
)  # fmt: skip
_value = st.one_of(st.lists(_pieces, max_size=8).map("".join), st.text(max_size=40))


@given(st.dictionaries(st.sampled_from(_NAMES), _value, max_size=6))
def test_environment_gives_settings_or_config_error(values: dict[str, str]) -> None:
    environ = {f"IVR_ENGINE_{k.upper()}": v for k, v in values.items()}
    try:
        settings = load_settings(environ=environ)
    except ConfigError:
        return
    assert isinstance(settings, Settings)


@given(st.lists(_pieces, max_size=10).map("".join) | st.text(max_size=60))
@example("ami://u:p@[::1")
@example("ami://u:p@h:99999")
@example("esl://:p@h:²")
def test_switch_urls_raise_only_value_error(url: str) -> None:
    for parse in (parse_ami_url, parse_esl_url):
        with contextlib.suppress(ValueError):
            parse(url)


@given(st.lists(_pieces, max_size=10).map("".join) | st.text(max_size=60))
@example("postgresql://u:p@h:²/db")
@example("postgresql://u:p@h:[::1/db")
@example("sqlite:///%ff")
@example("postgresql://ami://\ud800")  # UnicodeEncodeError while rendering the DSN
@example("sqlite:///~ami://")  # RuntimeError from expanduser: no user "ami:"
def test_database_urls_raise_only_the_documented_error(url: str) -> None:
    redact(url)  # for messages: never raises
    try:
        parsed = parse_database_url(url)
    except UnsupportedDatabaseUrl:
        return
    if parsed.dialect == "postgresql":
        assert parsed.postgres_dsn is not None
        split_url(parsed.postgres_dsn)  # the DSN it made parses again
    else:
        assert isinstance(parsed.sqlite_path, Path)


# found by the property above: "@" only before "://" made redact raise IndexError
@pytest.mark.parametrize("url", ["@://", "user:s3cret@postgresql://db/ivr"])
def test_unparsable_url_with_at_sign_before_scheme_is_unsupported(url: str) -> None:
    assert "s3cret" not in redact(url)
    with pytest.raises(UnsupportedDatabaseUrl):
        parse_database_url(url)


@given(st.text(max_size=30), st.text(max_size=30))
def test_settings_file_values_give_config_error(key: str, value: str) -> None:
    with contextlib.suppress(ConfigError):
        load_settings(environ={}, overrides={key: value})

"""``api_tokens`` and ``allow_unauthenticated_http``: validated at start-up, errors that name
the source and the key, and never the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import is_loopback, load_settings

GOOD = "g" * 32
OTHER = "0123456789abcdef" * 4


def test_environment_gives_comma_separated_tokens_kept_secret() -> None:
    settings = load_settings(environ={"IVR_ENGINE_API_TOKENS": f" {GOOD} ,{OTHER}"})
    assert [t.get_secret_value() for t in settings.api_tokens] == [GOOD, OTHER]
    assert GOOD not in repr(settings) and OTHER not in str(settings)


def test_the_settings_file_gives_a_list_or_a_string(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text(f"api_tokens: [{GOOD}, {OTHER}]\n")
    assert len(load_settings(config, environ={}).api_tokens) == 2
    config.write_text(f"api_tokens: {GOOD},{OTHER}\n")
    assert len(load_settings(config, environ={}).api_tokens) == 2


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("short-" + "x" * 20, "token 1 of 1: must be 32 to 512 characters"),
        (f"{GOOD},,{OTHER}", "token 2 of 3: must be 32 to 512"),
        (f"{GOOD},with space {'x' * 40}", "token 2 of 2: printable ASCII only"),
        ("x" * 513, "token 1 of 1: must be 32 to 512"),
        ("", "token 1 of 1: must be 32"),
        (",".join([GOOD] * 21), "at most 20 tokens"),
    ],
)
def test_weak_tokens_are_refused_naming_the_key_but_not_the_token(value: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"IVR_ENGINE_API_TOKENS": value})
    message = str(caught.value)
    assert message.startswith("environment: api_tokens (env IVR_ENGINE_API_TOKENS): ")
    assert why in message
    assert not value or value[:20] not in message


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "engine.example", "127.0.0.1x"])
def test_an_open_api_on_a_non_loopback_host_is_refused(host: str, tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text(f"http_host: '{host}'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    message = str(caught.value)
    assert message.startswith(f"{config}: http_host: {host!r} is not a loopback address")
    assert "IVR_ENGINE_API_TOKENS" in message and "allow_unauthenticated_http: true" in message


def test_tokens_or_the_explicit_opt_out_allow_a_network_host() -> None:
    exposed = {"IVR_ENGINE_HTTP_HOST": "0.0.0.0"}
    with_tokens = load_settings(environ={**exposed, "IVR_ENGINE_API_TOKENS": GOOD})
    assert with_tokens.http_host == "0.0.0.0" and with_tokens.allow_unauthenticated_http is False
    opted_out = load_settings(environ={**exposed, "IVR_ENGINE_ALLOW_UNAUTHENTICATED_HTTP": "true"})
    assert opted_out.api_tokens == []
    with pytest.raises(ConfigError, match="http_host"):  # an admin token alone is not enough
        load_settings(environ={**exposed, "IVR_ENGINE_ADMIN_TOKEN": GOOD})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_hosts_need_no_token(host: str) -> None:
    assert is_loopback(host)
    assert load_settings(environ={"IVR_ENGINE_HTTP_HOST": host}).api_tokens == []


def test_the_quick_start_default_is_loopback_and_open() -> None:
    settings = load_settings(environ={})
    assert settings.http_host == "127.0.0.1" and settings.api_tokens == []

from pathlib import Path

import pytest

from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import CONFIG_ENV, config_file_from, load_settings


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings(environ={})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.agi_port == 4573 and settings.agi_backlog >= 1024
    assert settings.decision_deadline_ms == 150


def test_layers_file_then_environment_then_command_line(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("agi_port: 5000\nhttp_port: 9000\ndecision_deadline_ms: 200\n")
    settings = load_settings(
        config,
        environ={"IVR_ENGINE_HTTP_PORT": "9100", "IVR_ENGINE_AGI_PORT": "5100"},
        overrides={"agi_port": 5200, "http_port": None},
    )
    assert (settings.agi_port, settings.http_port, settings.decision_deadline_ms) == (
        5200,
        9100,
        200,
    )


def test_errors_name_the_source_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"environment: agi_port \(env IVR_ENGINE_AGI_PORT\)"):
        load_settings(environ={"IVR_ENGINE_AGI_PORT": "not-a-port"})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(environ={"IVR_ENGINE_AGI_PROT": "1"})
    config = tmp_path / "engine.yaml"
    config.write_text("database_url: mysql://x\n")
    with pytest.raises(ConfigError, match=rf"{config}: database_url: .*sqlite:///PATH"):
        load_settings(config, environ={})
    config.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(config, environ={})
    config.write_text("key: [unclosed")
    with pytest.raises(ConfigError, match="cannot read settings"):
        load_settings(config, environ={})


def test_an_empty_environment_value_switches_an_optional_setting_off(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("esl_port: 8084\nauto_wrap_up_s: 30\n")
    assert load_settings(config, environ={}).esl_port == 8084
    settings = load_settings(
        config, environ={"IVR_ENGINE_ESL_PORT": "", "IVR_ENGINE_AUTO_WRAP_UP_S": " "}
    )
    assert settings.esl_port is None and settings.auto_wrap_up_s is None
    with pytest.raises(ConfigError, match="agi_port"):  # not optional: still an error
        load_settings(environ={"IVR_ENGINE_AGI_PORT": ""})


def test_list_settings_come_comma_separated_from_the_environment() -> None:
    settings = load_settings(
        environ={"IVR_ENGINE_DESKTOP_ALLOWED_ORIGINS": "https://a.example, https://b.example"}
    )
    assert settings.desktop_allowed_origins == ["https://a.example", "https://b.example"]
    empty = {"IVR_ENGINE_DESKTOP_ALLOWED_ORIGINS": ""}
    assert load_settings(environ=empty).desktop_allowed_origins == []


def test_ivr_engine_config_names_the_file_and_is_not_an_unknown_setting(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    environ = {CONFIG_ENV: str(config)}
    assert load_settings(environ=environ) == load_settings(environ={})
    assert config_file_from(environ) == config
    assert config_file_from({}, tmp_path) == tmp_path
    with pytest.raises(ConfigError, match="IVR_ENGINE_CONFIG names the settings file"):
        load_settings(environ={"IVR_ENGINE_CONFG": "x"})


def test_log_level_in_any_case() -> None:
    assert load_settings(environ={"IVR_ENGINE_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="log_level"):
        load_settings(environ={"IVR_ENGINE_LOG_LEVEL": "chatty"})


def test_a_misspelt_setting_in_the_file_lists_the_known_ones(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("agi_prot: 4573\n")
    with pytest.raises(ConfigError, match=r"engine\.yaml: agi_prot: unknown setting \(known: \["):
        load_settings(config, environ={})


def test_a_bad_esl_url_is_refused_with_the_settings() -> None:
    """Every command that reads the settings (run, check-config, bridge) refuses it."""
    with pytest.raises(
        ConfigError, match=r"esl_url \(env IVR_ENGINE_ESL_URL\): .*scheme must be esl"
    ):
        load_settings(environ={"IVR_ENGINE_ESL_URL": "http://nope"})


def test_an_ami_url_with_port_0_is_refused_not_read_as_5038() -> None:
    from ivr_engine.settings import parse_ami_url

    assert parse_ami_url("ami://u:s@pbx")[:2] == ("pbx", 5038)  # no port: the default
    with pytest.raises(ValueError, match="ami://USER:SECRET@HOST:5038"):
        parse_ami_url("ami://u:s@pbx:0")


@pytest.mark.parametrize(
    "text",
    [
        'api_tokens: ["{token}\n',  # an unclosed quote on the token's line
        "api_tokens: [{token}\n",
        "admin_token: *{token}\n",  # an alias PyYAML names in its message
        "admin_token: !!int {token}\n",  # a value it cannot build, quoted in the message
        "admin_token: !!timestamp {token}\n",  # its constructor raises AttributeError
        "a: 1\n\tapi_tokens: {token}\n",
    ],
)
def test_a_settings_file_that_is_not_yaml_is_reported_without_its_text(
    tmp_path: Path, text: str
) -> None:
    """PyYAML copies the bad line into its message; a settings file holds tokens."""
    token = "s3cret-" + "x" * 40
    config = tmp_path / "engine.yaml"
    config.write_text(text.format(token=token))
    with pytest.raises(ConfigError, match=r"cannot read settings") as raised:
        load_settings(config, environ={})
    assert str(config) in str(raised.value)
    assert "s3cret" not in str(raised.value) and "xxxxxxxx" not in str(raised.value)


def test_a_value_the_settings_file_cannot_build_is_named_by_file_line_and_type_only(
    tmp_path: Path,
) -> None:
    """Not the constructor's message: ``int()`` quotes 200 characters of a longer token,
    cut before its closing quote (so no masking of quoted pieces could find it)."""
    token = "s3cret-" + "x" * 300
    config = tmp_path / "engine.yaml"
    config.write_text(f"http_port: 8080\nadmin_token: !!int {token}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ={})
    assert str(raised.value) == (
        f"{config}: cannot read settings: a !!int value cannot be built (ValueError) "
        "(line 2, column 14)"
    )


def test_a_yaml_error_in_the_settings_file_chains_no_copy_of_the_line(tmp_path: Path) -> None:
    """A traceback of the error (a crash report, ``log.exception``) must not carry PyYAML's
    own message either: it quotes the line, and the line holds a token."""
    import traceback

    token = "tok-0123456789abcdef0123456789abcdef"
    config = tmp_path / "engine.yaml"
    config.write_text(f"api_tokens: ['{token}'\nagi_port: 4573\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ={})
    printed = "".join(traceback.format_exception(raised.value))
    assert "cannot read settings" in printed
    assert "0123456789abcdef" not in printed  # PyYAML's snippet shows the line's first 40


def test_an_invalid_setting_chains_no_copy_of_its_value() -> None:
    """pydantic's ValidationError quotes the input: a printed traceback of the ConfigError
    must not carry it (a weak token is still a token)."""
    import traceback

    weak = "weak" + "TOKEN123"  # not as one literal: the traceback quotes this file's lines
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"IVR_ENGINE_ADMIN_TOKEN": weak})
    printed = "".join(traceback.format_exception(raised.value))
    assert "admin_token" in printed and weak not in printed


def test_an_invalid_bridge_setting_chains_no_copy_of_its_value() -> None:
    import traceback

    from crm_bridge.calls.settings import BridgeSettings

    weak = "weak" + "TOKEN123"  # not as one literal: the traceback quotes this file's lines
    with pytest.raises(ConfigError) as raised:
        BridgeSettings.build(database_url="x", ami_url=f"ami://u:{weak}", esl_url=None)
    printed = "".join(traceback.format_exception(raised.value))
    assert "ami_url" in printed and weak not in printed


def test_the_ring_expiry_must_outlast_the_ring() -> None:
    assert load_settings(environ={}).ring_expiry_s is None  # the router: ring + 30 s
    ok = load_settings(environ={"IVR_ENGINE_RING_EXPIRY_S": "45"})
    assert (ok.ring_timeout_s, ok.ring_expiry_s) == (20.0, 45.0)
    for bad in ("20", "10"):
        with pytest.raises(ConfigError, match=r"ring_expiry_s .* not longer than ring_timeout_s"):
            load_settings(environ={"IVR_ENGINE_RING_EXPIRY_S": bad})
    for bad in ("0", "-5", "3601", "nan"):
        with pytest.raises(ConfigError, match="ring_expiry_s"):
            load_settings(environ={"IVR_ENGINE_RING_EXPIRY_S": bad})


def test_the_http_body_timeout_is_bounded() -> None:
    """A body of the HTTP API must arrive within 10 s by default; 0, negative or over 300 s
    (a handler held for minutes) is refused, naming the key."""
    assert load_settings(environ={}).http_body_timeout_s == 10.0
    env = "IVR_ENGINE_HTTP_BODY_TIMEOUT_S"
    assert load_settings(environ={env: "2.5"}).http_body_timeout_s == 2.5
    for bad in ("0", "-1", "301"):
        with pytest.raises(ConfigError, match=rf"http_body_timeout_s \(env {env}\)"):
            load_settings(environ={env: bad})

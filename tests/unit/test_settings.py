from pathlib import Path

import pytest

from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import load_settings


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

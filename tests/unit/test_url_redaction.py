"""Passwords in database and Redis URLs never reach a log line or an error message: in the
URL's userinfo (also with a raw ``@`` in them), or as ``?password=`` (asyncpg, libpq and
redis-py all take it there)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crm_bridge.bus import open_event_bus
from ivr_engine.agents import check_agent_state_url
from ivr_engine.domain.errors import ConfigError
from ivr_engine.redis_client import open_redis
from ivr_engine.settings import load_settings
from ivr_engine.timeline.urls import parse_database_url, redact

SECRET = "s3cret-Pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://u@db:5432/x?password={SECRET}", "postgresql://u@db:5432/x?password=***"),
        (f"postgresql://u:p@{SECRET}@db/x", "postgresql://u:***@db/x"),
        (f"postgresql://u:{SECRET}@db/x", "postgresql://u:***@db/x"),
        (
            f"postgresql://u@db/x?sslmode=require&sslpassword={SECRET}&PassFile={SECRET}",
            "postgresql://u@db/x?PassFile=***&sslmode=require&sslpassword=***",
        ),
        (f"redis://:{SECRET}@10.0.0.9:6379/0", "redis://:***@10.0.0.9:6379/0"),
        (f"rediss://user:a@{SECRET}@h:6380/1", "rediss://user:***@h:6380/1"),
        (
            f"unix:///run/redis.sock?db=0&password={SECRET}",
            "unix:///run/redis.sock?db=0&password=***",
        ),
        (f"reds://:{SECRET}@10.0.0.9:6379/0", "reds://:***@10.0.0.9:6379/0"),
        ("sqlite:///data/ivr.db", "sqlite:///data/ivr.db"),
        ("postgresql://u@db:5432/x", "postgresql://u@db:5432/x"),
    ],
)
def test_redact_hides_every_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert SECRET not in redact(url)


@pytest.mark.parametrize(
    "url", [f"pg ://u:{SECRET}@h/x?password={SECRET}", f"x:{SECRET}@h?password={SECRET}"]
)
def test_redact_of_text_that_is_no_url_hides_the_password_too(url: str) -> None:
    assert SECRET not in redact(url)


def test_the_dsn_given_to_the_driver_keeps_the_password() -> None:
    parsed = parse_database_url(f"postgresql://u@db:5432/x?password={SECRET}")
    assert parsed.postgres_dsn is not None and SECRET in parsed.postgres_dsn


def test_a_mistyped_agent_state_or_bus_url_is_named_without_its_password() -> None:
    url = f"reds://:{SECRET}@10.0.0.9:6379/0"
    with pytest.raises(
        ConfigError, match=re.escape("agent_state_url 'reds://:***@10.0.0.9")
    ) as raised:
        check_agent_state_url(url)
    assert SECRET not in str(raised.value)
    with pytest.raises(ConfigError, match="event bus url") as bus:
        open_event_bus(url)
    assert SECRET not in str(bus.value)


def test_redis_py_refusing_a_url_does_not_echo_the_password() -> None:
    with pytest.raises(ValueError, match="Redis URL") as raised:
        open_redis(f"redis://:{SECRET}@h:63x79/0", connect_timeout_s=1)
    assert SECRET not in str(raised.value)


def test_the_workers_rule_names_the_agent_state_url_without_its_password(tmp_path: Path) -> None:
    agents = tmp_path / "agents.yaml"
    agents.write_text("agents: []\n")
    environ = {
        "IVR_ENGINE_WORKERS": "2",
        "IVR_ENGINE_AGENTS_FILE": str(agents),
        "IVR_ENGINE_AGENT_STATE_URL": f"memory://:{SECRET}@x",
    }
    with pytest.raises(ConfigError, match="agent_state_url") as raised:
        load_settings(environ=environ)
    assert SECRET not in str(raised.value)

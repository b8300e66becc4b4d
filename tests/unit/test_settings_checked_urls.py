"""The database URL, the Redis URLs and the caller-ID region are refused when the settings
load, naming the source and the key: before, a URL the engine cannot open (``sqlite:///``, a
PostgreSQL URL without a database, a Redis URL with a bad port or option) passed and failed
at start-up or at the first call, the async forms the engine supports were refused, and a
region phonenumbers does not know (``ZZ``) identified no caller at all, silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_bridge.calls import BridgeSettings
from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import load_settings


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/x.db",
        "sqlite+aiosqlite:///data/x.db",
        "postgresql://ivr@127.0.0.1:5432/test",
        "postgres://ivr@db/test",
        "postgresql+asyncpg://ivr:secret@db:5432/test",
    ],
)
def test_every_database_url_form_the_engine_opens_is_taken(url: str) -> None:
    assert load_settings(environ={"IVR_ENGINE_DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("sqlite:///", "SQLite needs a file path"),
        ("sqlite:///:memory:", "SQLite needs a file path"),
        ("sqlite://host/x.db", "a SQLite URL has no host"),
        ("postgresql://ivr:hunter2@db:5432", "name the database"),
        ("mysql://x/y", "unsupported scheme 'mysql'"),
    ],
)
def test_a_database_url_the_engine_cannot_open_is_refused_on_load(
    tmp_path: Path, url: str, said: str
) -> None:
    with pytest.raises(ConfigError, match=r"environment: database_url \(env IVR_ENGINE_DATA"):
        load_settings(environ={"IVR_ENGINE_DATABASE_URL": url})
    config = tmp_path / "engine.yaml"
    config.write_text(f"database_url: '{url}'\n")
    with pytest.raises(ConfigError, match=rf"{config}: database_url: ") as caught:
        load_settings(config, environ={})
    assert said in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize("key", ["agent_state_url", "continuation_redis_url"])
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("memcached://h:11211", "scheme must be redis, rediss or unix"),
        ("redis://:pa/ss@h:6379/0", "the port is not a number"),
        ("redis://h:99999/0", "the port is not a number"),
        ("redis://h:6379/zero", "the database after the port must be a number"),
        ("redis://u:hun@pa/ss@h/0", "'/' must be percent-encoded as %2F, '@' as %40"),
        ("redis://u:hun@pa/ss@h:6379/0", "'/' must be percent-encoded as %2F, '@' as %40"),
        ("rediss://pa/ss@h/0", "'/' must be percent-encoded as %2F, '@' as %40"),
        ("redis://h:6379/0?socket_timeout=soon", "refused by redis-py"),
        ("unix://", "no socket path"),
    ],
)
def test_a_redis_url_redis_py_cannot_use_is_refused_on_load(key: str, url: str, said: str) -> None:
    env = f"IVR_ENGINE_{key.upper()}"
    with pytest.raises(ConfigError, match=rf"environment: {key} \(env {env}\): ") as caught:
        load_settings(environ={env: url})
    assert said in str(caught.value)
    assert "pa/ss" not in str(caught.value) and "ss@" not in str(caught.value)
    assert "hun" not in str(caught.value)


def test_redis_urls_redis_py_takes_are_taken() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@h/3", "unix:///run/redis.sock?db=1"):
        settings = load_settings(
            environ={"IVR_ENGINE_AGENT_STATE_URL": url, "IVR_ENGINE_CONTINUATION_REDIS_URL": url}
        )
        assert settings.agent_state_url == settings.continuation_redis_url == url
    memory = load_settings(environ={"IVR_ENGINE_AGENT_STATE_URL": "memory://"})
    assert memory.agent_state_url == "memory://"


def test_a_region_phonenumbers_does_not_know_is_refused_on_load() -> None:
    assert load_settings(environ={"IVR_ENGINE_DEFAULT_REGION": "GB"}).default_region == "GB"
    for code in ("ZZ", "XX", "gb", "USA"):
        with pytest.raises(
            ConfigError, match=r"default_region \(env IVR_ENGINE_DEFAULT_REGION\): .*not a region"
        ):
            load_settings(environ={"IVR_ENGINE_DEFAULT_REGION": code})


def test_the_bridge_checks_its_database_url_and_region_alike() -> None:
    with pytest.raises(ConfigError, match=r"database_url.*name the database"):
        BridgeSettings.build(roles=frozenset({"consumer"}), database_url="postgresql://db")
    with pytest.raises(ConfigError, match=r"default_region.*not a region"):
        BridgeSettings.build(
            roles=frozenset({"consumer"}), database_url="sqlite:///x.db", default_region="ZZ"
        )

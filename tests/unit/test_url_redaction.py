"""Passwords in database and Redis URLs never reach a log line or an error message: in the
URL's userinfo (also with a raw ``@`` in them), or as ``?password=`` (asyncpg, libpq and
redis-py all take it there)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from crm_bridge.bus import open_event_bus
from crm_bridge.calls.settings import BridgeSettings
from crm_bridge.webhooks.subscriptions import check_webhook_url
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
        # a raw "@" then a raw "/" in the password: the grammar reads "s3cret" as the host
        # and "-Pw@db:5432/x" as the database; all up to the database's last "@" is hidden
        ("postgresql://u:p@s3cret/-Pw@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("redis://:p@s3cret/-Pw@10.0.0.9:6379/0", "redis://:***@10.0.0.9:6379/0"),
        # ... or a raw "?" or "#" (query, fragment), or both
        ("postgresql://u:p@s3cret?-Pw@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u:p@s3cret?x=-Pw@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u:p@s3cret/-P?w@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u:p@s3cret#-Pw@db/x", "postgresql://u:***@db/x"),
        ("redis://:p@s3cret?-Pw@10.0.0.9:6379/0", "redis://:***@10.0.0.9:6379/0"),
        # the safe reading: a valid URL whose database holds an "@" shows what follows it
        ("postgresql://u:pw@db.example.com:5432/sales@eu", "postgresql://u:***@eu"),
        # no password: an "@" in the query is not read as one
        ("postgresql://u@db/x?options=a@b", "postgresql://u@db/x?options=a%40b"),
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


# A raw "/", "?", "#" (or "[...]") in a password ends the URL's userinfo early: what follows
# is read as the port, or as a bracketed host, and urllib's (or int()'s) message quotes it.
PIECE = "Sekretpart"
_RAW = [f"{PIECE}/rest", f"{PIECE}?rest", f"{PIECE}#rest", f"a[{PIECE}]b"]


def _message_of(call: Callable[[], object]) -> str:
    with pytest.raises((ValueError, ConfigError)) as raised:
        call()
    return str(raised.value)


@pytest.mark.parametrize("password", _RAW)
@pytest.mark.parametrize(
    "refuse",
    [
        lambda pw: load_settings(environ={"IVR_ENGINE_ESL_URL": f"esl://:{pw}@fs:8021"}),
        lambda pw: load_settings(environ={"IVR_ENGINE_AMI_URL": f"ami://ivr:{pw}@pbx:5038"}),
        lambda pw: BridgeSettings.build(esl_url=f"esl://:{pw}@fs:8021", database_url="x"),
        lambda pw: BridgeSettings.build(ami_url=f"ami://ivr:{pw}@pbx:5038", database_url="x"),
        lambda pw: open_redis(f"redis://:{pw}@h:6379/0", connect_timeout_s=1),
        lambda pw: open_event_bus(f"rediss://u:{pw}@h:6380/0"),
        lambda pw: check_webhook_url(f"https://u:{pw}@crm.example.com/hook"),
    ],
    ids=["esl_url", "ami_url", "bridge esl_url", "bridge ami_url", "redis", "bus", "webhook"],
)
def test_a_url_refused_for_a_raw_character_in_its_password_is_not_echoed(
    refuse: Callable[[str], object], password: str
) -> None:
    message = _message_of(lambda: refuse(password))
    assert PIECE not in message and "rest" not in message, message


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{PIECE}/rest",  # no host after it: the piece is read as the port
        f"postgresql://u:{PIECE}",
        f"sqlite://u:{PIECE}@h/x.db",  # SQLite has no host: the URL was said as written
        f"sqlite:///x.db?password={PIECE}",
        f"postgresql://u:p@{PIECE}?rest@h",  # read as host PIECE, no database: refused
        f"postgresql://u:p@{PIECE}#rest@h",
    ],
)
def test_a_refused_database_url_is_said_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_database_url(url)
    assert PIECE not in str(raised.value) and "database_url" in str(raised.value)


@pytest.mark.parametrize("rest", ["/rest", "?rest", "#rest"])
@pytest.mark.parametrize(
    "refuse",
    [
        lambda pw: load_settings(environ={"IVR_ENGINE_AMI_URL": f"ami://ivr:{pw}@pbx:5038"}),
        lambda pw: BridgeSettings.build(ami_url=f"ami://ivr:{pw}@pbx:5038", database_url="x"),
    ],
    ids=["ami_url", "bridge ami_url"],
)
def test_an_ami_secret_with_a_raw_at_sign_then_slash_query_or_fragment_is_refused(
    refuse: Callable[[str], object], rest: str
) -> None:
    """``ivr:p@Sekretpart?rest@pbx`` reads as host ``Sekretpart``: it was accepted, and the
    AMI client logged that host (a piece of the secret) on every connection attempt."""
    message = _message_of(lambda: refuse(f"p@{PIECE}{rest}"))
    assert PIECE not in message and "rest" not in message, message
    assert "nothing after the port" in message

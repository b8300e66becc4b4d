"""Several PostgreSQL servers in one database URL (libpq's multi-host failover): every form
libpq and SQLAlchemy write is read into one list of servers, ``target_session_attrs`` is
``read-write`` unless said, malformed lists are refused when the settings load with the
entry and the fix named, and the password never shows. Before, ``h1:5432,h2:5432`` was
"cannot parse" and ``h1,h2`` was read as one host named ``h1,h2``."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import load_settings
from ivr_engine.timeline.pg_connect import engine_options
from ivr_engine.timeline.pg_servers import PgServer
from ivr_engine.timeline.urls import parse_database_url, redact

SECRET = "s3cret-Pw"
TWO = (PgServer("h1", 5432), PgServer("h2", 5433))


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        ("postgresql://u@h1:5432,h2:5433/ivr", TWO),
        ("postgresql://u@h1,h2:5433/ivr", TWO),  # no port: 5432
        ("postgres://u@/ivr?host=h1:5432&host=h2:5433", TWO),  # SQLAlchemy's form
        ("postgresql+asyncpg://u@/ivr?host=h1,h2&port=5432,5433", TWO),  # libpq's keywords
        ("postgresql://u@/ivr?host=h1&host=h2:5433", TWO),
        ("postgresql://u@/ivr?host=h1,h2&port=5433", (PgServer("h1", 5433), PgServer("h2", 5433))),
        (
            "postgresql://u@[fd00::1]:5432,10.0.0.2,db3.example:6432/ivr",
            (PgServer("fd00::1", 5432), PgServer("10.0.0.2", 5432), PgServer("db3.example", 6432)),
        ),
    ],
)
def test_every_multi_host_form_gives_the_servers_in_order(
    url: str, servers: tuple[PgServer, ...]
) -> None:
    parsed = parse_database_url(url)
    assert parsed.servers == servers
    assert parsed.session_attrs == "read-write"  # the engine writes every call
    # the one DSN every raw path gets: the servers in order, and the session asked for
    listed = ",".join(map(str, servers))
    assert parsed.postgres_dsn == f"postgresql://u@{listed}/ivr?target_session_attrs=read-write"
    # SQLAlchemy's URL names no server: its engines connect through pg_connect
    assert parsed.async_url.host is None and "host" not in parsed.async_url.query


@pytest.mark.parametrize("attrs", ["primary", "any", "read-write"])
def test_target_session_attrs_given_is_kept(attrs: str) -> None:
    parsed = parse_database_url(f"postgresql://u@h1,h2/ivr?target_session_attrs={attrs}")
    assert parsed.session_attrs == attrs
    assert parsed.postgres_dsn is not None
    assert parsed.postgres_dsn.endswith(f"?target_session_attrs={attrs}")


def test_one_server_is_given_to_the_driver_as_before() -> None:
    for url in ("postgresql://u:pw@db:5433/ivr", "postgresql://u@/ivr?host=db:5433"):
        parsed = parse_database_url(url)
        assert parsed.servers == () and parsed.session_attrs is None
    parsed = parse_database_url("postgresql://u@db/ivr?target_session_attrs=primary")
    assert parsed.session_attrs == "primary" and parsed.servers == ()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://u:{s}@h1,,h2/ivr", "host 2 of 3 is empty"),
        ("postgresql://u:{s}@h1,h2,/ivr", "host 3 of 3 is empty"),
        ("postgresql://u:{s}@h1:54x2,h2/ivr", "host 1 of 2: the port '54x2' is not a number"),
        ("postgresql://u:{s}@h1,h2:0/ivr", "host 2 of 2: the port '0' is not a number"),
        ("postgresql://u:{s}@h1,h2:70000/ivr", "the port '70000' is not a number from 1 to"),
        ("postgresql://u:{s}@h1,h2:/ivr", "host 2 of 2: the port '' is not a number"),
        ("postgresql://u:{s}@h1,[fd00::1/ivr", "host 2 of 2 ('[fd00::1') is not HOST, HOST:"),
        ("postgresql://u:{s}@h1,h2/ivr?host=h3", "listed twice"),
        ("postgresql://u:{s}@h1/ivr?host=h2&host=h3", "listed twice"),
        ("postgresql://u:{s}@/ivr?host=h1:5432,h2&port=5432", "give them one way"),
        ("postgresql://u:{s}@/ivr?host=h1,h2,h3&port=1,2", "3 hosts but 2 ports"),
        ("postgresql://u:{s}@/ivr?host=h1,h2&port=1,x", "port 2 of 2: the port 'x' is not"),
        ("postgresql://u:{s}@/ivr?host=h1,/run/postgresql", "a socket directory cannot be one"),
        ("postgresql://u:{s}@h1,h2/ivr?target_session_attrs=standby", "would refuse the writes"),
        ("postgresql://u:{s}@h1,h2/ivr?target_session_attrs=read-only", "would refuse the"),
        ("postgresql://u:{s}@h1,h2/ivr?target_session_attrs=prefer-standby", "refuse the"),
        ("postgresql://u:{s}@db/ivr?target_session_attrs=readwrite", "is not one of read-write"),
        (
            "postgresql://u:{s}@h1,h2/ivr?target_session_attrs=any&target_session_attrs=primary",
            "given 2 times",
        ),
        ("postgresql://u:p@{s}@h1,h2/ivr", "a raw '@' in the password must be percent-encoded"),
        ("postgresql://u:{s}@h1,h2", "name the database"),
    ],
)
def test_a_malformed_server_list_is_refused_on_load_saying_what_to_fix(
    tmp_path: Path, url: str, said: str
) -> None:
    url = url.format(s=SECRET)
    with pytest.raises(ConfigError, match=r"environment: database_url \(env IVR_ENGINE_DATA"):
        load_settings(environ={"IVR_ENGINE_DATABASE_URL": url})
    config = tmp_path / "engine.yaml"
    config.write_text(f"database_url: '{url}'\n")
    with pytest.raises(ConfigError, match=rf"{config}: database_url: ") as caught:
        load_settings(config, environ={})
    assert said in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql://u:{SECRET}@h1:5432,h2:5433/ivr?target_session_attrs=primary",
            "postgresql://u:***@h1:5432,h2:5433/ivr?target_session_attrs=primary",
        ),
        (f"postgresql://u:{SECRET}@[::1],h2/ivr", "postgresql://u:***@[::1],h2/ivr"),
        (
            f"postgresql://u@/ivr?host=h1:1&host=h2:2&password={SECRET}",
            "postgresql://u@/ivr?host=h1%3A1&host=h2%3A2&password=***",
        ),
        (f"postgresql://u:p@{SECRET}@h1,h2/ivr", "postgresql://u:***@h1,h2/ivr"),
        (f"postgresql://u:{SECRET}@h1,,h2/ivr", "postgresql://***@h1,,h2/ivr"),  # malformed
    ],
)
def test_redaction_keeps_every_server_and_hides_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_dsn_keeps_the_password_and_the_other_options() -> None:
    parsed = parse_database_url(f"postgresql://u:{SECRET}@h1,h2/ivr?sslmode=require")
    assert parsed.postgres_dsn == (
        f"postgresql://u:{SECRET}@h1:5432,h2:5432/ivr"
        "?sslmode=require&target_session_attrs=read-write"
    )


def test_sqlalchemy_engines_of_several_servers_connect_through_pg_connect() -> None:
    parsed = parse_database_url("postgresql://u@[fd00::1]:5432,h2/ivr")
    options = engine_options(parsed, connect_timeout_s=1.5)
    assert set(options) == {"async_creator"}
    create_async_engine(parsed.async_url, **options)  # SQLAlchemy takes the URL as it is
    one = engine_options(parse_database_url("postgresql://u@db/ivr"), connect_timeout_s=1.5)
    assert one == {"connect_args": {"timeout": 1.5}}


def test_several_hosts_in_a_sqlite_url_are_refused() -> None:
    with pytest.raises(ConfigError, match="a SQLite URL has no host"):
        parse_database_url("sqlite://h1,h2/x.db")

"""Database URLs are parsed without SQLAlchemy (the classic AGI script's path), exactly as
``sqlalchemy.make_url`` parses and renders them (a list of servers, ``h1,h2:5433``, is
read as libpq reads it instead: tests/unit/test_pg_servers.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from ivr_engine.domain.errors import ConfigError
from ivr_engine.timeline.urls import parse_database_url, redact, split_url

URLS = [
    "sqlite:///data/x.db",
    "sqlite:////var/lib/x.db",
    "sqlite+aiosqlite:///rel/dir/x%20y.db",
    "postgresql://u:p%40ss@db:5433/ivr",
    "postgresql://u:p%2Fs%3As+x@db/ivr",
    "postgres://u@db/ivr",
    "postgresql+asyncpg://u@db/ivr",
    "postgresql://u@[::1]:5432/ivr",
    "postgresql://u@db/ivr?sslmode=require&application_name=a%20b&target_session_attrs=any",
    "postgresql://u@db/ivr?options=-c%20x&options=-c%20y",
    "postgresql://user%40corp:pw@db/ivr",
    "postgresql://:pw@db/ivr",
    "postgresql://db/ivr",
    "postgresql:///ivr",
    "mysql://u@h/db",
]


@pytest.mark.parametrize("url", URLS)
def test_parts_and_rendering_match_sqlalchemy(url: str) -> None:
    ours, theirs = split_url(url), make_url(url)
    assert ours.to_sqlalchemy() == theirs
    for hide in (True, False):
        assert ours.render(hide_password=hide) == theirs.render_as_string(hide_password=hide)


@pytest.mark.parametrize("url", URLS[:-1])
def test_async_url_and_dsn_are_what_make_url_gave(url: str) -> None:
    parsed = parse_database_url(url)
    assert parsed.async_url_string == parsed.async_url.render_as_string(hide_password=False)
    theirs = make_url(url)
    if parsed.dialect == "postgresql":
        want = theirs.set(drivername="postgresql+asyncpg")
        assert parsed.async_url == want
        dsn = theirs.set(drivername="postgresql").render_as_string(hide_password=False)
        assert parsed.postgres_dsn == dsn


def test_redact_hides_the_password_only() -> None:
    assert redact("postgresql://u:s3cret@db:5433/ivr") == "postgresql://u:***@db:5433/ivr"
    assert redact("not a url") == "not a url"


@pytest.mark.parametrize("url", ["postgresql://u@db:port/ivr", "sqlite://", "nonsense"])
def test_unparseable_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///|postgresql://"):
        parse_database_url(url)

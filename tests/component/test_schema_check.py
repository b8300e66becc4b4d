"""A PostgreSQL timeline whose schema is behind the code is refused at start-up, with the
command that fixes it, instead of an engine that says "ready" and serves static menus."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ivr_engine.app import Engine
from ivr_engine.domain.errors import ConfigError
from ivr_engine.timeline import open_timeline
from ivr_engine.timeline.migrate import upgrade
from tests.component.test_ivr_flow import settings_for

pytestmark = pytest.mark.postgres

NewDatabase = Callable[[], Coroutine[Any, Any, str]]


async def test_a_never_migrated_postgresql_is_refused_with_the_command(
    new_pg_database: NewDatabase,
) -> None:
    url = await new_pg_database()
    with pytest.raises(ConfigError, match=r"\(none: never migrated\).*run `ivr-engine migrate`"):
        await open_timeline(url)
    await upgrade(url)
    timeline = await open_timeline(url)  # migrated: opens
    await timeline.close()


async def test_an_older_revision_is_refused_and_names_both_revisions(
    new_pg_database: NewDatabase,
) -> None:
    url = await new_pg_database()
    await upgrade(url, "0002")
    with pytest.raises(ConfigError, match="at revision 0002, this engine needs 0007"):
        await open_timeline(url)


async def test_a_revision_from_a_newer_engine_is_logged_and_allowed(
    new_pg_database: NewDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    url = await new_pg_database()
    await upgrade(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = '0099'")
    finally:
        await conn.close()
    with caplog.at_level(logging.WARNING):
        timeline = await open_timeline(url)
    await timeline.close()
    assert any("0099, unknown to this engine" in r.getMessage() for r in caplog.records)


async def test_the_engine_does_not_start_on_an_unmigrated_database(
    new_pg_database: NewDatabase, tmp_path: Path
) -> None:
    engine = Engine(settings_for(await new_pg_database(), tmp_path))
    try:
        with pytest.raises(ConfigError, match="ivr-engine migrate"):
            await engine.start()
    finally:
        await engine.stop()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("nobody_ivr_test@127.0.0.1:5432/test", 'role "nobody_ivr_test" does not exist'),
        ("postgres@127.0.0.1:5432/no_such_ivr_db", 'database "no_such_ivr_db" does not exist'),
    ],
)
async def test_a_refused_role_or_database_is_a_config_error_not_an_outage(
    path: str, reason: str
) -> None:
    """A typo in database_url used to start "ready" and serve static menus for ever."""
    with pytest.raises(ConfigError, match=f"refused the connection: {reason}"):
        await open_timeline("postgresql://" + path)


async def test_an_unreachable_server_still_starts_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        timeline = await open_timeline("postgresql://postgres@127.0.0.1:1/test")
    await timeline.close()
    assert any("schema not checked" in r.getMessage() for r in caplog.records)

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
    with pytest.raises(ConfigError, match="at revision 0002, this engine needs 0004"):
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

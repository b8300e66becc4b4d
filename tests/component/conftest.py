"""Shared fixtures for component tests against real databases.

* ``pg_admin_url``: the PostgreSQL server (``IVR_TEST_PG_URL``, default
  ``postgresql://postgres@127.0.0.1:5432/test``). Unreachable → the test FAILS.
* ``pg_url``: a fresh, migrated database for this test session (dropped afterwards), so
  parallel sessions never collide. ``new_pg_database()`` makes more (empty) ones.
* ``sqlite_url``: a migrated SQLite file in the test's ``tmp_path`` (copied from a
  template migrated once per session).
* ``database_url``: parametrised over both; the PostgreSQL case is marked ``postgres``.
* ``peer``: an in-process fake Asterisk AMI server (``test_ami_fake_peer.FakeAmi``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from ivr_engine.timeline import Timeline, open_timeline
from ivr_engine.timeline.migrate import upgrade
from tests.component.test_ami_fake_peer import FakeAmi

T = TypeVar("T")
PG_ADMIN_URL = os.environ.get("IVR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def run_in_thread(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private loop (for sync, session-scoped fixtures)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _admin(sql: str) -> None:
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc!r}", pytrace=False)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class PgDatabases:
    """Creates uniquely named databases and drops them all at the end of the session."""

    def __init__(self) -> None:
        self.prefix = f"ivr_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.names: list[str] = []

    async def create(self, options: str = "") -> str:
        """``options``: what follows ``CREATE DATABASE name`` (an encoding, say)."""
        name = f"{self.prefix}_{len(self.names)}"
        await _admin(f'CREATE DATABASE "{name}" {options}'.rstrip())
        self.names.append(name)
        return _with_database(PG_ADMIN_URL, name)

    async def drop_all(self) -> None:
        for name in self.names:
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    databases = PgDatabases()
    yield databases
    if databases.names:
        run_in_thread(databases.drop_all)


@pytest.fixture(scope="session")
def pg_url(pg_databases: PgDatabases) -> str:
    async def make() -> str:
        url = await pg_databases.create()
        await upgrade(url)
        return url

    return run_in_thread(make)


@pytest.fixture
def new_pg_database(pg_databases: PgDatabases) -> Callable[..., Coroutine[Any, Any, str]]:
    """``await new_pg_database()`` → URL of a fresh empty database (dropped at the end);
    ``new_pg_database("ENCODING 'LATIN1' ...")`` with ``CREATE DATABASE`` options."""
    return pg_databases.create


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("timeline-template") / "timeline.db"
    run_in_thread(lambda: upgrade(f"sqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "timeline.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def timeline(database_url: str) -> AsyncIterator[Timeline]:
    opened = await open_timeline(database_url, migrate=False)
    try:
        yield opened
    finally:
        await opened.close()


_phones = itertools.count(int(uuid.uuid4().int % 9_000_000) + 1_000_000)


@pytest.fixture
def new_phone() -> Callable[[], str]:
    """Fresh E.164 numbers (unique within the session, so tests can share a database)."""
    return lambda: f"+1555{next(_phones) % 10_000_000:07d}"


@pytest.fixture
async def peer() -> AsyncIterator[FakeAmi]:
    async with FakeAmi() as fake:
        yield fake

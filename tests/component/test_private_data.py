"""Customer data at rest is the engine's user's only, whatever the umask: the directories the
engine creates for it (the SQLite timeline's, the spool) are 0700, the files it writes (the
SQLite file and its -wal/-shm, the spool files, the webhook and call-event stores) 0600.
Before, they took the umask: with 022 every local user could read the callers' timeline,
and with 0 write it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_bridge.calls.outbox import SqliteOutbox
from crm_bridge.webhooks.sqlite_store import SqliteDeliveryStore
from ivr_engine.app import Engine
from ivr_engine.flows.spool_files import append_to_spool, replace_file
from tests.component.test_ivr_flow import settings_for


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The worst umask: every bit the engine asks for is kept."""
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_engine_creates_its_database_and_spool_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    database = data / "db" / "ivr.db"
    spool = data / "spool"
    engine = Engine(settings_for(f"sqlite:///{database}", tmp_path, spool_dir=spool))
    await engine.start()
    try:
        assert {d.name: mode(d) for d in (data, database.parent, spool)} == dict.fromkeys(
            ("data", "db", "spool"), 0o700
        )
        files = sorted(database.parent.iterdir())
        assert [f.name for f in files] == ["ivr.db", "ivr.db-shm", "ivr.db-wal"]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await engine.stop()


def test_spool_files_are_written_private(tmp_path: Path) -> None:
    spool = tmp_path / "calls.jsonl"
    append_to_spool(spool, b'{"call": 1}\n')
    replace_file(tmp_path / "calls.replaying.offset", b"12")
    written = sorted(tmp_path.iterdir())
    assert {f.name for f in written} >= {"calls.jsonl", "calls.replaying.offset"}
    assert {f.name: mode(f) for f in written} == {f.name: 0o600 for f in written}


def test_an_existing_spool_file_keeps_its_mode_even_empty(tmp_path: Path) -> None:
    """Only files the engine creates are made 0600: an operator's mode on an existing one
    stays, also when that file is empty (before, an empty one was taken for a new one)."""
    for name, content in (("empty.jsonl", b""), ("full.jsonl", b"{}\n")):
        path = tmp_path / name
        path.write_bytes(content)
        path.chmod(0o640)
        append_to_spool(path, b'{"call": 1}\n')
        assert mode(path) == 0o640, name
        assert path.read_bytes() == content + b'{"call": 1}\n'


async def test_the_delivery_stores_are_created_private(tmp_path: Path) -> None:
    (tmp_path / "hooks").mkdir()  # the relay makes it (in spool_dir)
    store = await SqliteDeliveryStore.open(tmp_path / "hooks" / "webhooks.db")
    await store.aclose()
    outbox = await SqliteOutbox.open(tmp_path / "outbox" / "call-outbox.db")
    await outbox.close()
    assert mode(tmp_path / "outbox") == 0o700
    for name in ("hooks/webhooks.db", "outbox/call-outbox.db"):
        assert mode(tmp_path / name) == 0o600, name

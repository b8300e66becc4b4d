"""The loop-thread SQLite path: answers quick reads, declines anything slow, locked or broken
(the caller then uses its worker thread), and pauses itself after a decline."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ivr_engine.timeline.inline_sqlite import InlineDeclined, InlineSqlite

SLOW_SQL = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000)"
    " SELECT count(*) FROM n"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [("a", 1), ("b", 2)])
    conn.commit()
    conn.close()
    return path


def test_quick_read_runs_inline(db: Path) -> None:
    inline = InlineSqlite(db)
    assert inline.fetch_one("SELECT v FROM t WHERE k = ?", ("b",)) == (2,)
    assert inline.fetch_one("SELECT v FROM t WHERE k = ?", ("zz",)) is None
    assert inline.declined == 0
    inline.close()


def test_long_statement_is_cut_off_within_budget_and_pauses(db: Path) -> None:
    inline = InlineSqlite(db, budget_s=0.005, pause_s=60)
    with pytest.raises(InlineDeclined, match="interrupted"):
        inline.fetch_one(SLOW_SQL, ())
    # paused: even a quick read goes to the worker now
    with pytest.raises(InlineDeclined, match="paused"):
        inline.fetch_one("SELECT v FROM t WHERE k = ?", ("a",))
    assert inline.declined == 2
    inline.close()


def test_pause_ends_after_pause_s(db: Path) -> None:
    clock = FakeClock()
    inline = InlineSqlite(db, pause_s=5, clock=clock)
    with pytest.raises(InlineDeclined, match="no such table"):
        inline.fetch_one("SELECT * FROM absent", ())
    clock.now += 4.9
    with pytest.raises(InlineDeclined, match="paused"):
        inline.fetch_one("SELECT v FROM t WHERE k = ?", ("a",))
    clock.now += 0.2
    assert inline.fetch_one("SELECT v FROM t WHERE k = ?", ("a",)) == (1,)
    assert inline.declined == 2
    inline.close()


def test_a_slow_run_that_finished_still_pauses(db: Path) -> None:
    """A statement can overrun between progress checks (one blocking page read): its row is
    used, but the next ones go to the worker for a while."""
    ticks = iter([0.0])  # the statement starts at 0 and ends (and everything after) at 0.5

    def clock() -> float:
        return next(ticks, 0.5)

    inline = InlineSqlite(db, budget_s=0.002, pause_s=5, clock=clock)
    inline._over_budget = lambda: False  # type: ignore[method-assign]  # no check was reached
    assert inline.fetch_one("SELECT v FROM t WHERE k = ?", ("a",)) == (1,)
    with pytest.raises(InlineDeclined, match="paused"):
        inline.fetch_one("SELECT v FROM t WHERE k = ?", ("a",))
    inline.close()


def test_locked_database_is_declined_at_once(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (v INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")  # rollback-journal mode: readers are locked out
    inline = InlineSqlite(path)
    with pytest.raises(InlineDeclined, match="locked"):
        inline.fetch_one("SELECT count(*) FROM t", ())
    holder.execute("ROLLBACK")
    holder.close()
    inline.close()


def test_missing_file_is_declined_not_created(tmp_path: Path) -> None:
    inline = InlineSqlite(tmp_path / "absent.db")
    with pytest.raises(InlineDeclined):
        inline.fetch_one("SELECT 1", ())
    assert not (tmp_path / "absent.db").exists()


def test_writes_are_refused(db: Path) -> None:
    inline = InlineSqlite(db)
    with pytest.raises(InlineDeclined, match=r"readonly|read-only|query_only"):
        inline.fetch_one("INSERT INTO t VALUES ('c', 3) RETURNING v", ())
    inline.close()


def test_repeated_declines_lengthen_the_pause_and_a_run_of_successes_resets_it(db: Path) -> None:
    """On a database where statements are often slow the inline path is tried ever more
    rarely (5, 10, 20 ... s, at most max_pause_s); RESET_AFTER quick ones in a row make the
    pause short again."""
    from ivr_engine.timeline.inline_sqlite import RESET_AFTER

    clock = FakeClock()
    inline = InlineSqlite(db, pause_s=5, max_pause_s=15, clock=clock)
    pauses = []
    for _ in range(4):
        with pytest.raises(InlineDeclined, match="no such table"):
            inline.fetch_one("SELECT * FROM absent", ())
        pauses.append(round(inline._paused_until - clock.now, 3))
        clock.now = inline._paused_until + 0.001
    assert pauses == [5, 10, 15, 15]
    for _ in range(RESET_AFTER):
        assert inline.fetch_one("SELECT v FROM t WHERE k = ?", ("a",)) == (1,)
    with pytest.raises(InlineDeclined):
        inline.fetch_one("SELECT * FROM absent", ())
    assert inline._paused_until - clock.now == 5
    inline.close()

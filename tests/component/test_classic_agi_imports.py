"""The classic (process-per-call) AGI script imports only the call path: no SQLAlchemy,
Alembic or aiohttp (their import cost ~0.9 s of CPU per call, bench/results.md), no asyncpg
on SQLite, and no pydantic or PyYAML once a process has cached the validated configuration;
and it still stores every call: first-time callers through the raw writer, and through the
spool when the database is down."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from ivr_engine.timeline.migrate import upgrade
from tests.component.script_runs import CLASSIC_SCRIPT, run_classic_call

HEAVY = ("sqlalchemy", "alembic", "aiohttp", "asyncpg", "pydantic", "yaml")
VALIDATION = "LOADED=pydantic,yaml\n"  # the first process validates and caches
# The script as Asterisk runs it, reporting at exit (on stderr) which heavy packages it loaded.
PROBE = f"""
import atexit, runpy, sys
heavy = {HEAVY!r}
atexit.register(lambda: print("LOADED=" + ",".join(m for m in heavy if m in sys.modules),
                              file=sys.stderr))
sys.argv = [{str(CLASSIC_SCRIPT)!r}, "menu=main"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


async def classic_call(db: Path, spool: Path, caller: str) -> tuple[list[str], str]:
    """(AGI commands the script sent, what it said on stderr); fails on a non-zero exit."""
    env = {"IVR_ENGINE_DATABASE_URL": f"sqlite:///{db}", "IVR_ENGINE_SPOOL_DIR": str(spool)}
    code, out, err = await run_classic_call(env, caller, argv=[sys.executable, "-c", PROBE])
    assert code == 0, err
    return out.splitlines(), err


def calls_stored(db: Path) -> list[tuple[str, str, str | None]]:
    """(phone owning the event's customer or '', intent, call id) of each stored call."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT coalesce(i.value, ''), e.intent, json_extract(e.data, '$.caller_id')"
            " FROM timeline_events e LEFT JOIN identities i"
            " ON i.customer_id = e.customer_id AND i.kind = 'phone'"
            " WHERE e.event_id LIKE 'voice:%' ORDER BY e.seq"
        ).fetchall()
    return [tuple(r) for r in rows]


async def test_a_classic_call_loads_no_sqlalchemy_alembic_or_aiohttp(tmp_path: Path) -> None:
    db, spool = tmp_path / "classic.db", tmp_path / "spool"
    await upgrade(f"sqlite:///{db}")  # `ivr-engine migrate`, once
    first, err = await classic_call(db, spool, "+15557770011")
    assert VALIDATION in err, err
    commands, err = await classic_call(db, spool, "+15557770014")
    assert "LOADED=\n" in err, err
    assert commands[-1].startswith('EXEC "MSet" "IVR_INTENT=new_service,')
    assert commands == first  # the same call, configuration cached or not
    # each first-time caller now owns a customer holding the call (raw writer, no store)
    assert calls_stored(db) == [
        ("+15557770011", "new_service", "+15557770011"),
        ("+15557770014", "new_service", "+15557770014"),
    ]


async def test_database_down_the_call_is_spooled_and_the_next_call_writes_it(
    tmp_path: Path,
) -> None:
    db, spool = tmp_path / "later" / "classic.db", tmp_path / "spool"
    commands, err = await classic_call(db, spool, "+15557770012")  # no database yet
    assert "IVR_DECISION=static" in commands[-1]
    spooled = [json.loads(line) for line in (spool / "calls.jsonl").read_text().splitlines()]
    assert [s["phone"] for s in spooled] == ["+15557770012"]
    await upgrade(f"sqlite:///{db}")  # the database is back
    _, err = await classic_call(db, spool, "+15557770013")
    assert "LOADED=\n" in err, err
    assert sorted(calls_stored(db)) == [
        ("+15557770012", "new_service", "+15557770012"),
        ("+15557770013", "new_service", "+15557770013"),
    ]
    assert not (spool / "calls.jsonl").exists()

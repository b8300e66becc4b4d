"""``ivr-engine identities renormalize`` on SQLite and PostgreSQL: phone identities stored
under the earlier international-prefix rule are corrected, conflicts with other customers
are reported and left, and a second run changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr_engine.cli import main
from ivr_engine.domain.errors import ConfigError
from ivr_engine.ports import Identity
from ivr_engine.timeline.migrate import upgrade
from ivr_engine.timeline.renormalize import apply_plan, plan_renormalization, renormalize_phones
from ivr_engine.timeline.store import SqlTimelineStore

# Korea: "00700 44 20 7946 00xx" was stored as +70044..., today it reads +44 20 7946 00xx.
STALE = "+70044207946000{}"
FIXED = "+44207946000{}"
AMBIGUOUS = "+12015550123"  # valid as stored ("+1 201..."), or "001 20 15550123" (Egypt)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_timeline_url(
    request: pytest.FixtureRequest,
    sqlite_url: str,
    new_pg_database: Callable[..., Coroutine[Any, Any, str]],
) -> str:
    """A migrated database of this test's own (the scan reads every phone identity)."""
    if request.param == "sqlite":
        return sqlite_url
    url = await new_pg_database()
    await upgrade(url)
    return url


@dataclass
class Seeded:
    fixed: str  # holds a stale value nobody else holds
    conflicting: str  # holds a stale value whose correction ...
    holder: str  # ... this customer already holds
    duplicate: str  # holds a stale value and its correction
    ambiguous: str


@pytest.fixture
async def store(empty_timeline_url: str) -> AsyncIterator[SqlTimelineStore]:
    opened = SqlTimelineStore(empty_timeline_url)
    try:
        yield opened
    finally:
        await opened.close()


async def _seed(store: SqlTimelineStore) -> Seeded:
    async def customer(*phones: str) -> str:
        made = await store.create_customer(None, [Identity("phone", p) for p in phones])
        return made.customer_id

    return Seeded(
        fixed=await customer(STALE.format(0)),
        conflicting=await customer(STALE.format(1)),
        holder=await customer(FIXED.format(1)),
        duplicate=await customer(STALE.format(2), FIXED.format(2)),
        ambiguous=await customer(AMBIGUOUS),
    )


async def _phones(store: SqlTimelineStore, customer_id: str) -> list[str]:
    customer = await store.get_customer(customer_id)
    assert customer is not None
    return sorted(i.value for i in customer.identities if i.kind == "phone")


async def test_stale_phones_are_corrected_conflicts_left_and_a_second_run_is_a_no_op(
    store: SqlTimelineStore, empty_timeline_url: str
) -> None:
    seeded = await _seed(store)

    dry = await renormalize_phones(empty_timeline_url, "KR", apply=False, batch_size=2)
    planned = {(c.row.value, c.corrected, c.drop) for c in dry.plan.changes}
    assert planned == {
        (STALE.format(0), FIXED.format(0), False),
        (STALE.format(2), FIXED.format(2), True),
    }
    assert await _phones(store, seeded.fixed) == [STALE.format(0)]  # a dry run writes nothing

    applied = await renormalize_phones(empty_timeline_url, "KR", apply=True, batch_size=2)
    assert len(applied.plan.changes) == 2
    assert [(c.row.value, c.other_customers) for c in applied.plan.conflicts] == [
        (STALE.format(1), (seeded.holder,))
    ]
    assert [a.row.value for a in applied.ambiguous] == [AMBIGUOUS]
    assert await _phones(store, seeded.fixed) == [FIXED.format(0)]
    assert await _phones(store, seeded.duplicate) == [FIXED.format(2)]
    assert await _phones(store, seeded.conflicting) == [STALE.format(1)]  # not merged
    assert await _phones(store, seeded.holder) == [FIXED.format(1)]
    assert await _phones(store, seeded.ambiguous) == [AMBIGUOUS]
    found = await store.find_customers(Identity("phone", FIXED.format(0)))
    assert [c.customer_id for c in found] == [seeded.fixed]

    again = await renormalize_phones(empty_timeline_url, "KR", apply=True, batch_size=2)
    assert again.plan.changes == ()
    assert [c.row.value for c in again.plan.conflicts] == [STALE.format(1)]


async def test_a_customer_gaining_the_value_after_the_scan_is_a_conflict_too(
    store: SqlTimelineStore, empty_timeline_url: str
) -> None:
    stale_owner = (
        await store.create_customer(None, [Identity("phone", STALE.format(3))])
    ).customer_id
    planned = await plan_renormalization(empty_timeline_url, "KR")
    assert len(planned.plan.changes) == 1
    newcomer = (await store.create_customer(None, [Identity("phone", FIXED.format(3))])).customer_id

    applied = await apply_plan(empty_timeline_url, planned)
    assert applied.plan.changes == ()
    assert [(c.row.customer_id, c.other_customers) for c in applied.plan.conflicts] == [
        (stale_owner, (newcomer,))
    ]
    assert await _phones(store, stale_owner) == [STALE.format(3)]


async def test_the_command_lists_then_applies(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = SqlTimelineStore(sqlite_url)
    try:
        await _seed(opened)
    finally:
        await opened.close()
    command = ["identities", "renormalize", "--database-url", sqlite_url, "--region", "kr"]

    assert await asyncio.to_thread(main, command) == 0
    dry = capsys.readouterr().out.splitlines()
    assert dry[0] == "phone identities re-read in region KR:"
    assert sum(line.startswith("would change: ") for line in dry) == 2
    assert sum(line.startswith("conflict, left as is: ") for line in dry) == 1
    assert dry[-1].startswith("2 would change, 1 conflict(s), 1 ambiguous")

    assert await asyncio.to_thread(main, [*command, "--apply"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("2 changed, 1 conflict(s)")
    assert await asyncio.to_thread(main, [*command, "--apply", "--list-ambiguous"]) == 0
    rerun = capsys.readouterr().out.splitlines()
    assert rerun[-1].startswith("0 changed, 1 conflict(s), 1 ambiguous")
    assert any(line.startswith("ambiguous, left as is: ") and AMBIGUOUS in line for line in rerun)


def test_a_missing_sqlite_file_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.db"
    url = f"sqlite:///{missing}"
    assert main(["identities", "renormalize", "--database-url", url]) == 2
    assert "no such SQLite file" in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.postgres
async def test_an_unmigrated_postgresql_database_is_refused(
    new_pg_database: Callable[..., Coroutine[Any, Any, str]],
) -> None:
    url = await new_pg_database()
    with pytest.raises(ConfigError, match="ivr-engine migrate"):
        await plan_renormalization(url, "KR")

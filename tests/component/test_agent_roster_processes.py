"""The shared roster across engine processes: two ``LiveRoster`` instances on one database
(SQLite file and PostgreSQL), the agents file seeding once, an unmigrated database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from ivr_engine.agents import InMemoryAgentStateStore
from ivr_engine.agents.model import AgentState
from ivr_engine.contact_center.agent_record import AgentRecord, records_from_file
from ivr_engine.contact_center.agents_csv import import_agents_csv_to_roster
from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.contact_center.live_roster import LiveRoster
from ivr_engine.contact_center.roster_store import SqlRosterStore
from ivr_engine.desktop import load_agent_directory
from ivr_engine.domain.errors import ConfigError
from ivr_engine.routing import load_routing_config
from ivr_engine.settings import load_settings
from ivr_engine.timeline.migrate import upgrade
from tests.component.test_ivr_flow import REPO

ROUTING = load_routing_config(REPO / "config/routing.yaml")
AGENTS_FILE = REPO / "config/agents.yaml"
SEED = records_from_file(
    load_agent_profiles(AGENTS_FILE, ROUTING), load_agent_directory(AGENTS_FILE)
)
POLL_S = 0.05
NewPg = Callable[[], Coroutine[Any, Any, str]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def roster_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'roster.db'}"
    else:
        new_pg_database: NewPg = request.getfixturevalue("new_pg_database")
        url = await new_pg_database()
    await upgrade(url)
    return url


async def open_roster(url: str) -> LiveRoster:
    roster = LiveRoster(
        SqlRosterStore(url),
        config=ROUTING,
        agents=InMemoryAgentStateStore(),
        poll_interval_s=POLL_S,
    )
    await roster.start(SEED)
    return roster


@pytest.fixture
async def two_processes(roster_url: str) -> AsyncIterator[tuple[LiveRoster, LiveRoster]]:
    first, second = await open_roster(roster_url), await open_roster(roster_url)
    try:
        yield first, second
    finally:
        await first.aclose()
        await second.aclose()


def cleo(**changes: Any) -> AgentRecord:
    values: dict[str, Any] = {
        "agent_id": "c3",
        "name": "Cleo",
        "sip_endpoint": "PJSIP/agent-3",
        "skills": {"billing": 5},
        "token_sha256": "ab" * 32,
    }
    return AgentRecord(**{**values, **changes})


async def test_a_second_process_sees_every_change_within_the_poll(
    two_processes: tuple[LiveRoster, LiveRoster],
) -> None:
    writer, reader = two_processes
    assert [r.agent_id for r in reader.records()] == ["a1", "a2"]  # seeded once, by the first
    started = time.perf_counter()
    await writer.store.create(cleo())
    await reader.wait_for(lambda r: r.get("c3") is not None, timeout_s=2.0)
    seen_after = time.perf_counter() - started
    assert seen_after < 1.0, seen_after
    assert reader.routing().pool("billing")[-1][0].agent_id == "c3"
    assert reader.directory.check_token("x") is None and reader.directory.get("c3") is not None
    assert (await reader._agents.get("c3")).state is AgentState.LOGGED_OUT  # registered

    await writer.store.update("c3", lambda old: cleo(skills={"retention": 3}))
    await reader.wait_for(
        lambda r: "c3" not in {a.agent_id for a, _ in r.routing().pool("billing")}, 2.0
    )
    assert reader.routing().by_id["c3"].skills == {"retention": 3}

    await reader._agents.set_state("c3", AgentState.AVAILABLE)
    await writer.store.delete("c3")
    await reader.wait_for(lambda r: r.get("c3") is None, timeout_s=2.0)
    assert reader.directory.get("c3") is None and "c3" not in reader.routing().by_id
    assert (await reader._agents.get("c3")).state is AgentState.LOGGED_OUT  # cleaned up


async def test_the_agents_file_seeds_the_roster_once(roster_url: str) -> None:
    first = await open_roster(roster_url)
    await first.store.delete("a2")
    await first.aclose()
    again = await open_roster(roster_url)  # a restart with the same file
    try:
        assert [r.agent_id for r in again.records()] == ["a1"]  # the table wins
    finally:
        await again.aclose()


async def test_an_unmigrated_database_is_refused_at_start(
    new_pg_database: NewPg, tmp_path: Path
) -> None:
    for url in (await new_pg_database(), f"sqlite:///{tmp_path / 'empty.db'}"):
        roster = LiveRoster(SqlRosterStore(url), config=ROUTING, agents=InMemoryAgentStateStore())
        with pytest.raises(ConfigError, match="ivr-engine migrate"):
            await roster.start(SEED)
        await roster.aclose()


async def test_an_unreachable_database_routes_with_the_file() -> None:
    roster = LiveRoster(
        SqlRosterStore("postgresql://postgres@127.0.0.1:1/none"),
        config=ROUTING,
        agents=InMemoryAgentStateStore(),
    )
    await roster.start(SEED)
    try:
        assert [r.agent_id for r in roster.records()] == ["a1", "a2"]
    finally:
        await roster.aclose()


@pytest.mark.parametrize("token", ["short", "x" * 31, "with space " + "x" * 40])
def test_a_weak_admin_token_is_refused_at_start(token: str) -> None:
    with pytest.raises(ConfigError, match="IVR_ENGINE_ADMIN_TOKEN"):
        load_settings(environ={"IVR_ENGINE_ADMIN_TOKEN": token})
    ok = load_settings(environ={"IVR_ENGINE_ADMIN_TOKEN": "k" * 32})
    assert ok.admin_token is not None and "kkk" not in repr(ok)


async def test_csv_import_upserts_into_the_roster_a_running_engine_sees(
    two_processes: tuple[LiveRoster, LiveRoster], roster_url: str, tmp_path: Path
) -> None:
    _, running = two_processes
    source = tmp_path / "agents.csv"
    source.write_text(
        "agent_id,name,sip_endpoint,skills,password\n"
        "a1,Bea Renamed,PJSIP/agent-1,billing:3,new-pass-1234\n"
        "d4,Dee,PJSIP/agent-4,general:2,dee-pass-1234\n",
        encoding="utf-8",
    )
    assert await import_agents_csv_to_roster(source, roster_url, ROUTING) == 2
    await running.wait_for(lambda r: r.get("d4") is not None, timeout_s=2.0)
    assert [r.agent_id for r in running.records()] == ["a1", "a2", "d4"]  # a2 kept
    a1 = running.get("a1")
    assert a1 is not None and a1.name == "Bea Renamed" and dict(a1.skills) == {"billing": 3}
    checked = await asyncio.to_thread(running.directory.check_password, "d4", "dee-pass-1234")
    assert checked is not None

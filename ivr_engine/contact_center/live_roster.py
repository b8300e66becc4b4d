"""``LiveRoster``: the agents every engine process routes to and lets log in, kept in step
with the shared roster table.

* Start-up: the agents file is the roster until the database answers; the file seeds the
  table once (``SqlRosterStore.seed_once``), then the table wins.
* Writes (the HTTP API) go to the table and are applied here at once; other processes see
  them within ``poll_interval_s``: a background task reads the one-row version each tick
  and reloads the table only when it changed.
* Applying a roster swaps the routing roster, the desktop directory and the load view in
  one step, registers new agents in the live state store (logged out) and logs deleted
  agents out. Fail-open: the database or the live store down → the last roster stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.agents.model import AgentState
from ivr_engine.contact_center.agent_record import AgentRecord
from ivr_engine.contact_center.agents_file import known_skills
from ivr_engine.contact_center.load_tracker import LoadTracker
from ivr_engine.contact_center.load_view import LoadView
from ivr_engine.contact_center.roster_store import RosterSnapshot, SqlRosterStore
from ivr_engine.desktop.directory import AgentDirectory, DesktopAgent
from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.routing import Agent, Roster, RoutingConfig, build_roster
from ivr_engine.stopping import cancel_and_wait

log = logging.getLogger(__name__)

ROSTER_POLL_S = 1.0  # how soon another process's change is seen (one indexed read a tick)
_FILE_VERSION = -1  # the roster came from the agents file, not (yet) from the table


class LiveRoster:
    def __init__(
        self,
        store: SqlRosterStore,
        *,
        config: RoutingConfig,
        agents: AgentStateStore,
        directory: AgentDirectory | None = None,
        load: LoadTracker | None = None,
        poll_interval_s: float = ROSTER_POLL_S,
    ) -> None:
        self.store = store
        self.config = config
        self.known_skills = known_skills(config)
        self.directory = directory if directory is not None else AgentDirectory()
        self._agents = agents
        self._load = load
        self._poll_interval_s = poll_interval_s
        self._records: dict[str, AgentRecord] = {}
        self._routing = build_roster(())
        self._version = _FILE_VERSION - 1
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._store_down = False

    # ------------------------------------------------------------------ reads (in memory)

    @property
    def version(self) -> int:
        return self._version

    def routing(self) -> Roster:
        """The roster the router scores now (a callable, so the router never keeps a copy)."""
        return self._routing

    def profiles(self) -> list[Agent]:
        return list(self._routing.agents)

    def records(self) -> list[AgentRecord]:
        return [self._records[agent_id] for agent_id in sorted(self._records)]

    def get(self, agent_id: str) -> AgentRecord | None:
        return self._records.get(agent_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, seed: Sequence[AgentRecord]) -> None:
        """Route with ``seed`` (the agents file) now; seed the table and load it if it answers.

        ``ConfigError`` when the database answers but has no roster table (not migrated);
        ``AgentStateError`` when the live state store cannot register the agents."""
        await self._apply(RosterSnapshot(_FILE_VERSION, tuple(seed)), strict=True)
        try:
            await self.store.check_schema()
            if await self.store.seed_once(seed):
                log.info("agent roster seeded from the agents file (%d agents)", len(seed))
            await self._apply(await self.store.load(), strict=True)
        except TimelineUnavailable as exc:
            self._store_down = True
            log.warning("agent roster unreachable (%s): routing with the agents file", exc)
        else:
            _warn_if_file_differs(seed, self.records())
        self._task = asyncio.create_task(self._poll(), name="roster-poll")

    async def refresh(self) -> bool:
        """Reload the table now (True if the roster changed); ``TimelineUnavailable``."""
        return await self._apply(await self.store.load())

    async def refresh_if_changed(self) -> bool:
        if await self.store.version() == self._version:
            return False
        return await self.refresh()

    async def wait_for(self, predicate: Callable[[LiveRoster], bool], timeout_s: float) -> None:
        """Until ``predicate(self)`` holds after some apply (``TimeoutError`` otherwise)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        await self.store.aclose()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self.refresh_if_changed()
            except TimelineUnavailable as exc:
                if not self._store_down:
                    log.warning("agent roster unreachable (%s): keeping the last roster", exc)
                self._store_down = True
            else:
                if self._store_down:
                    log.info("agent roster reachable again (version %d)", self._version)
                self._store_down = False

    # ------------------------------------------------------------------ apply

    async def _apply(self, snapshot: RosterSnapshot, *, strict: bool = False) -> bool:
        async with self._lock:
            if snapshot.version == self._version:
                return False
            usable = _usable(snapshot.records)
            self.directory.replace_all(login for _, login in usable.values())
            old = self._records
            self._records = {agent_id: record for agent_id, (record, _) in usable.items()}
            self._routing = build_roster(record.routing_agent() for record, _ in usable.values())
            self._version = snapshot.version
            if self._load is not None:
                self._load.view = LoadView.from_config(self.config, self._routing)
            await self._sync_live_state(old, self._records, strict)
        async with self._changed:
            self._changed.notify_all()
        return True

    async def _sync_live_state(
        self, old: dict[str, AgentRecord], new: dict[str, AgentRecord], strict: bool
    ) -> None:
        for agent_id, record in new.items():
            before = old.get(agent_id)
            if before is None or before.max_concurrent != record.max_concurrent:
                step = self._agents.register_agent(agent_id, max_concurrent=record.max_concurrent)
                await self._live(step, agent_id, strict=strict)
        for agent_id in old.keys() - new.keys():  # an agent on a call stays until it ends
            logout = self._agents.set_state(agent_id, AgentState.LOGGED_OUT)
            await self._live(logout, agent_id, strict=False)

    async def _live(self, step: Awaitable[object], agent_id: str, *, strict: bool) -> None:
        try:
            await step
        except AgentStateError as exc:
            if strict:
                raise
            log.warning("agent %s: live state not updated for the roster change: %r", agent_id, exc)


def _usable(records: Sequence[AgentRecord]) -> dict[str, tuple[AgentRecord, DesktopAgent]]:
    """Records whose profile and credentials parse; a broken row is skipped, not fatal."""
    usable: dict[str, tuple[AgentRecord, DesktopAgent]] = {}
    for record in records:
        try:
            record.routing_agent()
            usable[record.agent_id] = (record, record.desktop_agent())
        except ValueError as exc:
            log.warning("agent roster: %s skipped: %s", record.agent_id, exc)
    return usable


def _warn_if_file_differs(seed: Sequence[AgentRecord], stored: Sequence[AgentRecord]) -> None:
    in_file, in_table = {r.agent_id for r in seed}, {r.agent_id for r in stored}
    if in_file != in_table:
        log.info(
            "the agents file differs from the stored roster (file only: %s; stored only: %s); "
            "the stored roster wins (import the file with `ivr-engine agents import`)",
            sorted(in_file - in_table),
            sorted(in_table - in_file),
        )

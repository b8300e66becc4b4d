"""``DeviceStateTracker``: Asterisk device and queue-member state (AMI) → agent state.

The rules are in ``device_state.py`` (pure); this module reads the AMI events, keeps one
``DeviceView`` per agent (matched by the agent's configured endpoint), and applies each
``Decision`` to the agent state store, with a ``PauseNote`` saying why.

* After every AMI login (``FullyBooted``: engine start, reconnect, Asterisk restart) and
  after a subscription overflow the views are rebuilt from ``DeviceStateList`` (needs
  ``res_manager_devicestate.so``; without it, only queue members' ``Status`` is seen) and
  ``QueueStatus``, and every agent is re-checked.
* An agent who becomes available (desktop, end of a call) is re-checked too: a phone that
  is unreachable or busy, or a queue pause made during the call, takes effect then.
* One lock serialises the checks, so a decision always reads the note it wrote before.
  A store failure is logged with the agent; the next event or re-check tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError, ChangeFeedLagged
from ivr_engine.agents.model import AgentState, ChangeCause, to_timestamp
from ivr_engine.contact_center.device_state import (
    SUBSCRIBED_EVENTS,
    Decision,
    DeviceCondition,
    DeviceView,
    Observation,
    PauseNote,
    Step,
    decide,
    device_key,
    observations_from_event,
    observe,
)
from ivr_engine.contact_center.pause_notes import PauseNotes, open_pause_notes
from ivr_engine.routing import Agent
from ivr_engine.stopping import cancel_and_wait
from ivr_engine.telephony.ami import AmiClient, AmiError, AmiEvent, Subscription

log = logging.getLogger(__name__)
_CALL_ENDINGS = frozenset({ChangeCause.RELEASE, ChangeCause.EXPIRY})


class DeviceStateTracker:
    def __init__(
        self,
        ami: AmiClient,
        agents: AgentStateStore,
        notes: PauseNotes,
        endpoints: Callable[[], Mapping[str, str]],  # agent id → endpoint, read on each event
    ) -> None:
        """The tracker owns ``notes`` (closed by ``aclose``); ``endpoints`` follows the roster."""
        self._ami, self._agents, self._notes = ami, agents, notes
        self._endpoints = endpoints
        self._views: dict[str, DeviceView] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.resyncs = 0
        self.decisions: list[tuple[str, Decision]] = []  # the last ones, for tests and debugging

    def start(self) -> None:
        subscription = self._ami.subscribe(*SUBSCRIBED_EVENTS, maxsize=10_000)
        self._tasks = [
            asyncio.create_task(self._read_ami(subscription), name="device-tracker-ami"),
            asyncio.create_task(self._watch_agents(), name="device-tracker-agents"),
        ]

    async def aclose(self) -> None:
        await cancel_and_wait(self._tasks)  # they call Redis: a cancel can be lost
        await self._notes.aclose()

    @property
    def notes(self) -> PauseNotes:
        """Why each agent the engine or Asterisk paused is paused."""
        return self._notes

    def view(self, agent_id: str) -> DeviceView:
        return self._views.get(agent_id, DeviceView())

    # --- AMI ------------------------------------------------------------------------------

    async def _read_ami(self, subscription: Subscription) -> None:
        while True:
            try:
                await self.resync()  # the first FullyBooted may have come before we subscribed
                async for event in subscription:
                    if event.name.casefold() == "fullybooted":
                        await self.resync()
                    else:
                        await self.handle(event)
                return  # the client was closed
            except AmiError as exc:  # overflow: events were lost, so subscribe again and resync
                log.error("AMI device events interrupted (%r); resubscribing", exc)
            finally:
                subscription.close()
            await asyncio.sleep(0.1)
            subscription = self._ami.subscribe(*SUBSCRIBED_EVENTS, maxsize=10_000)

    async def handle(self, event: AmiEvent) -> None:
        for seen in observations_from_event(event):
            await self._apply(seen)

    async def _apply(self, seen: Observation) -> None:
        for agent_id in self._agents_of(seen.devices):
            before = self.view(agent_id)
            after = observe(before, seen)
            self._views[agent_id] = after
            await self._check(agent_id, before, after)

    def _agents_of(self, devices: frozenset[str]) -> list[str]:
        endpoints = self._endpoints()
        return sorted(a for a, endpoint in endpoints.items() if device_key(endpoint) in devices)

    async def resync(self) -> None:
        """Rebuild every view from Asterisk's lists, then re-check every agent."""
        try:
            devices = await self._ami.action_list("DeviceStateList", timeout_s=10)
            members = await self._ami.action_list("QueueStatus", timeout_s=10)
        except AmiError as exc:
            log.warning("device state resync skipped (%r); the next login retries", exc)
            return
        if not devices.response.ok:
            log.warning(
                "DeviceStateList refused (%s): load res_manager_devicestate.so; only queue "
                "members' device state is seen",
                devices.response.message,
            )
        known, fresh = self._views, dict[str, DeviceView]()
        for event in [*devices.events, *members.events]:
            for seen in observations_from_event(event):
                for agent_id in self._agents_of(seen.devices):
                    fresh[agent_id] = observe(fresh.get(agent_id, DeviceView()), seen)
        self._views = {
            agent_id: replace(view, pending_queue_pause=self.view(agent_id).pending_queue_pause)
            for agent_id, view in fresh.items()
        }
        self.resyncs += 1
        for agent_id in sorted(self._endpoints()):
            # A queue pause counts as new only if it was not known before the gap.
            await self._check(agent_id, known.get(agent_id, DeviceView()), self.view(agent_id))

    # --- the agent state store ------------------------------------------------------------

    async def _watch_agents(self) -> None:
        while True:
            try:
                async with self._agents.changes() as feed:
                    async for change in feed:
                        if change.agent.state is AgentState.AVAILABLE:
                            await self._recheck(change.agent.agent_id, change.cause)
                    return  # the store was closed
            except ChangeFeedLagged:
                log.warning("agent change feed lagged; re-checking every agent")
                for agent_id in list(self._views):
                    await self._check(agent_id, self.view(agent_id), self.view(agent_id))
            except AgentStateError as exc:
                log.warning("agent change feed failed (%r); resubscribing", exc)
                await asyncio.sleep(1.0)

    async def _recheck(self, agent_id: str, cause: ChangeCause) -> None:
        view = self.view(agent_id)
        if cause in _CALL_ENDINGS and view.condition is DeviceCondition.BUSY:
            # Back from a call the engine routed: the busy view is that call's own ringing
            # or talking, and its NOT_INUSE is on its way; holding now would flap.
            return
        await self._check(agent_id, view, view)

    async def _check(self, agent_id: str, before: DeviceView, after: DeviceView) -> None:
        async with self._lock:
            try:
                await self._decide_and_apply(agent_id, before, after)
            except AgentStateError as exc:  # store down, lost race: the next event retries
                log.warning("agent %s: device state not applied: %r", agent_id, exc)

    async def _decide_and_apply(self, agent_id: str, before: DeviceView, after: DeviceView) -> None:
        agent = await self._agents.get(agent_id)
        note = await self._notes.get(agent_id)
        decision = decide(agent.state, to_timestamp(agent.since), note, before, after)
        view = self._views.get(agent_id)
        if view is not None:
            self._views[agent_id] = replace(view, pending_queue_pause=decision.pending_queue_pause)
        if decision.step is Step.NOTHING:
            return
        self.decisions = [*self.decisions[-99:], (agent_id, decision)]
        log.info("agent %s: %s (%s)", agent_id, decision.step, decision.detail)
        if decision.step is Step.FORGET:
            await self._notes.drop(agent_id)
        elif decision.step is Step.RESUME:
            await self._agents.set_state(agent_id, AgentState.AVAILABLE)
            await self._notes.drop(agent_id)
        else:
            paused = await self._agents.set_state(agent_id, AgentState.PAUSED)
            engine_made = decision.step is Step.HOLD
            since = to_timestamp(paused.since)
            note = PauseNote(decision.reason, decision.detail, since, engine_made)
            await self._notes.put(agent_id, note)


def start_device_tracker(
    ami: AmiClient,
    agents: AgentStateStore,
    agent_state_url: str | None,
    profiles: Callable[[], Iterable[Agent]],
) -> DeviceStateTracker:
    """The tracker for the engine: pause notes beside the agent state, endpoints from the
    roster's profiles (``sip_endpoint``), started."""

    def endpoints() -> dict[str, str]:
        return {agent.agent_id: agent.endpoint for agent in profiles()}

    tracker = DeviceStateTracker(ami, agents, open_pause_notes(agent_state_url), endpoints)
    tracker.start()
    return tracker

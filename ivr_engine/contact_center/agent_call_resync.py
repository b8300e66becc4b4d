"""``AgentCallTracker``'s resync with Asterisk's live channels (the plan: ``call_resync.py``).

After every AMI login, a subscription overflow and the tracker's start (a restarted worker
0), the tracker resyncs with Asterisk's live channels: a call whose caller channel is gone
(its ``Hangup`` was sent while AMI was down) ends in the load view and for its agent
(ringing: given back; on the call: wrap-up, as after a hang-up), with nothing on the
timeline: when and how it ended is unknown, and the call-event bridge, which owns the
durable call record, closes it from its own resync. Agent calls still up that the tracker
never saw dialled are adopted; their later events are recorded with ``recovered: true``
(ring and talk times counted from the agent's last state change), under the call key the
channel list shows (``IVR_CALL_KEY``), as the tracker that saw the dial wrote them.

``AgentCallResync`` is the tracker's base class: it works on the tracker's own state (the
attributes declared below, set by ``AgentCallTracker.__init__``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.contact_center.agent_call_timeline import AgentLeg
from ivr_engine.contact_center.call_resync import (
    LIST_ACTION,
    ChannelList,
    Holding,
    end_gone_load_calls,
    plan_agents,
    read_holdings,
)
from ivr_engine.contact_center.load_tracker import LoadTracker
from ivr_engine.telephony.ami import AmiClient, AmiError, AmiEvent, AmiState, Subscription

log = logging.getLogger(__name__)


class AgentCallResync:
    _ami: AmiClient
    _agents: AgentStateStore
    _clock: Callable[[], datetime]
    _load: LoadTracker | None
    _legs: dict[str, AgentLeg]
    _agent_channels: dict[str, str]  # agent leg Uniqueid -> caller Uniqueid
    _resync_timeout_s: float
    _resynced_login: int  # the AMI login the last resync ran on
    resyncs: int  # channel lists reconciled
    resync_ended: int  # calls ended because Asterisk no longer listed them

    async def handle(self, event: AmiEvent) -> None:
        raise NotImplementedError  # AgentCallTracker.handle

    def _start_wrap_up_timer(self, agent_id: str) -> None:
        raise NotImplementedError  # AgentCallTracker._start_wrap_up_timer

    async def resync(self, subscription: Subscription | None = None) -> None:
        """End the calls Asterisk no longer has, adopt agent calls not known (see the module
        docstring); again if Asterisk logged the client in again meanwhile. Nothing while
        not logged in (the login's ``FullyBooted`` comes). ``subscription``: the events
        queued behind the list's answer are handled first (their own events decide)."""
        while self._ami.state is AmiState.CONNECTED:
            if (
                not await self._resync_once(subscription)
                or self._resynced_login == self._ami.logins
            ):
                return

    async def _resync_once(self, subscription: Subscription | None) -> bool:
        asked_at = self._clock()
        held = await read_holdings(self._agents, asked_at, self._resync_timeout_s)
        suspects = {call_id: leg.agent_channel for call_id, leg in self._legs.items()}
        login = self._ami.logins
        try:
            listed = await self._ami.action_list(LIST_ACTION, timeout_s=self._resync_timeout_s)
        except AmiError as exc:
            log.warning("AMI resync skipped, no channel list (%r); the next login retries", exc)
            return False
        if not listed.response.ok:
            why = listed.response.message or listed.response.response
            log.warning(
                "AMI resync skipped: %s refused (%s); the next login retries", LIST_ACTION, why
            )
            return False
        self._resynced_login = login
        for event in subscription.take(subscription.pending()) if subscription else ():
            if event.name.casefold() != "fullybooted":  # a new login: resync() goes again
                await self.handle(event)
        channels = ChannelList.from_events(listed.events, asked_at)
        ended = await self._reconcile(channels, suspects, held)
        if self._load is not None:
            ended |= await end_gone_load_calls(self._load, channels, self._clock())
        self.resyncs += 1
        self.resync_ended += len(ended)
        live = len(channels.uniqueids)
        log.info("AMI resync: %d channel(s) live, %d call(s) ended unseen %s", live, len(ended),
                 sorted(ended)[:20])  # fmt: skip
        return True

    async def _reconcile(
        self, channels: ChannelList, suspects: dict[str, str], held: list[Holding]
    ) -> set[str]:
        """Apply ``plan_agents``; the calls it ended."""
        known = {call_id: leg.agent_channel for call_id, leg in self._legs.items()}
        plan = plan_agents(channels, suspects, known, held)
        ended = set(plan.end)
        for call_id in plan.end:
            leg = self._legs.pop(call_id)
            self._agent_channels.pop(leg.agent_channel, None)
            if leg.agent_id:
                await self._release_unseen(leg.agent_id, call_id, leg.answered_at is not None)
        for hold in plan.release:  # False: given back meanwhile (the reroute, the sweep)
            if await self._release_unseen(hold.agent_id, hold.call_id, hold.answered):
                ended.add(hold.call_id)
        for hold in plan.adopt:  # still up, never seen dialled (a restarted worker 0)
            answered_at = hold.since if hold.answered else None
            leg = AgentLeg(hold.call_id, hold.agent_id, "", channels.caller(hold.call_id),
                           hold.since, answered_at, recovered=True,
                           call_key=channels.call_key(hold.call_id))  # fmt: skip
            self._legs[hold.call_id] = leg
        return ended

    async def _release_unseen(self, agent_id: str, call_id: str, answered: bool) -> bool:
        """As the call's hang-up would (wrap-up after an answer), with no timeline record."""
        try:
            released = await self._agents.release(
                agent_id, call_id, wrap_up=answered, now=self._clock()
            )
        except AgentStateError as exc:
            log.warning("call %s: agent %s not released by the resync: %r", call_id, agent_id, exc)
            return False
        if released and answered:
            self._start_wrap_up_timer(agent_id)
        return released


__all__ = ["AgentCallResync"]

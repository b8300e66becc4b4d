"""``AgentCallTracker``: Asterisk's own view of agent calls (AMI) → agent state + timeline.

The dialplan raises ``UserEvent(IvrAgentDial, Agent, Customer, Intent)`` on the caller's
channel just before ``Dial`` (dialplans/ivr-engine.conf), so the tracker needs no shared
memory with the FastAGI process that routed the call: everything is keyed by the caller's
``Uniqueid`` (the call id the reservation was made with). Its timeline events go under the
call's key instead when the event carries it (``IVR_CALL_KEY``, set with the routing;
manager.conf ``channelvars``): ``agent_call_timeline.agent_call_key``.

* ``DialEnd`` ANSWER → the agent is on the call (ringing → on_call); timeline
  ``call.agent_answered`` {agent_id, ring_ms} (the last-agent affinity reads it).
* ``DialEnd`` anything else → the reservation is given back (the reroute AGI also does it;
  both are idempotent); timeline ``call.agent_missed`` {agent_id, dial_status}.
* ``Hangup`` of the caller's channel after an answer → the interaction ends (wrap-up);
  timeline ``call.agent_ended`` {agent_id, talk_s, cause, first_hangup}. The agent's own
  channel (``DestUniqueid`` of the answered ``DialEnd``) going down first ends it too:
  after a blind transfer the caller talks on with someone else, and the agent must not
  stay "on call" until then. ``first_hangup`` (caller / agent) is which leg Asterisk
  reported down first, not who pressed hang-up. With ``auto_wrap_up_s`` the agent
  is made available again after that long (unless they changed state meanwhile).

After every AMI login, a subscription overflow and the tracker's start (a restarted worker
0), the tracker resyncs with Asterisk's live channels: calls that ended unseen end, agent
calls never seen dialled are adopted (``agent_call_resync.py``, the base class).

What the tracker writes on the timeline, and when it leaves a fact to the call-event bridge
(``record_on_timeline``): ``agent_call_timeline.py``. A failed state change or write (store
down, reservation already gone) is logged with the call id; it is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.agents.model import AgentState
from ivr_engine.contact_center.agent_call_resync import AgentCallResync
from ivr_engine.contact_center.agent_call_timeline import (
    AGENT_ENDED,
    AGENT_MISSED,
    AgentCallTimeline,
    AgentLeg,
    agent_call_key,
)
from ivr_engine.contact_center.load_tracker import LoadTracker
from ivr_engine.contact_center.router import AGENT_ANSWERED
from ivr_engine.flows.call_record import CALL_KEY_VARIABLE
from ivr_engine.ports import TimelineStore
from ivr_engine.stopping import cancel_and_wait
from ivr_engine.telephony.ami import AmiClient, AmiError, AmiEvent, AmiState, chan_variables

log = logging.getLogger(__name__)

SUBSCRIBED = ("UserEvent", "DialEnd", "Hangup", "AgentConnect", "FullyBooted")


class AgentCallTracker(AgentCallResync):
    def __init__(
        self,
        ami: AmiClient,
        agents: AgentStateStore,
        timeline: TimelineStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        auto_wrap_up_s: float | None = None,
        load: LoadTracker | None = None,
        record_on_timeline: bool = True,
        resync_timeout_s: float = 15.0,
    ) -> None:
        self._ami = ami
        self._agents = agents
        self._timeline = AgentCallTimeline(
            timeline, clock=clock, record_on_timeline=record_on_timeline
        )
        self._clock = clock
        self._auto_wrap_up_s = auto_wrap_up_s
        self._load = load
        self._legs: dict[str, AgentLeg] = {}
        self._agent_channels: dict[str, str] = {}  # agent leg Uniqueid -> caller Uniqueid
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.Task[None]] = set()
        self._resync_timeout_s = resync_timeout_s
        self._resynced_login = -1  # the AMI login the last resync ran on
        self.handled = 0
        self.resyncs = 0  # channel lists reconciled
        self.resync_ended = 0  # calls ended because Asterisk no longer listed them

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="agent-call-tracker")

    async def aclose(self) -> None:
        await cancel_and_wait(t for t in [self._task, *self._timers] if t is not None)

    async def _run(self) -> None:
        while True:
            subscription = self._ami.subscribe(*SUBSCRIBED, maxsize=10_000)
            try:
                await self.resync(subscription)  # a gap: a (re)start, or the overflow below
                async for event in subscription:
                    if event.name.casefold() != "fullybooted":
                        await self.handle(event)
                    elif self._resynced_login != self._ami.logins:
                        await self.resync(subscription)
            except AmiError as exc:  # overflow or closed: subscribe again, resync
                log.error("AMI event stream interrupted (%r); resubscribing", exc)
            finally:
                subscription.close()
            if self._ami.state is AmiState.CLOSED:
                return
            await asyncio.sleep(0.1)

    async def handle(self, event: AmiEvent) -> None:
        name = event.get("Event")
        uniqueid = event.get("Uniqueid") or ""
        if self._load is not None:
            if name == "Hangup":
                self._load.call_ended(uniqueid)
            elif name == "AgentConnect":  # a queue member answered; Uniqueid: the caller
                self._load.call_answered(uniqueid)
        if name == "UserEvent" and event.get("UserEvent") == "IvrAgentDial":
            call_key = chan_variables(event).get(CALL_KEY_VARIABLE, "")
            if call_key and agent_call_key(uniqueid, call_key) == uniqueid:
                log.warning("call %s: %s %r is not this call's key (<uniqueid>~<nonce>): its "
                            "agent events are keyed by the uniqueid", uniqueid,
                            CALL_KEY_VARIABLE, call_key[:100])  # fmt: skip
            self._legs[uniqueid] = AgentLeg(
                call_id=uniqueid,
                agent_id=event.get("Agent") or "",
                customer_id=event.get("Customer") or "",
                caller=event.get("CallerIDNum") or "",
                dialled_at=self._clock(),
                call_key=call_key,
            )
            return
        if name == "Hangup" and uniqueid in self._agent_channels:
            leg = self._legs.get(self._agent_channels[uniqueid])
            if leg is not None:
                self.handled += 1
                await self._hangup(leg, event.get("Cause") or "", first_hangup="agent")
            return
        leg = self._legs.get(uniqueid)
        if leg is None or not leg.agent_id:
            return
        self.handled += 1
        if name == "DialEnd":
            leg.agent_channel = event.get("DestUniqueid") or ""
            await self._dial_end(leg, event.get("DialStatus") or "")
        elif name == "Hangup":
            await self._hangup(leg, event.get("Cause") or "", first_hangup="caller")

    async def _dial_end(self, leg: AgentLeg, status: str) -> None:
        now = self._clock()
        if self._load is not None:
            if status == "ANSWER":
                self._load.call_answered(leg.call_id)
            else:
                self._load.call_missed(leg.call_id)
        if status == "ANSWER":
            leg.answered_at = now
            if leg.agent_channel:
                self._agent_channels[leg.agent_channel] = leg.call_id
            await self._agent_step(lambda: self._agents.confirm(leg.agent_id, leg.call_id, now=now))
            ring_ms = round((now - leg.dialled_at).total_seconds() * 1000)
            await self._timeline.record(
                leg, AGENT_ANSWERED, {"ring_ms": ring_ms}, suffix="answered"
            )
            return
        await self._agent_step(
            lambda: self._agents.release(leg.agent_id, leg.call_id, wrap_up=False, now=now)
        )
        await self._timeline.record(
            leg, AGENT_MISSED, {"dial_status": status}, suffix=f"missed:{status}"
        )
        del self._legs[leg.call_id]  # a reroute raises a new IvrAgentDial

    async def _hangup(self, leg: AgentLeg, cause: str, *, first_hangup: str) -> None:
        """The interaction ends: whichever side hangs up first; the other side's hang-up
        then finds no leg and does nothing."""
        self._legs.pop(leg.call_id, None)
        self._agent_channels.pop(leg.agent_channel, None)
        if leg.answered_at is None:
            await self._agent_step(
                lambda: self._agents.release(leg.agent_id, leg.call_id, wrap_up=False)
            )
            return
        now = self._clock()
        await self._agent_step(lambda: self._agents.release(leg.agent_id, leg.call_id, now=now))
        talk_s = round((now - leg.answered_at).total_seconds(), 1)
        data = {"talk_s": talk_s, "cause": cause, "first_hangup": first_hangup}
        await self._timeline.record(leg, AGENT_ENDED, data, suffix="ended")
        self._start_wrap_up_timer(leg.agent_id)

    def _start_wrap_up_timer(self, agent_id: str) -> None:
        if self._auto_wrap_up_s is not None:
            timer = asyncio.create_task(self._end_wrap_up(agent_id, self._auto_wrap_up_s))
            self._timers.add(timer)
            timer.add_done_callback(self._timers.discard)

    async def _end_wrap_up(self, agent_id: str, after_s: float) -> None:
        await asyncio.sleep(after_s)
        with contextlib.suppress(AgentStateError):
            if (await self._agents.get(agent_id)).state is AgentState.WRAP_UP:
                await self._agents.set_state(agent_id, AgentState.AVAILABLE)

    async def _agent_step(self, step: Callable[[], Any]) -> None:
        try:
            await step()
        except AgentStateError as exc:  # lost/expired reservation, store down: log, go on
            log.warning("agent state change failed: %r", exc)

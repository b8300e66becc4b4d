"""``AgentCallTracker``: Asterisk's own view of agent calls (AMI) → agent state + timeline.

The dialplan raises ``UserEvent(IvrAgentDial, Agent, Customer, Intent)`` on the caller's
channel just before ``Dial`` (dialplans/ivr-engine.conf), so the tracker needs no shared
memory with the FastAGI process that routed the call: everything is keyed by the caller's
``Uniqueid`` (the call id the reservation was made with).

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
0), the tracker resyncs with Asterisk's live channels (``call_resync.py``): a call whose
caller channel is gone (its ``Hangup`` was sent while AMI was down) ends in the load view
and for its agent (ringing: given back; on the call: wrap-up, as after a hang-up), with
nothing on the timeline: when and how it ended is unknown, and the call-event bridge, which
owns the durable call record, closes it from its own resync. Agent calls still up that the
tracker never saw dialled are adopted; their later events are recorded with
``recovered: true`` (ring and talk times counted from the agent's last state change).

Timeline event ids derive from the call id, so a replay or a second tracker writes nothing
twice. Where the call-event bridge (crm_bridge.calls) runs on the same Asterisk, it records
the answer and the end durably (``call.answered_by_agent``, ``call.ended``); with
``record_on_timeline=False`` (setting ``agent_events_on_timeline: false``) the tracker then
writes only ``call.agent_missed`` and drives agent state, so each fact is on the timeline
once (the last-agent affinity reads either form). A failed state change or write (store
down, reservation already gone) is logged with the call id; it is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.agents.model import AgentState
from ivr_engine.contact_center.call_resync import (
    LIST_ACTION,
    ChannelList,
    Holding,
    end_gone_load_calls,
    plan_agents,
    read_holdings,
)
from ivr_engine.contact_center.load_view import LoadTracker
from ivr_engine.contact_center.router import AGENT_ANSWERED
from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.ports import Identity, NewTimelineEvent, TimelineStore
from ivr_engine.stopping import cancel_and_wait
from ivr_engine.telephony.ami import AmiClient, AmiError, AmiEvent, AmiState, Subscription

log = logging.getLogger(__name__)

AGENT_MISSED = "call.agent_missed"
AGENT_ENDED = "call.agent_ended"
# What the call-event bridge also records (as call.answered_by_agent and call.ended); it has
# no counterpart of call.agent_missed, which the tracker keeps writing.
BRIDGE_RECORDS = frozenset({AGENT_ANSWERED, AGENT_ENDED})
SUBSCRIBED = ("UserEvent", "DialEnd", "Hangup", "AgentConnect", "FullyBooted")


@dataclass(slots=True)
class AgentLeg:
    call_id: str
    agent_id: str
    customer_id: str
    caller: str
    dialled_at: datetime
    answered_at: datetime | None = None
    agent_channel: str = ""  # the agent leg's Uniqueid, from the answered DialEnd
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False  # adopted by a resync: its times are approximate


class AgentCallTracker:
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
        self._record_on_timeline = record_on_timeline
        self._agents = agents
        self._timeline = timeline
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
            self._legs[uniqueid] = AgentLeg(
                call_id=uniqueid,
                agent_id=event.get("Agent") or "",
                customer_id=event.get("Customer") or "",
                caller=event.get("CallerIDNum") or "",
                dialled_at=self._clock(),
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

    # --- resync with Asterisk's channel list (call_resync.py) ------------------------------

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
                           hold.since, answered_at, recovered=True)  # fmt: skip
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
            await self._record(leg, AGENT_ANSWERED, {"ring_ms": ring_ms}, suffix="answered")
            return
        await self._agent_step(
            lambda: self._agents.release(leg.agent_id, leg.call_id, wrap_up=False, now=now)
        )
        await self._record(leg, AGENT_MISSED, {"dial_status": status}, suffix=f"missed:{status}")
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
        await self._record(leg, AGENT_ENDED, data, suffix="ended")
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

    async def _record(self, leg: AgentLeg, kind: str, data: dict[str, Any], suffix: str) -> None:
        if not self._record_on_timeline and kind in BRIDGE_RECORDS:
            return  # the call-event bridge records this fact
        if leg.recovered:  # adopted by a resync: ring and talk times are approximate
            data = {**data, "recovered": True}
        try:
            customer_id = leg.customer_id or await self._customer_by_phone(leg.caller)
            if not customer_id:
                log.warning(
                    "call %s: no customer for %r; %s not stored", leg.call_id, leg.caller, kind
                )
                return
            event = NewTimelineEvent(
                event_id=f"voice:{leg.call_id}:{suffix}:{leg.agent_id}",
                customer_id=customer_id,
                occurred_at=self._clock(),
                channel="voice",
                event_type=kind,
                data={"agent_id": leg.agent_id, **data},
            )
            await self._timeline.append_events([event])
        except IvrEngineError as exc:
            log.error("call %s: %s not stored: %r", leg.call_id, kind, exc)

    async def _customer_by_phone(self, phone: str) -> str:
        if not phone:
            return ""
        found = await self._timeline.find_customers(Identity("phone", phone))
        return found[0].customer_id if len(found) == 1 else ""

"""What a resync with Asterisk's channel list decides, for the AMI call tracker.

The engine learns that a call ended only from AMI events (``Hangup``, ``DialEnd`` ...);
those sent while the AMI connection was down (Asterisk restarted, a network blip, worker 0
restarting under ``--workers N``) are lost. After every login ``AgentCallTracker`` asks
Asterisk for its live channels (``CoreShowChannels``: one ``CoreShowChannel`` event per
channel, then ``CoreShowChannelsComplete``) and ends, in the load view and in the agent
state, the calls whose caller channel is no longer listed. A call is the caller channel's
``Uniqueid`` (``agi_uniqueid``: the AGI runs on the caller's channel), the id the router
reserved the agent and fed the load view with.

Race with calls routed around the request (by this worker or another one): nothing is
ended that may have started after the list was asked for (``asked_at``, taken before the
request is sent).

* Load view: a call is ended only if it started waiting before ``asked_at``. Its channel
  existed then (the IVR runs on it while it is routed), so Asterisk, which takes its list
  after receiving the request, lists it unless it has gone. A call routed after
  ``asked_at`` may be missing from the list only because its channel is newer: it stays.
* Agents: the agent state is read before the request is sent; only the calls agents held
  then are candidates (a reservation made later is never released for being unlisted).

Call ids that are not Asterisk uniqueids (FreeSWITCH's UUIDs when the engine also serves
``esl_port``, the ``agi-…`` stand-in of a request without ``agi_uniqueid``) are never
ended: Asterisk could not list them.

Pure, except the reads at the end (agent state; the load view, with workers the
supervisor's ledger) and the load view's ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.agents.model import AgentSnapshot
from ivr_engine.contact_center.linked_load import READ_TIMEOUT_S, LinkedLoadTracker
from ivr_engine.contact_center.load_tracker import LoadTracker, LoadUnavailable
from ivr_engine.contact_center.load_view import WaitingCall
from ivr_engine.flows.call_record import CALL_KEY_VARIABLE
from ivr_engine.telephony.ami import AmiEvent, chan_variables

log = logging.getLogger(__name__)

LIST_ACTION = "CoreShowChannels"
# ``[systemname-]<epoch seconds>.<counter>``: the form Asterisk gives every channel it makes.
_UNIQUEID = re.compile(r"(?:.+-)?\d+\.\d+")


def is_asterisk_uniqueid(call_id: str) -> bool:
    return _UNIQUEID.fullmatch(call_id) is not None


@dataclass(frozen=True, slots=True)
class ChannelList:
    """Asterisk's live channels (by ``Uniqueid``) and when the list was asked for."""

    asked_at: datetime
    uniqueids: frozenset[str]
    callers: Mapping[str, str]  # Uniqueid -> CallerIDNum
    call_keys: Mapping[str, str] = field(default_factory=dict)  # Uniqueid -> IVR_CALL_KEY

    @classmethod
    def from_events(cls, events: Iterable[AmiEvent], asked_at: datetime) -> ChannelList:
        listed = [
            event
            for event in events
            if event.name.casefold() == "coreshowchannel" and event.get("Uniqueid")
        ]
        callers = {event.get("Uniqueid", ""): event.get("CallerIDNum", "") for event in listed}
        keys = {
            event.get("Uniqueid", ""): chan_variables(event).get(CALL_KEY_VARIABLE, "")
            for event in listed
        }
        return cls(asked_at, frozenset(callers), MappingProxyType(callers), MappingProxyType(keys))

    def gone(self, uniqueid: str) -> bool:
        """Not listed, and an id Asterisk would have listed."""
        return uniqueid not in self.uniqueids and is_asterisk_uniqueid(uniqueid)

    def caller(self, uniqueid: str) -> str:
        number = self.callers.get(uniqueid, "")
        return "" if number in ("", "<unknown>") else number

    def call_key(self, uniqueid: str) -> str:
        """The channel's ``IVR_CALL_KEY`` (manager.conf ``channelvars``); empty if not listed."""
        return self.call_keys.get(uniqueid, "")


@dataclass(frozen=True, slots=True)
class Holding:
    """An agent holding a call: ringing (its reservation) or on it (an interaction)."""

    agent_id: str
    call_id: str
    answered: bool
    since: datetime  # when the agent entered its state: the best guess at the ring/answer


def holdings(agents: Mapping[str, AgentSnapshot]) -> list[Holding]:
    """Every (agent, call) the agent state holds, in a stable order."""
    held: list[Holding] = []
    for agent_id, agent in sorted(agents.items()):
        if agent.reservation is not None:
            held.append(Holding(agent_id, agent.reservation.call_id, False, agent.since))
        held += [Holding(agent_id, call_id, True, agent.since) for call_id in agent.interactions]
    return held


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """What the resync does to the agent calls."""

    end: tuple[str, ...] = ()  # the tracker's calls whose caller (or agent) channel is gone
    release: tuple[Holding, ...] = ()  # agents holding a gone call the tracker did not know
    adopt: tuple[Holding, ...] = ()  # agent calls still up the tracker did not know


def plan_agents(
    channels: ChannelList,
    suspects: Mapping[str, str],
    known: Mapping[str, str],
    held: Iterable[Holding],
) -> AgentPlan:
    """``suspects``: the tracker's calls (call id -> agent channel, "" before the answer)
    when the list was asked; ``known``: the same once the events queued behind the list
    were handled (a call they ended or moved on is left to them); ``held``: what the agent
    state held when the list was asked. A call is over when its caller's channel is gone,
    or the agent's channel of its answer (as the tracker reads a ``Hangup`` of either)."""
    end = tuple(
        call_id
        for call_id, agent_channel in sorted(suspects.items())
        if known.get(call_id) == agent_channel
        and (channels.gone(call_id) or channels.gone(agent_channel))
    )
    release: list[Holding] = []
    adopt: dict[str, Holding] = {}
    for hold in held:
        if hold.call_id in known:
            continue  # the tracker's own call: decided above
        if channels.gone(hold.call_id):
            release.append(hold)
        elif hold.call_id in channels.uniqueids:
            adopt.setdefault(hold.call_id, hold)
    return AgentPlan(end, tuple(release), tuple(adopt.values()))


def gone_calls(calls: Iterable[WaitingCall], channels: ChannelList) -> list[str]:
    """The load view's calls to end: waiting since before the list was asked, not listed."""
    return [c.call_id for c in calls if c.since < channels.asked_at and channels.gone(c.call_id)]


# --------------------------------------------------------------------------- reads


async def read_holdings(agents: AgentStateStore, now: datetime, timeout_s: float) -> list[Holding]:
    """What the agent state holds now; none (logged) if it cannot be read."""
    try:
        async with asyncio.timeout(timeout_s):
            return holdings(await agents.snapshot(now=now))
    except (TimeoutError, AgentStateError) as exc:
        log.warning("AMI resync: agent state unreadable (%r); agents not reconciled", exc)
        return []


async def read_load_calls(load: LoadTracker, now: datetime) -> Sequence[WaitingCall]:
    """The calls being waited on: this process's, or with workers the supervisor's ledger's
    (every worker's; ``LoadUnavailable`` if it does not answer in time)."""
    if isinstance(load, LinkedLoadTracker):
        return (await load.link.request_state(now, READ_TIMEOUT_S)).calls
    return load.calls()


async def end_gone_load_calls(load: LoadTracker, channels: ChannelList, now: datetime) -> set[str]:
    """End the load view's ``gone_calls``, as of ``asked_at`` (a later-arriving "waiting"
    that started before is then ignored); none (logged) if the view cannot be read."""
    try:
        calls = await read_load_calls(load, now)
    except LoadUnavailable as exc:
        log.warning("AMI resync: load view unreadable (%s); the next login retries", exc)
        return set()
    gone = gone_calls(calls, channels)
    for call_id in gone:
        load.call_ended(call_id, at=channels.asked_at)
    return set(gone)


__all__ = [
    "LIST_ACTION",
    "AgentPlan",
    "ChannelList",
    "Holding",
    "end_gone_load_calls",
    "gone_calls",
    "holdings",
    "is_asterisk_uniqueid",
    "plan_agents",
    "read_holdings",
    "read_load_calls",
]

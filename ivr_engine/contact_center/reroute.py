"""Reroute: the agent did not answer, pick the next one.

The decision is channel-agnostic (``Rerouter``): it gives back the unanswered agent's
reservation, routes again excluding every agent already rung, and answers the ``IVR_*``
variables to set: ``IVR_AGENT_ID`` / ``IVR_AGENT_ENDPOINT`` (empty: overflow to
``IVR_TARGET``) and ``IVR_TRIED_AGENTS``. If the caller hangs up before they are set, the
agent just reserved is given back at once (nobody will ring them). The caller's wait counts
from ``IVR_WAIT_START`` (written with the first route), so relaxation stages and overflow
targets go on from there; a missing or unreadable value counts from now.

* Asterisk (ivr-route in dialplans/ivr-engine.conf), after ``Dial`` without ``ANSWER``:
  ``AGI(agi://HOST:4573/reroute)`` (``reroute_handler`` here: reads the variables with
  ``GET FULL VARIABLE``, sets each with ``SET VARIABLE``). Not ``GET VARIABLE``: res_agi.c
  ``handle_getvariable`` reads into ``char tempstr[1024]``, so a long ``IVR_TRIED_AGENTS``
  would come back cut at 1023 bytes and an agent already rung could be rung again.
* FreeSWITCH (ivr-agent in dialplans/freeswitch/ivr-engine.xml), after a failed ``bridge``:
  ``IVR_SCRIPT=reroute`` then the ``socket`` application
  (``ivr_engine.telephony.esl.ivr_handler.esl_reroute_handler``: the variables come with the
  ``connect`` reply, one ``multiset`` sets them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.flows import variables
from ivr_engine.flows.call_record import CallRecord, IncomingCall
from ivr_engine.telephony.agi import AgiChannel, AgiRequest
from ivr_engine.telephony.ivr_handler import incoming_call

log = logging.getLogger(__name__)
REROUTE_SCRIPT = "reroute"
MAX_TRIED = 20
#: The channel variables a reroute reads.
REROUTE_READS = (
    variables.INTENT,
    variables.TARGET,
    variables.CUSTOMER_ID,
    variables.AGENT_ID,
    variables.TRIED_AGENTS,
    variables.WAIT_START,
)
VariableWriter = Callable[[Mapping[str, str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RerouteRequest:
    call: IncomingCall
    intent: str
    target: str
    customer_id: str | None
    missed: str  # the agent who did not answer; "" if none
    tried: frozenset[str]  # every agent rung for this call, the missed one included
    waiting_since: datetime | None = None  # IVR_WAIT_START; None: missing or unreadable


def reroute_request(call: IncomingCall, values: Mapping[str, str | None]) -> RerouteRequest:
    """The request from the channel's ``REROUTE_READS`` values (missing ones count as empty)."""
    missed = values.get(variables.AGENT_ID) or ""
    tried_text = values.get(variables.TRIED_AGENTS) or ""
    tried = {a for a in tried_text.split(",") if a} | ({missed} if missed else set())
    wait_text = values.get(variables.WAIT_START)
    waiting_since = variables.parse_wait_start(wait_text)
    if waiting_since is None:
        shown = (wait_text or "")[:40]
        log.info("call %s: IVR_WAIT_START %r: the wait counts from now", call.call_id, shown)
    return RerouteRequest(
        call=call,
        intent=values.get(variables.INTENT) or "operator",
        target=values.get(variables.TARGET) or "",
        customer_id=values.get(variables.CUSTOMER_ID) or None,
        missed=missed,
        tried=frozenset(tried),
        waiting_since=waiting_since,
    )


class Rerouter:
    def __init__(self, router: AgentRouter, agents: AgentStateStore) -> None:
        self._router = router
        self._agents = agents

    async def reroute(self, request: RerouteRequest, write: VariableWriter) -> None:
        """Decide, then ``write`` the variables; a hang-up meanwhile, or the stop's grace
        ending (cancelled: the dialplan overflows), frees the new agent."""
        values = await self.decide(request)
        try:
            await write(values)
        except BaseException:  # hung up (or stopped): the dialplan will not dial the agent
            chosen = values[variables.AGENT_ID]
            if chosen:
                await self._release(chosen, request.call.call_id)
            raise

    async def decide(self, request: RerouteRequest) -> dict[str, str]:
        """Give back the missed agent, route again: the variables to set, in order."""
        call_id = request.call.call_id
        if request.missed:
            await self._release(request.missed, call_id)
        values: dict[str, str] = {}
        agent_id, endpoint, ring_timeout = "", "", ""
        if len(request.tried) < MAX_TRIED:
            record = CallRecord(
                call=request.call,
                customer_id=request.customer_id,
                intent=request.intent,
                target=request.target,
            )
            result = await self._router.route(
                record, {}, exclude=request.tried, waiting_since=request.waiting_since
            )
            agent_id, endpoint = result.agent_id or "", result.endpoint or ""
            if result.agent_id is not None:
                ring_timeout = variables.ring_timeout_value(result.ring_timeout_s)
            if result.agent_id is None:
                values[variables.TARGET] = result.target
        values[variables.TRIED_AGENTS] = ",".join(sorted(request.tried))
        if ring_timeout:
            values[variables.RING_TIMEOUT] = ring_timeout
        values[variables.AGENT_ID] = agent_id
        values[variables.AGENT_ENDPOINT] = endpoint
        return values

    async def _release(self, agent_id: str, call_id: str) -> None:
        try:
            await self._agents.release(agent_id, call_id, wrap_up=False)
        except AgentStateError as exc:
            log.warning("call %s: releasing %s failed: %r", call_id, agent_id, exc)


def reroute_handler(
    router: AgentRouter, agents: AgentStateStore, clock: Callable[[], datetime]
) -> Callable[[AgiRequest, AgiChannel], Awaitable[None]]:
    """The FastAGI script ``reroute``."""
    rerouter = Rerouter(router, agents)

    async def handle(request: AgiRequest, channel: AgiChannel) -> None:
        values = {name: await channel.get_full_variable(name) for name in REROUTE_READS}
        call = reroute_request(incoming_call(request, clock()), values)

        async def set_each(settings: Mapping[str, str]) -> None:
            for name, value in settings.items():
                await channel.set_variable(name, value)

        await rerouter.reroute(call, set_each)

    return handle

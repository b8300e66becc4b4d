"""The FastAGI script ``reroute``: the agent did not answer, pick the next one.

Dialplan (ivr-route in dialplans/ivr-engine.conf), after ``Dial`` without ``ANSWER``:
``AGI(agi://HOST:4573/reroute)``. Reads the call's ``IVR_*`` variables, gives back the
unanswered agent's reservation, routes again excluding every agent already rung, and sets
``IVR_AGENT_ID`` / ``IVR_AGENT_ENDPOINT`` (empty: overflow to ``IVR_TARGET``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.flows import variables
from ivr_engine.flows.call_record import CallRecord
from ivr_engine.telephony.agi import AgiChannel, AgiRequest
from ivr_engine.telephony.ivr_handler import incoming_call

log = logging.getLogger(__name__)
REROUTE_SCRIPT = "reroute"
MAX_TRIED = 20


def reroute_handler(
    router: AgentRouter, agents: AgentStateStore, clock: Callable[[], datetime]
) -> Callable[[AgiRequest, AgiChannel], Awaitable[None]]:
    async def handle(request: AgiRequest, channel: AgiChannel) -> None:
        intent = await channel.get_variable(variables.INTENT) or "operator"
        target = await channel.get_variable(variables.TARGET) or ""
        customer_id = await channel.get_variable(variables.CUSTOMER_ID) or None
        missed = await channel.get_variable(variables.AGENT_ID) or ""
        tried_text = await channel.get_variable(variables.TRIED_AGENTS) or ""
        tried = {a for a in tried_text.split(",") if a} | ({missed} if missed else set())
        call = incoming_call(request, clock())
        if missed:
            try:
                await agents.release(missed, call.call_id, wrap_up=False)
            except AgentStateError as exc:
                log.warning("call %s: releasing %s failed: %r", call.call_id, missed, exc)
        record = CallRecord(call=call, customer_id=customer_id, intent=intent, target=target)
        if len(tried) >= MAX_TRIED:
            result_agent, endpoint = "", ""
        else:
            result = await router.route(record, {}, exclude=frozenset(tried))
            result_agent, endpoint = result.agent_id or "", result.endpoint or ""
            if result.agent_id is None:
                await channel.set_variable(variables.TARGET, result.target)
        await channel.set_variable(variables.TRIED_AGENTS, ",".join(sorted(tried)))
        await channel.set_variable(variables.AGENT_ID, result_agent)
        await channel.set_variable(variables.AGENT_ENDPOINT, endpoint)

    return handle

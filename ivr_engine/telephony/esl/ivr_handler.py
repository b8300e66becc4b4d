"""The IVR and the reroute over an outbound Event Socket: adapt FreeSWITCH's channel data
to the call flow and to the ``Rerouter``.

Dialplan: ``<action application="set" data="IVR_MENU=main"/>`` (optional, default ``main``)
then ``<action application="socket" data="HOST:8084 async full"/>``. After a ``bridge`` to
the agent failed: ``IVR_SCRIPT=reroute`` then the same ``socket`` (see ``outbound``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime

from ivr_engine.agents import AgentStateStore
from ivr_engine.contact_center.reroute import REROUTE_READS, Rerouter, reroute_request
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.flows.call_record import IncomingCall
from ivr_engine.flows.ivr_flow import IvrFlow
from ivr_engine.telephony.esl.channel import EslChannel
from ivr_engine.telephony.esl.outbound import EslHandler
from ivr_engine.telephony.esl.protocol import ChannelData

MENU_VARIABLE = "IVR_MENU"


def incoming_call(data: ChannelData, started_at: datetime) -> IncomingCall:
    """The call as FreeSWITCH announced it; ``received`` is now (the handler runs as soon
    as the ``connect`` reply is in)."""
    return IncomingCall(
        call_id=data.unique_id or f"esl-{uuid.uuid4()}",  # never id(): reused
        caller_id=data.caller_id,
        channel_name=data.channel_name or "",
        menu=data.variable(MENU_VARIABLE) or "main",
        started_at=started_at,
        received=time.perf_counter(),
        caller_withheld=data.caller_withheld,
    )


def esl_ivr_handler(flow: IvrFlow, clock: Callable[[], datetime]) -> EslHandler:
    async def handle(data: ChannelData, channel: EslChannel) -> None:
        await flow.run(incoming_call(data, clock()), channel)

    return handle


def esl_reroute_handler(
    router: AgentRouter, agents: AgentStateStore, clock: Callable[[], datetime]
) -> EslHandler:
    """The ``reroute`` script: the variables come with the ``connect`` reply (no round
    trip), the answer goes back in one ``multiset``."""
    rerouter = Rerouter(router, agents)

    async def handle(data: ChannelData, channel: EslChannel) -> None:
        values = {name: data.variable(name) for name in REROUTE_READS}
        request = reroute_request(incoming_call(data, clock()), values)
        await rerouter.reroute(request, channel.set_variables)

    return handle

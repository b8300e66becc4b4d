"""The IVR over an outbound Event Socket: adapts FreeSWITCH's channel data to the call flow.

Dialplan: ``<action application="set" data="IVR_MENU=main"/>`` (optional, default ``main``)
then ``<action application="socket" data="HOST:8084 async full"/>``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ivr_engine.flows.call_record import IncomingCall
from ivr_engine.flows.ivr_flow import IvrFlow
from ivr_engine.telephony.esl.channel import EslChannel
from ivr_engine.telephony.esl.outbound import EslHandler
from ivr_engine.telephony.esl.protocol import ChannelData

MENU_VARIABLE = "IVR_MENU"


def incoming_call(data: ChannelData, started_at: datetime) -> IncomingCall:
    return IncomingCall(
        call_id=data.unique_id or f"esl-{id(data)}",
        caller_id=data.caller_id,
        channel_name=data.channel_name or "",
        menu=data.variable(MENU_VARIABLE) or "main",
        started_at=started_at,
    )


def esl_ivr_handler(flow: IvrFlow, clock: Callable[[], datetime]) -> EslHandler:
    async def handle(data: ChannelData, channel: EslChannel) -> None:
        await flow.run(incoming_call(data, clock()), channel)

    return handle

"""The FastAGI script ``ivr``: adapts an AGI request to the call flow.

Dialplan: ``AGI(agi://HOST:4573/ivr?menu=main)``. The query string picks the menu.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from ivr_engine.flows.call_record import IncomingCall
from ivr_engine.flows.ivr_flow import IvrFlow
from ivr_engine.telephony.agi import AgiChannel, AgiRequest

IVR_SCRIPT = "ivr"


def incoming_call(
    request: AgiRequest, started_at: datetime, menu: str | None = None
) -> IncomingCall:
    return IncomingCall(
        call_id=request.uniqueid or f"agi-{uuid.uuid4()}",  # never id(): reused
        caller_id=request.caller_id,
        channel_name=request.channel or "",
        menu=menu or request.query.get("menu", "main"),
        started_at=started_at,
        received=request.received,
        caller_withheld=request.caller_withheld,
    )


def ivr_handler(
    flow: IvrFlow, clock: Callable[[], datetime]
) -> Callable[[AgiRequest, AgiChannel], Awaitable[None]]:
    async def handle(request: AgiRequest, channel: AgiChannel) -> None:
        await flow.run(incoming_call(request, clock()), channel)

    return handle

"""``GET /ws``: the desktop's WebSocket (Origin and session checked before the upgrade).

On connect the agent gets a ``hello`` (who, live state, latest pop), then state changes and
screen pops as they happen (see ``messages``). Every tab gets its own socket, up to
``max_sockets_per_session`` per session in this process: one more is closed at once with
1008 (policy violation) and the reason. A socket that sends more than
``max_socket_messages_per_minute`` messages in a minute (a client's ``ping``, answered with
``pong``; the page itself sends none) is closed the same way.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from aiohttp import WSCloseCode, WSMsgType, web

from ivr_engine.agents import AgentStateUnavailable, UnknownAgent
from ivr_engine.api.errors import ApiError
from ivr_engine.desktop.directory import DesktopAgent
from ivr_engine.desktop.guards import require_origin, require_session
from ivr_engine.desktop.keys import AGENTS, CONFIG, HUB
from ivr_engine.desktop.messages import HelloMessage, StateJson, agent_json, state_json

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE = 1024  # the browser only ever sends "ping"
CLOSE_TIMEOUT_S = 2.0

routes = web.RouteTableDef()


async def _state(request: web.Request, agent_id: str) -> StateJson | None:
    try:
        return state_json(await request.app[AGENTS].get(agent_id))
    except (AgentStateUnavailable, UnknownAgent) as exc:
        log.warning("desktop hello for agent %s without state: %s", agent_id, exc)
        return None


async def _hello(request: web.Request, agent: DesktopAgent) -> HelloMessage:
    return {
        "type": "hello",
        "agent": agent_json(agent),
        "state": await _state(request, agent.agent_id),
        "pop": request.app[HUB].latest_pop(agent.agent_id),
    }


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    require_origin(request)
    session, agent = await require_session(request)
    ws = web.WebSocketResponse(
        heartbeat=request.app[CONFIG].ws_heartbeat_s,
        max_msg_size=MAX_CLIENT_MESSAGE,
        timeout=CLOSE_TIMEOUT_S,
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "websocket_required", "this URL takes a WebSocket upgrade")
    await ws.prepare(request)
    hub, most = request.app[HUB], request.app[CONFIG].max_sockets_per_session
    if hub.session_connections(agent.agent_id, session.session_id) >= most:  # then attach:
        reason = f"too many desktop sockets for this session (at most {most})"  # no await
        log.info("desktop socket of agent %s refused: %s", agent.agent_id, reason)
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode("utf-8"))
        return ws
    hub.attach(agent.agent_id, session.session_id, ws)
    budget = MessageBudget(request.app[CONFIG].max_socket_messages_per_minute)
    try:
        await ws.send_json(await _hello(request, agent))
        async for message in ws:
            if not budget.take():
                reason = f"too many messages on this socket (at most {budget.per_minute} a minute)"
                log.info("desktop socket of agent %s closed: %s", agent.agent_id, reason)
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode("utf-8"))
                break
            if message.type == WSMsgType.TEXT and message.data == "ping":
                await ws.send_json({"type": "pong"})
            elif message.type != WSMsgType.TEXT:
                break
    except ConnectionError:
        log.debug("desktop socket of agent %s went away", agent.agent_id)
    finally:
        hub.detach(agent.agent_id, ws)
    return ws


class MessageBudget:
    """At most ``per_minute`` messages in any 60-second window (the times of the last
    ``per_minute`` messages are kept)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._times: deque[float] = deque(maxlen=per_minute)

    def take(self) -> bool:
        now = self._clock()
        if len(self._times) == self.per_minute and now - self._times[0] < 60.0:
            return False
        self._times.append(now)
        return True

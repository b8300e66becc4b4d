"""The desktop hub: every open desktop WebSocket, by agent, and the latest screen pop of each.

``DesktopHub.pop(agent_id, ring)`` is what routing calls when an agent's phone rings: it
reads the customer and their recent events from the timeline (failing open: a slow or
broken timeline gives a pop without history, never no pop), builds the pop, remembers it as
the agent's latest (a page opened later shows it) and sends it to every tab the agent has
open. A socket that cannot take a message within ``send_timeout_s`` is closed and dropped.

With a ``relay`` (several engine processes), every pop, dismissed pop, ended session and
forgotten agent is applied here first, then published, and the hubs of the other processes
apply it to the sockets they hold (``apply``). A relay that fails never fails the caller: the
note is logged, and a pop that could not be published is counted in ``pops_lost``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Protocol

from aiohttp import web

from ivr_engine.agents import AgentChange
from ivr_engine.desktop.messages import ByeMessage, Message, state_message
from ivr_engine.desktop.pop import FieldMasking, Ring, ScreenPopJson, build_screen_pop
from ivr_engine.desktop.relay import DesktopNote, DesktopRelay, DesktopRelayUnavailable
from ivr_engine.domain.errors import CustomerNotFound, TimelineUnavailable
from ivr_engine.ports import Customer, StoredEvent

log = logging.getLogger(__name__)

WS_CLOSE_SESSION_ENDED = 4401  # application close code: log in again
_CLOSE_TIMEOUT_S = 3.0


class CustomerHistory(Protocol):
    """The two reads a pop needs (``TimelineStore`` has both)."""

    async def get_customer(self, customer_id: str) -> Customer | None: ...

    async def recent_events(
        self, customer_id: str, *, limit: int = 50
    ) -> tuple[StoredEvent, ...]: ...


class DesktopHub:
    """``timeline`` None: pops carry no customer or history (marked unavailable)."""

    def __init__(
        self,
        timeline: CustomerHistory | None,
        *,
        masking: FieldMasking | None = None,
        intent_labels: Mapping[str, str] | None = None,
        max_contacts: int = 10,
        lookup_timeout_s: float = 2.0,
        send_timeout_s: float = 5.0,
        relay: DesktopRelay | None = None,
    ) -> None:
        self._timeline = timeline
        self._masking = masking or FieldMasking()
        self._labels = dict(intent_labels or {})
        self._max_contacts = max_contacts
        self._lookup_timeout_s = lookup_timeout_s
        self._send_timeout_s = send_timeout_s
        self._sockets: dict[str, dict[web.WebSocketResponse, str]] = {}  # agent → ws → session
        self._latest: dict[str, ScreenPopJson] = {}
        self._gone: dict[str, asyncio.Event] = {}  # set when the agent's last socket goes
        self.relay = relay
        self.origin = secrets.token_hex(8)
        self.pops_lost = 0  # pops the relay could not publish to the other processes

    # ------------------------------------------------------------------ sockets

    def use_menus(self, masking: FieldMasking, intent_labels: Mapping[str, str]) -> None:
        """Mask and label the next pops by the menus now in force (a menu reload)."""
        self._masking = masking
        self._labels = dict(intent_labels)

    def attach(self, agent_id: str, session_id: str, ws: web.WebSocketResponse) -> None:
        self._sockets.setdefault(agent_id, {})[ws] = session_id

    def detach(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        mine = self._sockets.get(agent_id)
        if mine is not None:
            mine.pop(ws, None)
            if not mine:
                del self._sockets[agent_id]
                gone = self._gone.pop(agent_id, None)
                if gone is not None:
                    gone.set()

    def connections(self, agent_id: str) -> int:
        return len(self._sockets.get(agent_id, ()))

    def session_connections(self, agent_id: str, session_id: str) -> int:
        """How many sockets of this process the session has open."""
        return sum(owner == session_id for owner in self._sockets.get(agent_id, {}).values())

    async def wait_disconnected(self, agent_id: str) -> None:
        """Return once the agent has no open desktop socket (wrap in a timeout)."""
        if agent_id in self._sockets:
            await self._gone.setdefault(agent_id, asyncio.Event()).wait()

    def connected_agents(self) -> list[str]:
        return sorted(self._sockets)

    async def send(self, agent_id: str, message: Message) -> int:
        """Send to every open socket of the agent; returns how many took it."""
        sockets = list(self._sockets.get(agent_id, ()))
        sent = await asyncio.gather(*(self._send_one(agent_id, ws, message) for ws in sockets))
        return sum(sent)

    async def _send_one(self, agent_id: str, ws: web.WebSocketResponse, message: Message) -> bool:
        if ws.closed:
            self.detach(agent_id, ws)
            return False
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await ws.send_json(message)
            return True
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            log.info("desktop socket of agent %s dropped: %r", agent_id, exc)
            self.detach(agent_id, ws)
            await _close_quietly(ws, 1011, "send failed")
            return False

    async def close_session(self, session_id: str, reason: str) -> None:
        """Say goodbye to, and close, every socket opened with this session, everywhere."""
        note = DesktopNote("session_ended", self.origin, session_id=session_id, reason=reason)
        await self.apply(note)
        await self._publish(note)

    async def _close_local_session(self, session_id: str, reason: str) -> None:
        await asyncio.gather(
            *(
                self._bye(agent_id, ws, reason)
                for agent_id, sockets in list(self._sockets.items())
                for ws, owner in list(sockets.items())
                if owner == session_id
            )
        )

    async def close_all(self, reason: str) -> None:
        await asyncio.gather(
            *(
                self._bye(agent_id, ws, reason)
                for agent_id, sockets in list(self._sockets.items())
                for ws in list(sockets)
            )
        )

    async def _bye(self, agent_id: str, ws: web.WebSocketResponse, reason: str) -> None:
        self.detach(agent_id, ws)
        bye: ByeMessage = {"type": "bye", "reason": reason}
        if not ws.closed:
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    await ws.send_json(bye)
            except (ConnectionError, RuntimeError, TimeoutError):
                pass
        await _close_quietly(ws, WS_CLOSE_SESSION_ENDED, reason)

    # ------------------------------------------------------------------ state and pops

    async def push_state(self, change: AgentChange) -> int:
        return await self.send(change.agent.agent_id, state_message(change))

    def latest_pop(self, agent_id: str) -> ScreenPopJson | None:
        return self._latest.get(agent_id)

    async def clear_pop(self, agent_id: str) -> None:
        note = DesktopNote("pop_cleared", self.origin, agent_id=agent_id)
        await self.apply(note)
        await self._publish(note)

    async def forget(self, agent_id: str) -> None:
        """Drop the agent's latest pop without telling anyone (the agent logged out)."""
        note = DesktopNote("forget", self.origin, agent_id=agent_id)
        await self.apply(note)
        await self._publish(note)

    async def pop(self, agent_id: str, ring: Ring) -> int:
        """Build the screen pop for ``ring`` and send it; returns the local sockets that took it."""
        customer, events, available = await self._history(ring.customer_id)
        payload = build_screen_pop(
            ring,
            customer,
            events,
            masking=self._masking,
            intent_labels=self._labels,
            max_contacts=self._max_contacts,
            history_available=available,
        )
        note = DesktopNote("pop", self.origin, agent_id=agent_id, pop=payload)
        sent = await self.apply(note)
        await self._publish(note)
        return sent

    async def apply(self, note: DesktopNote) -> int:
        """Apply a note to the sockets of this process; returns how many took a message."""
        agent_id = note.agent_id
        if note.kind == "session_ended" and note.session_id is not None:
            await self._close_local_session(note.session_id, note.reason or "session ended")
        elif agent_id is None:
            log.warning("desktop note %s without an agent: ignored", note.kind)
        elif note.kind == "pop" and note.pop is not None:
            self._latest[agent_id] = note.pop
            return await self.send(agent_id, {"type": "pop", "pop": note.pop})
        elif note.kind == "pop_cleared" and self._latest.pop(agent_id, None) is not None:
            return await self.send(agent_id, {"type": "pop_cleared"})
        elif note.kind == "forget":
            self._latest.pop(agent_id, None)
        return 0

    async def _publish(self, note: DesktopNote) -> None:
        if self.relay is None:
            return
        try:
            await self.relay.publish(note)
        except DesktopRelayUnavailable as exc:
            if note.kind == "pop":
                self.pops_lost += 1
            log.warning(
                "desktop %s for agent %s not shared with the other engine processes: %s",
                note.kind,
                note.agent_id or note.session_id,
                exc,
            )

    async def _history(
        self, customer_id: str | None
    ) -> tuple[Customer | None, Sequence[StoredEvent], bool]:
        """(customer, newest events, whether the timeline answered): fails open."""
        store = self._timeline
        if customer_id is None or store is None:
            return None, (), store is not None
        customer: Customer | None = None
        try:
            async with asyncio.timeout(self._lookup_timeout_s):
                customer = await store.get_customer(customer_id)
                if customer is not None and customer.merged_into is not None:
                    customer = await store.get_customer(customer.merged_into) or customer
                if customer is None:
                    return None, (), True
                recent = await store.recent_events(
                    customer.customer_id, limit=self._max_contacts + 1
                )
            return customer, recent, True
        except (TimelineUnavailable, TimeoutError, CustomerNotFound):
            log.warning("screen pop for customer %s without history", customer_id, exc_info=True)
            return customer, (), False


async def _close_quietly(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await ws.close(code=code, message=reason.encode("utf-8")[:120], drain=False)
    except (ConnectionError, RuntimeError, TimeoutError):
        pass

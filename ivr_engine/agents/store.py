"""The one port for live agent state: in-process (``memory.py``) and Redis (``redis_store.py``).

Every method that takes ``now`` uses the store's clock when it is None. Reservations expire
``ttl_s`` seconds after ``now`` unless confirmed, and a ringing one ``ring_ttl_s`` after its
``confirm`` when given (the agent is available again). An expired reservation is treated as
gone by every operation and ``snapshot``, and ``expire_reservations`` writes the expiries
down (and publishes them, cause ``expiry``) for the feed. Errors: ``UnknownAgent``,
``InvalidTransition``, ``ReservationLost``, and ``AgentStateUnavailable`` when the backing
store is down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from ivr_engine.agents.model import AgentChange, AgentSnapshot, AgentState


class AgentStateStore(Protocol):
    async def register_agent(
        self, agent_id: str, *, max_concurrent: int = 1, now: datetime | None = None
    ) -> AgentSnapshot:
        """Create the agent logged out, or update ``max_concurrent`` of an existing one."""
        ...

    async def get(self, agent_id: str, *, now: datetime | None = None) -> AgentSnapshot:
        """One agent (``UnknownAgent`` if not registered)."""
        ...

    async def snapshot(self, *, now: datetime | None = None) -> Mapping[str, AgentSnapshot]:
        """Every agent by id, read at one instant: the routing policy's input."""
        ...

    async def set_state(
        self, agent_id: str, state: AgentState, now: datetime | None = None
    ) -> AgentSnapshot:
        """Agent or supervisor change: logged_out, available or paused only."""
        ...

    async def reserve(
        self, agent_id: str, call_id: str, ttl_s: float, *, now: datetime | None = None
    ) -> bool:
        """Atomically reserve a free agent for a call; True if this call now holds it.

        Reserving again for the call that already holds the reservation returns True.
        """
        ...

    async def reserve_first(
        self,
        candidate_ids: Sequence[str],
        call_id: str,
        ttl_s: float,
        *,
        now: datetime | None = None,
    ) -> str | None:
        """Reserve the first candidate, in order, that can be reserved (one atomic step).

        Unknown and busy candidates are skipped; None if nobody could be reserved.
        """
        ...

    async def confirm(
        self,
        agent_id: str,
        call_id: str,
        *,
        ring_ttl_s: float | None = None,
        now: datetime | None = None,
    ) -> AgentState:
        """Advance the call's reservation: reserved → ringing, ringing → on_call.

        Ringing expires ``ring_ttl_s`` seconds after ``now`` (None: never), a safety net
        should nobody give the agent back. ``ReservationLost`` if the agent no longer holds
        it (expired or released); ``ValueError`` if ``ring_ttl_s`` is not > 0.
        """
        ...

    async def release(
        self, agent_id: str, call_id: str, *, wrap_up: bool = True, now: datetime | None = None
    ) -> bool:
        """Give back the reservation or end the interaction for this call.

        reserved/ringing → available; the last interaction ending → wrap_up (or available
        when ``wrap_up`` is False). False if the agent held nothing for this call.
        """
        ...

    async def expire_reservations(self, *, now: datetime | None = None) -> list[str]:
        """Write down every expired reservation; returns the agents that expired."""
        ...

    def changes(self) -> AbstractAsyncContextManager[AsyncIterator[AgentChange]]:
        """Subscribe to the change feed; subscribed once the ``async with`` is entered.

        ``ChangeFeedLagged`` if the subscriber falls too far behind: re-read ``snapshot``.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; open feeds end."""
        ...

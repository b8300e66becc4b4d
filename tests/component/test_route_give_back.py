"""An agent reserved for a call that will never dial them is given back.

The router confirms a reservation at once (reserved → ringing), and the ringing agent is
freed by the dialplan's ``Dial`` (the AMI tracker), a reroute, or, as a last resort, the
ring expiry (``ring_expiry_s``, default ``ring_timeout_s`` + 30 s). So the engine itself
gives the agent back when the call will not reach ``Dial``:

* the caller hangs up while the routing variables are set (Asterisk closes the FastAGI
  socket on the ``MSet``): ``IvrFlow`` releases the agent and withdraws the screen pop;
* the store answers the confirm later than the router waits (Redis ran it; the reply is
  slow): the caller overflows, and the agent is released in the background.

Both stores, through a real FastAGI server and the real Redis (a TCP proxy in front of it
delays the replies).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr_engine.agents import (
    AgentState,
    AgentStateStore,
    InMemoryAgentStateStore,
    RedisAgentStateStore,
)
from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.desktop import DesktopHub
from ivr_engine.domain.models import CallOutcome
from ivr_engine.flows.call_record import CallRecord, IncomingCall
from ivr_engine.flows.ivr_flow import IvrFlow
from ivr_engine.menu_config import load_menus
from ivr_engine.routing import build_roster, load_routing_config
from ivr_engine.telephony.agi import FastAgiServer
from ivr_engine.telephony.ivr_handler import ivr_handler
from ivr_engine.timeline import Timeline, open_timeline
from tests.component.fake_asterisk import DROP, AsteriskChannel, FakeAsterisk, Reply
from tests.component.flow_doubles import NobodyKnown, Records
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

REPO = Path(__file__).resolve().parents[2]
ROUTING = load_routing_config(REPO / "config/routing.yaml")
PROFILES = load_agent_profiles(REPO / "config/agents.yaml", ROUTING)
MENUS = load_menus(REPO / "config/menus")
BILLING_KEY = next(o.digit for o in MENUS["main"].options if o.intent == "billing")
WAIT_S = 10.0


def now() -> datetime:
    return datetime.now(UTC)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def everyone_available(store: AgentStateStore) -> None:
    for profile in PROFILES:
        await store.register_agent(profile.agent_id)
        await store.set_state(profile.agent_id, AgentState.AVAILABLE)


@pytest.fixture
async def timeline(sqlite_url: str) -> AsyncIterator[Timeline]:
    opened = await open_timeline(sqlite_url, migrate=False)
    yield opened
    await opened.close()


@pytest.fixture(params=["memory", "redis"])
async def agents(request: pytest.FixtureRequest) -> AsyncIterator[AgentStateStore]:
    if request.param == "memory":
        store: AgentStateStore = InMemoryAgentStateStore()
        yield store
        await store.aclose()
        return
    await require_redis()
    prefix = f"test:{{give-back-{uuid.uuid4().hex}}}:"
    store = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix)
    try:
        yield store
    finally:
        await store.aclose()
        await delete_prefix(prefix)


def hangs_up_at_routing(channel: AsteriskChannel) -> Callable[[str], Reply]:
    """Asterisk whose caller hangs up as the routing variables are set: the line goes dead."""

    def answer(command: str) -> Reply:
        if '"MSET"' in command.upper() and "IVR_OUTCOME=routed" in command:
            return DROP
        return channel(command)

    return answer


async def test_a_caller_hanging_up_as_the_variables_are_set_gives_the_agent_back(
    agents: AgentStateStore, timeline: Timeline
) -> None:
    await everyone_available(agents)
    hub = DesktopHub(timeline.store)
    roster = build_roster(PROFILES)
    router = AgentRouter(
        roster=roster, config=ROUTING, agents=agents, timeline=timeline.store, hub=hub
    )
    sink = Records()
    flow = IvrFlow(menus=MENUS, lookup=NobodyKnown(), sink=sink, clock=now, router=router)
    server = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, command_timeout=2.0)
    server.register("ivr", ivr_handler(flow, now))
    await server.start()
    try:
        asterisk = AsteriskChannel(keys=[BILLING_KEY, "40012345"])
        transcript = await FakeAsterisk("127.0.0.1", server.port).call(
            hangs_up_at_routing(asterisk)
        )
        assert transcript.dropped
        await eventually(lambda: _has_record(sink), "the call was never recorded")
    finally:
        await server.close(grace=0)
        await router.aclose()
    [record] = sink.records
    assert record.outcome is CallOutcome.ABANDONED
    assert record.routing is not None and record.routing.agent_id is not None
    chosen = record.routing.agent_id
    snapshot = await agents.get(chosen)
    assert (snapshot.state, snapshot.reservation) == (AgentState.AVAILABLE, None)
    assert hub.latest_pop(chosen) is None  # no pop left up for a call that never comes
    assert {"step": "agent_released", "agent": chosen} in record.path


async def _has_record(sink: Records) -> bool:
    return bool(sink.records)


# ---------------------------------------------------------------- a slow confirm reply


@dataclass
class SlowReplies:
    """A TCP proxy in front of the real Redis that holds back the replies containing
    ``marker`` by ``delay_s`` (the command has run in Redis; only its answer is late)."""

    marker: bytes
    delay_s: float
    server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
        redis_r, redis_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(
            self._pipe(client_r, redis_w, slow=False),
            self._pipe(redis_r, client_w, slow=True),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, slow: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if slow and self.marker in data:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


async def test_a_confirm_answered_too_late_overflows_the_caller_and_frees_the_agent(
    timeline: Timeline,
) -> None:
    await require_redis()
    prefix = f"test:{{give-back-{uuid.uuid4().hex}}}:"
    proxy = SlowReplies(marker=b'"state":"ringing"', delay_s=0.8)  # the CONFIRM reply
    store = RedisAgentStateStore.from_url(await proxy.start(), prefix=prefix)
    direct = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix)
    router = AgentRouter(
        roster=build_roster(PROFILES), config=ROUTING, agents=store, timeline=timeline.store
    )
    record = CallRecord(
        call=IncomingCall("call-slow-1", None, "PJSIP/x", "main", now()),
        intent="billing",
        target="queue:billing",
    )
    try:
        await everyone_available(direct)
        result = await router.route(record, {})
        assert (result.agent_id, result.target) == (None, "queue:billing")

        async def nobody_held() -> bool:
            snap = await direct.snapshot()
            return all(
                s.state is AgentState.AVAILABLE and s.reservation is None for s in snap.values()
            )

        await eventually(nobody_held, "an agent stayed held for a call that went to the queue")
    finally:
        await router.aclose()
        await store.aclose()
        await direct.aclose()
        await proxy.close()
        await delete_prefix(prefix)


async def test_a_reserve_answered_too_late_gives_the_agent_back_when_it_arrives(
    timeline: Timeline,
) -> None:
    """The reserve reply comes after the router's store_timeout_s (0.5 s): the caller has
    gone to the queue, and the agent that reply names is given back as soon as it arrives,
    not left reserved until the reservation's own expiry (ring_timeout_s + 10 s = 30 s)."""
    await require_redis()
    prefix = f"test:{{give-back-{uuid.uuid4().hex}}}:"
    proxy = SlowReplies(marker=b'{"reserved":"', delay_s=1.2)  # a RESERVE that reserved
    store = RedisAgentStateStore.from_url(await proxy.start(), prefix=prefix)
    direct = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix)
    router = AgentRouter(
        roster=build_roster(PROFILES), config=ROUTING, agents=store, timeline=timeline.store
    )
    record = CallRecord(
        call=IncomingCall("call-slow-2", None, "PJSIP/x", "main", now()),
        intent="billing",
        target="queue:billing",
    )
    try:
        await everyone_available(direct)
        result = await router.route(record, {})
        assert (result.agent_id, result.target) == (None, "queue:billing")
        held = [a for a in (await direct.snapshot()).values() if a.reservation is not None]
        assert [a.state for a in held] == [AgentState.RESERVED]  # the reserve did run
        started = time.monotonic()

        async def nobody_held() -> bool:
            snap = await direct.snapshot()
            return all(
                s.state is AgentState.AVAILABLE and s.reservation is None for s in snap.values()
            )

        await eventually(nobody_held, "the agent stayed reserved for a call that went on")
        assert time.monotonic() - started < 5  # the reply's arrival, not the 30 s expiry
    finally:
        await router.aclose()
        await store.aclose()
        await direct.aclose()
        await proxy.close()
        await delete_prefix(prefix)


# ---------------------------------------------------------------- a ringing agent nobody frees


async def test_a_ringing_agent_nobody_gives_back_is_freed_after_the_ring_expiry(
    agents: AgentStateStore, timeline: Timeline
) -> None:
    """The router sets the agent ringing with an expiry of its own (ring_timeout_s + 30 s by
    default): if the engine dies before anything gives the agent back, the store's sweep
    makes them available again."""
    await everyone_available(agents)
    at = now()
    router = AgentRouter(
        roster=build_roster(PROFILES),
        config=ROUTING,
        agents=agents,
        timeline=timeline.store,
        clock=lambda: at,
        ring_timeout_s=15,
    )
    record = CallRecord(
        call=IncomingCall("call-lost-1", None, "PJSIP/x", "main", at),
        intent="billing",
        target="queue:billing",
    )
    try:
        result = await router.route(record, {})
    finally:
        await router.aclose()  # the engine is gone: nobody will give the agent back
    assert result.agent_id is not None
    ringing = await agents.get(result.agent_id, now=at)
    assert ringing.state is AgentState.RINGING and ringing.reservation is not None
    assert ringing.reservation.expires_at == at + timedelta(seconds=15 + 30)
    assert await agents.expire_reservations(now=at + timedelta(seconds=44)) == []
    assert await agents.expire_reservations(now=at + timedelta(seconds=45)) == [result.agent_id]
    freed = await agents.get(result.agent_id, now=at + timedelta(seconds=45))
    assert (freed.state, freed.reservation) == (AgentState.AVAILABLE, None)


async def test_the_ring_expiry_is_configurable_and_outlasts_the_ring(
    agents: AgentStateStore, timeline: Timeline
) -> None:
    await everyone_available(agents)
    at = now()

    def router_for(ring_expiry_s: float) -> AgentRouter:
        return AgentRouter(
            roster=build_roster(PROFILES),
            config=ROUTING,
            agents=agents,
            timeline=timeline.store,
            clock=lambda: at,
            ring_timeout_s=15,
            ring_expiry_s=ring_expiry_s,
        )

    router = router_for(40)
    record = CallRecord(
        call=IncomingCall("call-lost-2", None, "PJSIP/x", "main", at), intent="billing"
    )
    try:
        result = await router.route(record, {})
    finally:
        await router.aclose()
    assert result.agent_id is not None
    reservation = (await agents.get(result.agent_id, now=at)).reservation
    assert reservation is not None and reservation.expires_at == at + timedelta(seconds=40)
    for too_short in (15, 5):
        with pytest.raises(ValueError, match="ring_expiry_s"):
            router_for(too_short)

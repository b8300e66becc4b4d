"""Finding 14: the reroute reads ``IVR_TRIED_AGENTS`` whole, past Asterisk's 1023 bytes.

res_agi.c ``handle_getvariable`` reads the value into ``char tempstr[1024]``: ``GET VARIABLE``
answers at most 1023 bytes of it. ``GET FULL VARIABLE`` substitutes into a growing string.
The fake Asterisk answers both that way; a long tried list must survive a reroute whole, or an
agent already rung could be rung again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from ivr_engine.contact_center.reroute import reroute_handler
from ivr_engine.flows.call_record import CallRecord, RouteResult
from ivr_engine.telephony.agi import FastAgiServer
from tests.component.fake_asterisk import AsteriskChannel, FakeAsterisk


class ExcludingRouter:
    """Overflows every call, remembering which agents it was told to leave out."""

    def __init__(self) -> None:
        self.excluded: list[frozenset[str]] = []

    async def route(
        self,
        record: CallRecord,
        known: Mapping[str, Any],
        exclude: frozenset[str] = frozenset(),
        waiting_since: datetime | None = None,
    ) -> RouteResult:
        self.excluded.append(exclude)
        return RouteResult(target="queue:billing")


class Agents:
    def __init__(self) -> None:
        self.released: list[str] = []

    async def release(self, agent_id: str, call_id: str, *, wrap_up: bool = True) -> bool:
        self.released.append(agent_id)
        return True


@pytest.fixture
async def server() -> AsyncIterator[FastAgiServer]:
    running = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, command_timeout=2.0)
    await running.start()
    yield running
    await running.close(grace=0)


def now() -> datetime:
    return datetime.now(UTC)


def test_the_fake_answers_get_variable_cut_and_get_full_variable_whole() -> None:
    asterisk = AsteriskChannel({"LONG": "a" * 1500})
    assert asterisk('GET VARIABLE "LONG"') == b"200 result=1 (" + b"a" * 1023 + b")\n"
    assert asterisk('GET FULL VARIABLE "${LONG}"') == b"200 result=1 (" + b"a" * 1500 + b")\n"
    assert asterisk('GET VARIABLE "UNSET"') == b"200 result=0\n"
    assert asterisk('GET FULL VARIABLE "${UNSET}"') == b"200 result=1 ()\n"


async def test_a_tried_list_longer_than_1023_bytes_round_trips(server: FastAgiServer) -> None:
    tried = sorted(f"agent-{n:02d}-{'x' * 50}" for n in range(18))  # 18 x 60 bytes
    listed = ",".join(tried)
    assert len(listed) > 1023
    missed = f"agent-18-{'x' * 50}"
    router, agents = ExcludingRouter(), Agents()
    server.register("reroute", reroute_handler(router, agents, now))  # type: ignore[arg-type]
    asterisk = AsteriskChannel(
        {
            "IVR_INTENT": "billing",
            "IVR_TARGET": "queue:billing",
            "IVR_AGENT_ID": missed,
            "IVR_TRIED_AGENTS": listed,
        }
    )
    fake = FakeAsterisk("127.0.0.1", server.port)
    transcript = await fake.call(asterisk, env=fake.env("reroute"))

    assert router.excluded == [frozenset([*tried, missed])]
    assert agents.released == [missed]
    assert asterisk.variables["IVR_TRIED_AGENTS"] == ",".join(sorted([*tried, missed]))
    reads = [c for c in transcript.commands if c.startswith("GET")]
    assert reads == [
        'GET FULL VARIABLE "${IVR_INTENT}"',
        'GET FULL VARIABLE "${IVR_TARGET}"',
        'GET FULL VARIABLE "${IVR_CUSTOMER_ID}"',
        'GET FULL VARIABLE "${IVR_AGENT_ID}"',
        'GET FULL VARIABLE "${IVR_TRIED_AGENTS}"',
        'GET FULL VARIABLE "${IVR_WAIT_START}"',
    ]  # one round trip each, as before

"""Finding 6: the digits of a ``sensitive`` field do not stay in the channel variable.

``Read`` leaves what the caller keyed in ``IVR_READ``, where AMI ``VarSet`` listeners,
``core show channel`` and (FreeSWITCH) every later event and the CDR would see it. After a
sensitive field is read the variable is cleared: on Asterisk in the same ``GET FULL
VARIABLE`` that reads the digits (func_logic's ``SET()``, evaluated left to right), with one
``SET VARIABLE`` only where ``SET()`` is missing; on FreeSWITCH with ``unset``. Menu keys and
other fields cost no extra command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr_engine.domain.models import CallOutcome
from ivr_engine.flows.ivr_flow import IvrFlow
from ivr_engine.menu_config import load_menus
from ivr_engine.telephony.agi import FastAgiServer
from ivr_engine.telephony.ivr_handler import ivr_handler
from tests.component.fake_asterisk import AsteriskChannel, FakeAsterisk
from tests.component.flow_doubles import NobodyKnown, Records

REPO = Path(__file__).resolve().parents[2]
READ = 'GET FULL VARIABLE "${IVR_READ}|${READSTATUS}"'
READ_AND_CLEAR = 'GET FULL VARIABLE "${IVR_READ}|${READSTATUS}|${SET(IVR_READ=)}${IVR_READ}"'
CLEAR = 'SET VARIABLE "IVR_READ" ""'


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def server() -> AsyncIterator[tuple[FastAgiServer, Records]]:
    sink = Records()
    flow = IvrFlow(
        menus=load_menus(REPO / "config/menus"), lookup=NobodyKnown(), sink=sink, clock=now
    )
    running = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, command_timeout=2.0)
    running.register("ivr", ivr_handler(flow, now))
    await running.start()
    yield running, sink
    await running.close(grace=0)


async def place(server: FastAgiServer, asterisk: AsteriskChannel) -> list[str]:
    transcript = await FakeAsterisk("127.0.0.1", server.port).call(asterisk)
    assert transcript.server_closed and not transcript.dropped
    return [c for c in transcript.commands if not c.startswith("EXEC")]


async def test_a_sensitive_field_is_cleared_in_the_read_that_fetches_it(
    server: tuple[FastAgiServer, Records],
) -> None:
    """Moving asks the account number, then the postcode (``sensitive: true``)."""
    agi, sink = server
    asterisk = AsteriskChannel(keys=["3", "40012345", "1234"])
    reads = await place(agi, asterisk)
    assert reads == [READ, READ, READ_AND_CLEAR]  # menu key, account number, postcode
    assert asterisk.variables["IVR_READ"] == ""
    assert asterisk.variables["IVR_OUTCOME"] == "routed"
    [record] = sink.records
    assert record.outcome is CallOutcome.ROUTED
    assert record.entered == {"account_number": "40012345", "postcode": "1234"}


async def test_without_func_logic_one_set_variable_clears_it(
    server: tuple[FastAgiServer, Records],
) -> None:
    agi, sink = server
    asterisk = AsteriskChannel(keys=["3", "40012345", "1234"], knows_set=False)
    reads = await place(agi, asterisk)
    assert reads == [READ, READ, READ_AND_CLEAR, CLEAR]
    assert asterisk.variables["IVR_READ"] == ""
    assert sink.records[0].entered["postcode"] == "1234"


async def test_menu_keys_and_other_fields_send_no_extra_command(
    server: tuple[FastAgiServer, Records],
) -> None:
    """Tech support asks only the account number (not sensitive): it stays as before."""
    agi, sink = server
    asterisk = AsteriskChannel(keys=["2", "40012345"])
    reads = await place(agi, asterisk)
    assert reads == [READ, READ]
    assert asterisk.variables["IVR_READ"] == "40012345"
    assert sink.records[0].outcome is CallOutcome.ROUTED

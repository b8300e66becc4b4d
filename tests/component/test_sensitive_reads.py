"""Finding 6: the digits of a ``sensitive`` field are put in no channel variable.

``Read`` leaves what the caller keyed in ``IVR_READ``, where AMI ``VarSet`` listeners,
``core show channel`` and (FreeSWITCH) every later event and the CDR would see it. A
sensitive field is read on Asterisk with ``GET DATA``, which answers the digits in its
reply (a retry's lead-in plays first with ``Playback``). A prompt ``GET DATA`` cannot play
answers ``result=-1`` as a hang-up does: ``CHANNEL STATUS`` tells them apart, and with the
caller still there nothing is read (the no-input path). FreeSWITCH: ``unset`` after the
read. Menu keys and other fields are read as before.
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
POSTCODE = "ivr-engine/enter-postcode"
INVALID = "ivr-engine/invalid-option"
GET_POSTCODE = f'GET DATA "{POSTCODE}" 8000 8'


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


async def test_a_sensitive_field_comes_in_the_reply_and_is_set_in_no_variable(
    server: tuple[FastAgiServer, Records],
) -> None:
    """Moving asks the account number, then the postcode (``sensitive: true``)."""
    agi, sink = server
    asterisk = AsteriskChannel(keys=["3", "40012345", "1234"])
    reads = await place(agi, asterisk)
    assert reads == [READ, READ, GET_POSTCODE]  # menu key, account number, postcode
    assert [value for _, value in asterisk.set_log if value == "1234"] == []
    assert asterisk.variables["IVR_READ"] == "40012345"  # the account number is not sensitive
    assert asterisk.variables["IVR_OUTCOME"] == "routed"
    [record] = sink.records
    assert record.outcome is CallOutcome.ROUTED
    assert record.entered == {"account_number": "40012345", "postcode": "1234"}


async def test_a_sensitive_retry_plays_its_lead_in_then_reads_in_the_reply(
    server: tuple[FastAgiServer, Records],
) -> None:
    agi, sink = server
    asterisk = AsteriskChannel(keys=["3", "40012345", "12", "1234"])  # 12: too short
    reads = await place(agi, asterisk)
    assert reads == [READ, READ, GET_POSTCODE, GET_POSTCODE]
    assert asterisk.heard[-3:] == [[POSTCODE], [INVALID], [POSTCODE]]
    assert [value for _, value in asterisk.set_log if value in ("12", "1234")] == []
    assert sink.records[0].entered["postcode"] == "1234"


async def test_a_prompt_get_data_cannot_play_reads_nothing_and_the_call_goes_on(
    server: tuple[FastAgiServer, Records],
) -> None:
    """``result=-1`` with the channel up (``CHANNEL STATUS``): no digits, the no-input retry,
    then the field is left unasked and the call is routed; nothing set holds the digits."""
    agi, sink = server
    asterisk = AsteriskChannel(keys=["3", "40012345", "1234"], missing=frozenset({POSTCODE}))
    reads = await place(agi, asterisk)
    status = "CHANNEL STATUS"
    assert reads == [READ, READ, GET_POSTCODE, status, GET_POSTCODE, status]  # 2 attempts
    assert asterisk.variables["IVR_OUTCOME"] == "routed"
    assert asterisk.keys == ["1234"]  # never read
    [record] = sink.records
    assert record.outcome is CallOutcome.ROUTED
    assert record.entered == {"account_number": "40012345"}


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

"""Finding 4 over a real FastAGI socket: a command Asterisk could not read whole is never
sent; the call ends at once with ``IVR_OUTCOME=failed`` (the dialplan's fallback) instead of
a session whose replies are out of step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from ivr_engine.domain.models import CallOutcome, Menu, MenuOption
from ivr_engine.flows.ivr_flow import IvrFlow
from ivr_engine.telephony.agi import FastAgiServer
from ivr_engine.telephony.agi.channel import read_command_line
from ivr_engine.telephony.ivr_handler import ivr_handler
from tests.component.fake_asterisk import FakeAsterisk, asterisk_reads
from tests.component.flow_doubles import NobodyKnown, Records

FAILED = 'SET VARIABLE "IVR_OUTCOME" "failed"'
DIGITS = "1234567890*#"


def long_menu() -> Menu:
    """Twelve options with long prompt ids: as if the start-up check had been skipped."""
    options = tuple(
        MenuOption(f"opt_{i}", f"Option {i}", f"acme/en-GB/ivr/{i:02d}-" + "x" * 150, digit)
        for i, digit in enumerate(DIGITS)
    )
    return Menu(name="main", options=options, fallback_intent="opt_0")


@pytest.fixture
async def server() -> AsyncIterator[FastAgiServer]:
    running = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, command_timeout=2.0)
    await running.start()
    yield running
    await running.close(grace=0)


async def test_an_over_long_read_ends_the_call_failed_without_sending_it(
    server: FastAgiServer,
) -> None:
    sink = Records()
    flow = IvrFlow(menus={"main": long_menu()}, lookup=NobodyKnown(), sink=sink, clock=now)
    server.register("ivr", ivr_handler(flow, now))
    transcript = await FakeAsterisk("127.0.0.1", server.port).call([b"200 result=1\n"] * 8)
    assert transcript.commands == [FAILED]  # not the Read: Asterisk would have cut it
    assert transcript.server_closed and not transcript.dropped
    [record] = sink.records  # submitted before the failure was reported
    assert record.outcome is CallOutcome.FAILED


def test_the_fake_cuts_an_over_long_line_as_asterisk_does() -> None:
    """What the engine avoids: the rest of the line is read as a command of its own."""
    line = read_command_line([f"p/{i:03d}-" + "x" * 100 for i in range(20)], 5000, 1)
    assert len(line) > 2047
    assert asterisk_reads(line.encode() + b"\n") == [line[:2047], line[2047:]]
    fits = "x" * 2046
    assert asterisk_reads(fits.encode() + b"\n") == [fits]
    assert asterisk_reads(fits.encode() + b"x\n") == [fits + "x", ""]  # the newline: a 510


def now() -> datetime:
    return datetime.now(UTC)

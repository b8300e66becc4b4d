"""The engine reads a caller ID carrying the country code without ``+``
(``4915112345678`` from a German SIP trunk) as ``caller_id_country_code_without_plus``
says, over a real FastAGI socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr_engine.domain.models import CountryCodeWithoutPlus
from ivr_engine.flows.ivr_flow import IvrFlow
from ivr_engine.menu_config import load_menus
from ivr_engine.telephony.agi import FastAgiServer
from ivr_engine.telephony.ivr_handler import ivr_handler
from tests.component.fake_asterisk import AsteriskChannel, FakeAsterisk
from tests.component.flow_doubles import NobodyKnown, Records

MENUS = load_menus(Path(__file__).resolve().parents[2] / "config/menus")


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def server() -> AsyncIterator[FastAgiServer]:
    running = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, command_timeout=2.0)
    await running.start()
    yield running
    await running.close(grace=0)


@pytest.mark.parametrize(
    ("rule", "expected"), [("auto", "+4915112345678"), ("never", "+494915112345678")]
)
async def test_the_flow_reads_the_caller_id_with_the_setting(
    server: FastAgiServer, rule: CountryCodeWithoutPlus, expected: str
) -> None:
    sink = Records()
    flow = IvrFlow(
        menus=MENUS,
        lookup=NobodyKnown(),
        sink=sink,
        clock=now,
        default_region="DE",
        country_code_without_plus=rule,
    )
    server.register("ivr", ivr_handler(flow, now))
    asterisk = FakeAsterisk("127.0.0.1", server.port)
    env = asterisk.env(caller_id="4915112345678")
    transcript = await asterisk.call(AsteriskChannel(keys=["1"]), env=env)
    assert transcript.server_closed and not transcript.dropped
    [record] = sink.records
    assert record.phone == expected

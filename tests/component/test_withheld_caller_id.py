"""A caller who withheld their number (presentation restricted) is not identified by it.

With ``trust_id_inbound`` Asterisk still has the number (P-Asserted-Identity) and hands it
over in ``agi_callerid``, with ``agi_callingpres`` saying it is restricted; before, the
engine identified such a caller and offered "calling about your bill again?". Now it plays
the default menu unless ``use_withheld_caller_id`` is set. Real engine, real SQLite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ivr_engine.app import Engine
from ivr_engine.flows.ivr_flow import CALLER_WITHHELD
from ivr_engine.simulate import SimulatedCall, simulate_call
from ivr_engine.telephony.agi.protocol import AgiRequest
from ivr_engine.telephony.esl.protocol import ChannelData
from tests.component.test_ivr_flow import seed, settings_for, store

RESTRICTED = 0x20


async def _call(engine: Engine, phone: str, presentation: int) -> SimulatedCall:
    assert engine.agi is not None
    placed = SimulatedCall(phone, ["6", "12345678"], presentation=presentation)
    return await simulate_call(placed, "127.0.0.1", engine.agi.port)


async def test_a_withheld_number_gets_the_default_menu(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    engine = Engine(settings_for(sqlite_url, tmp_path))
    await engine.start()
    try:
        customer = await seed(store(engine), phone, ["billing"] * 5, {"account_number": "4001234"})
        withheld = await _call(engine, phone, RESTRICTED)
    finally:
        await engine.stop()
    assert withheld.heard[0][:3] == [
        "ivr-engine/welcome",
        "ivr-engine/for",
        "ivr-engine/label-new-service",
    ]  # no shortcut, default order: billing still on 6
    assert withheld.variables["IVR_DECISION"] == "static"
    assert withheld.variables["IVR_CUSTOMER_ID"] == ""
    assert withheld.variables["IVR_INTENT"] == "billing"
    assert customer.customer_id  # the number is known: only the presentation kept it unused


async def test_the_setting_uses_a_withheld_number_like_any_other(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    engine = Engine(settings_for(sqlite_url, tmp_path, use_withheld_caller_id=True))
    await engine.start()
    try:
        customer = await seed(store(engine), phone, ["billing"] * 5)
        withheld = await _call(engine, phone, RESTRICTED)
    finally:
        await engine.stop()
    assert withheld.variables["IVR_DECISION"] == "personalised"
    assert withheld.variables["IVR_CUSTOMER_ID"] == customer.customer_id


def test_presentation_values() -> None:
    def request(pres: str) -> AgiRequest:
        return AgiRequest({"agi_callingpres": pres}, "ivr", {}, ())

    restricted = ["32", "33", "34", "35"]  # 0x20-0x23: restricted, any screening
    shown = ["0", "1", "3", "67", "", "x", "²", "-32"]  # allowed, unavailable (0x43), junk
    assert [request(p).caller_withheld for p in restricted] == [True] * 4
    assert [request(p).caller_withheld for p in shown] == [False] * len(shown)
    assert ChannelData({"Caller-Privacy-Hide-Number": "true"}).caller_withheld
    assert not ChannelData({"Caller-Privacy-Hide-Number": "false"}).caller_withheld
    assert not ChannelData({}).caller_withheld
    assert CALLER_WITHHELD.startswith("caller withheld")

"""The generated static fallback menu and the callback overflow, through the real Asterisk.

- A menu whose keys moved (billing from 6 to 3): its generated ``[ivr-fail]``, installed and
  reloaded, routes key 3 to billing when the engine is unreachable, as the engine's menu does.
- ``IVR_TARGET=callback`` after the engine routed (no agent): ivr-route plays the callback
  prompt and ends the call instead of the intent's queue; a caller without a number to call
  back is handled as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ami import AmiClient, Message
from conftest import Testbed
from engine_harness import REPO
from sipp import run_sipp_call
from test_testbed_smoke import (
    FASTAGI_HOST,
    FASTAGI_PORT,
    AgiSession,
    InlineFastAgi,
    assert_sipp_ok,
)

from ivr_engine.fallback_dialplan import render_fallback
from ivr_engine.menu_config import parse_menu

GENERATED = "ivr-fail-main.conf"


def _moved_menu_fallback(tmp_path: Path) -> str:
    text = (REPO / "config/menus/main.yaml").read_text()
    text = text.replace('intent: moving\n    digit: "3"', 'intent: moving\n    digit: "6"')
    text = text.replace('intent: billing\n    digit: "6"', 'intent: billing\n    digit: "3"')
    path = tmp_path / "main.yaml"
    path.write_text(text)
    menu = parse_menu(path, text)
    assert {o.intent: o.digit for o in menu.options}["billing"] == "3"
    return render_fallback(menu, path.as_posix())


@contextlib.contextmanager
def _installed(asterisk: Testbed, text: str) -> Iterator[None]:
    """``text`` as the chroot's ivr-fail-main.conf, reloaded; the project's file after."""
    etc = asterisk.chroot / "etc/asterisk"
    (etc / GENERATED).write_text(text)
    try:
        asterisk.cli("dialplan reload")
        yield
    finally:
        shutil.copy(REPO / "dialplans" / GENERATED, etc / GENERATED)
        asterisk.cli("dialplan reload")


async def _nothing_on_fastagi() -> None:
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection(FASTAGI_HOST, FASTAGI_PORT)
        writer.close()
        pytest.fail(f"something is listening on {FASTAGI_HOST}:{FASTAGI_PORT}", pytrace=False)


async def test_a_menu_with_moved_keys_falls_back_with_the_same_keys(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551230031"
    await _nothing_on_fastagi()
    with _installed(asterisk, _moved_menu_fallback(tmp_path)):
        assert "MSet(IVR_INTENT=billing," in asterisk.cli("dialplan show 3@ivr-fail")
        result = await run_sipp_call([("wait", 2500), ("dtmf", "3")], caller_id=caller)
        fallback = await ami.wait_for_event(
            "UserEvent", UserEvent="IvrFallback", CallerIDNum=caller
        )
        routed = await ami.wait_for_event("UserEvent", UserEvent="IvrRouted", CallerIDNum=caller)
    assert fallback["AgiStatus"] == "FAILURE"
    assert (routed["Intent"], routed["Target"]) == ("billing", "queue:billing")
    assert (routed["Decision"], routed["Outcome"]) == ("dialplan-fallback", "routed")
    assert_sipp_ok(result)


async def _routed_to_callback(agi: AgiSession) -> None:
    """What the engine sets when billing's routing overflows to a callback (no agent)."""
    await agi.command("SET VARIABLE IVR_INTENT billing")
    await agi.command("SET VARIABLE IVR_TARGET callback")
    await agi.command("SET VARIABLE IVR_DECISION static")
    await agi.command("SET VARIABLE IVR_OUTCOME routed")
    agi.close()


async def _callback_overflow_call(
    asterisk: Testbed, ami: AmiClient, caller: str
) -> tuple[Message, list[str]]:
    """A call from ``caller`` that the engine routes to a callback: its ``IvrOverflow`` event
    and the files its channel played; SIPp saw no error and Asterisk ended the call."""
    mark = asterisk.log_size()
    async with InlineFastAgi(_routed_to_callback) as server:
        result = await run_sipp_call([("wait", 20000)], caller_id=caller)
        session = await server.finished_session()
    overflow = await ami.wait_for_event("UserEvent", UserEvent="IvrOverflow", CallerIDNum=caller)
    assert_sipp_ok(result)
    assert result.hung_up_by == "asterisk"
    return overflow, asterisk.played_since(mark, session.env["agi_channel"])


async def test_a_callback_overflow_says_so_and_ends_the_call(
    asterisk: Testbed, ami: AmiClient
) -> None:
    overflow, played = await _callback_overflow_call(asterisk, ami, "+15551230032")
    assert (overflow["Intent"], overflow["Target"]) == ("billing", "callback")
    assert played[-1] == "ivr-engine/callback-later.slin", played


async def test_a_callback_overflow_without_a_number_goes_on_as_before(
    asterisk: Testbed, ami: AmiClient
) -> None:
    """No digits to call back: the usual overflow to [ivr-target-<intent>] (none in the
    testbed: the call ends after the transfer prompt), not the callback promise."""
    overflow, played = await _callback_overflow_call(asterisk, ami, "nocallerid")
    assert overflow["Target"] == "callback"
    assert played and "ivr-engine/callback-later.slin" not in played, played
    assert played[-1] == "ivr-engine/transfer.slin", played

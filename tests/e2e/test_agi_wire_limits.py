"""Asterisk 22 at the edges the engine's AGI layer relies on (review findings 4, 14, 6):

* res_agi reads a command line with ``fgets`` into ``char buf[AGI_BUF_LEN]``: ``AGI_BUF_LEN-1``
  bytes with the newline are one command; the rest of a longer line is read as a command of
  its own, answered ``510``: one reply too many, every later reply out of step. AGI_BUF_LEN was
  2048 until asterisk/asterisk#1318 (2025, cherry-picked to 20, 21 and 22) made it 8192: this
  22.10 reads 8191 bytes whole. The engine keeps to 2047 bytes, which every release reads.
* ``GET VARIABLE`` answers at most 1023 bytes of a value (``char tempstr[1024]``);
  ``GET FULL VARIABLE`` answers it whole.
* ``GET FULL VARIABLE`` substitutes left to right and runs functions: ``${SET(X=)}``
  (func_logic) clears ``X`` after ``${X}`` was read, in the same command.
* A ``sensitive`` read is a ``GET DATA``: the digits come in its reply and no channel variable
  (so no ``VarSet`` event) ever holds them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ami import AmiClient
from sipp import run_sipp_call
from test_testbed_smoke import AgiSession, InlineFastAgi, assert_sipp_ok

from ivr_engine.domain.errors import CallerHungUp
from ivr_engine.telephony.agi import AgiChannel, GetDataResult

if TYPE_CHECKING:
    from conftest import Testbed

LENGTH = 'GET FULL VARIABLE "${LEN(${BIG})}"'


def set_big(size: int) -> str:
    """``SET VARIABLE BIG "bbb..."`` of ``size`` bytes with its newline."""
    return 'SET VARIABLE BIG "' + "b" * (size - len('SET VARIABLE BIG ""') - 1) + '"'


async def test_agi_line_limit_get_full_variable_and_set_function(
    asterisk: Testbed, ami: AmiClient
) -> None:
    caller = "+15551230042"
    replies: dict[str, list[str]] = {}

    async def script(agi: AgiSession) -> None:
        await agi.command("SET VARIABLE IVR_OUTCOME abandoned")  # then the dialplan hangs up
        await agi.command("SET VARIABLE LONG " + "a" * 1500)
        replies["long"] = [
            await agi.command("GET VARIABLE LONG"),
            await agi.command('GET FULL VARIABLE "${LONG}"'),
        ]
        await agi.command("SET VARIABLE SECRET 1234")
        replies["secret"] = [
            await agi.command('GET FULL VARIABLE "${SECRET}|OK|${SET(SECRET=)}${SECRET}"'),
            await agi.command("GET VARIABLE SECRET"),
        ]
        for size in (2047, 2048, 8191):  # with the newline: each one command
            replies[str(size)] = [await agi.command(set_big(size)), await agi.command(LENGTH)]
        # 8192 bytes: the newline is left over, an empty command; Asterisk answers it (510)
        # when the next command's bytes arrive, as the reply to that command: out of step
        replies["8192"] = [await agi.command(set_big(8192)), await agi.command(LENGTH)]
        agi.close()

    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call(caller_id=caller))
        await server.finished_session()
        result = await call
    assert_sipp_ok(result)

    overhead = len('SET VARIABLE BIG ""') + 1
    for size in (2047, 2048, 8191):
        assert replies[str(size)] == ["200 result=1", f"200 result=1 ({size - overhead})"]
    assert replies["8192"] == ["200 result=1", "510 Invalid or unknown command"]
    assert replies["long"] == [f"200 result=1 ({'a' * 1023})", f"200 result=1 ({'a' * 1500})"]
    assert replies["secret"] == ["200 result=1 (1234|OK|)", "200 result=1 ()"]


def varsets_with(ami: AmiClient, channel: str, digits: str, since: int) -> list[str]:
    """The variables a ``VarSet`` event on ``channel`` (since ``since``) showed ``digits`` in."""
    return [
        event.get("Variable", "")
        for event in ami.events[since:]
        if event.get("Event") == "VarSet"
        and event.get("Channel") == channel
        and digits in event.get("Value", "")
    ]


async def test_a_sensitive_read_puts_the_digits_in_no_channel_variable(
    asterisk: Testbed, ami: AmiClient
) -> None:
    """The engine's own ``read_digits(sensitive=True)``: the caller keys 1234 during the
    prompt; ``GET DATA`` answers them in its reply: no ``VarSet`` event shows them and
    ``IVR_READ`` was never set, in one command."""
    caller = "+15551230043"
    since = ami.mark()
    outcome: dict[str, object] = {}

    async def script(agi: AgiSession) -> None:
        channel = AgiChannel(agi.reader, agi.writer, command_timeout=15)
        await channel.set_variable("IVR_OUTCOME", "abandoned")  # then the dialplan hangs up
        outcome["read"] = await channel.read_digits(
            ["ivr-engine/enter-postcode"], 6000, 4, sensitive=True
        )
        outcome["commands"] = channel.commands_sent
        outcome["left"] = await agi.command("GET VARIABLE IVR_READ")
        agi.close()

    async with InlineFastAgi(script) as server:
        keys = asyncio.create_task(
            run_sipp_call([("wait", 1500), ("dtmf", "1234")], caller_id=caller)
        )
        session = await server.finished_session()
        result = await keys
    assert_sipp_ok(result)
    assert outcome["read"] == GetDataResult("1234", timed_out=False)
    assert outcome["commands"] == 2  # SET VARIABLE, GET DATA
    assert outcome["left"] == "200 result=0"  # never set
    await ami.wait_for_event("Hangup", Channel=session.env["agi_channel"], since=since)
    assert varsets_with(ami, session.env["agi_channel"], "1234", since) == []
    # the observation works: the variable the script did set shows in a VarSet event
    assert varsets_with(ami, session.env["agi_channel"], "abandoned", since) == ["IVR_OUTCOME"]


async def test_a_sensitive_retry_plays_its_lead_in_with_playback(
    asterisk: Testbed, ami: AmiClient
) -> None:
    """A retry's lead-in ("invalid entry") plays with ``Playback``, then ``GET DATA`` asks."""
    caller = "+15551230044"
    since = ami.mark()
    outcome: dict[str, object] = {}

    async def script(agi: AgiSession) -> None:
        channel = AgiChannel(agi.reader, agi.writer, command_timeout=15)
        await channel.set_variable("IVR_OUTCOME", "abandoned")
        outcome["read"] = await channel.read_digits(
            ["ivr-engine/invalid-option", "ivr-engine/enter-postcode"], 6000, 4, sensitive=True
        )
        agi.close()

    async with InlineFastAgi(script) as server:
        keys = asyncio.create_task(
            run_sipp_call([("wait", 4000), ("dtmf", "1234")], caller_id=caller)
        )
        session = await server.finished_session()
        result = await keys
    assert_sipp_ok(result)
    assert outcome["read"] == GetDataResult("1234", timed_out=False)
    channel = session.env["agi_channel"]
    await ami.wait_for_event("Hangup", Channel=channel, since=since)
    assert [exec.command for exec in ami.agi_execs(channel=channel)] == [
        'SET VARIABLE "IVR_OUTCOME" "abandoned"',
        'EXEC "Playback" "ivr-engine/invalid-option"',
        'GET DATA "ivr-engine/enter-postcode" 6000 4',
    ]
    assert varsets_with(ami, channel, "1234", since) == []


async def test_a_prompt_get_data_cannot_play_reads_nothing_and_keeps_the_call(
    asterisk: Testbed, ami: AmiClient
) -> None:
    """``GET DATA`` of a missing file answers ``result=-1`` as a hang-up would: ``CHANNEL
    STATUS`` says the channel is up, the read comes back empty and the session goes on (a
    missing lead-in is skipped by ``Playback``)."""
    caller = "+15551230045"
    outcome: dict[str, object] = {}

    async def script(agi: AgiSession) -> None:
        channel = AgiChannel(agi.reader, agi.writer, command_timeout=15)
        await channel.set_variable("IVR_OUTCOME", "abandoned")
        outcome["read"] = await channel.read_digits(
            ["ivr-engine/no-such-lead-in", "ivr-engine/no-such-prompt"], 6000, 4, sensitive=True
        )
        outcome["commands"] = channel.commands_sent
        outcome["after"] = await agi.command("GET VARIABLE IVR_OUTCOME")
        agi.close()

    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call(caller_id=caller))
        await server.finished_session()
        result = await call
    assert_sipp_ok(result)
    assert outcome["read"] == GetDataResult("", timed_out=False)
    assert outcome["commands"] == 4  # SET VARIABLE, EXEC Playback, GET DATA, CHANNEL STATUS
    assert outcome["after"] == "200 result=1 (abandoned)"


async def test_a_caller_hanging_up_in_a_sensitive_read_is_a_hangup(
    asterisk: Testbed, ami: AmiClient
) -> None:
    """``GET DATA`` answers ``result=-1`` when the caller hangs up too: ``CHANNEL STATUS``
    gets ``511`` and the read raises ``CallerHungUp`` (not the ``Read`` fallback)."""
    caller = "+15551230046"
    outcome: dict[str, object] = {}

    async def script(agi: AgiSession) -> None:
        channel = AgiChannel(agi.reader, agi.writer, command_timeout=15)
        try:
            await channel.read_digits(["ivr-engine/enter-postcode"], 6000, 4, sensitive=True)
        except CallerHungUp as exc:
            outcome["hung_up"] = str(exc)
        outcome["commands"] = channel.commands_sent
        agi.close()

    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call(caller_id=caller, hangup_after_ms=1000))
        await server.finished_session()
        result = await call
    assert_sipp_ok(result)
    assert "hung up" in str(outcome.get("hung_up")), outcome
    assert outcome["commands"] == 2  # GET DATA, CHANNEL STATUS


MSET_VALUES = {
    "IVR_AGENT_ENDPOINT": "PJSIP/agent-1",
    "IVR_TRIED_AGENTS": "a1,a2,a3",
    "V_QUOTES": "\"double\" and 'single'",
    "V_PIPE": "a|b||c",
    "V_PARENS": "f(x, [y) ] (",
    "V_BACKSLASH": "C:\\dir\\ \\, end\\",
    "V_EQUALS": "a=b=c",
    "V_DOLLAR": "${CALLERID(num)} $[1+1]",
    "V_SPACES": "  two sides  ",
    "V_UTF8": "Zo\u00eb \u2013 \u6771\u4eac",
    "V_EMPTY": "",
    "IVR_OUTCOME": "abandoned",  # then the dialplan hangs up
}


async def test_one_mset_sets_values_with_separators_quotes_and_slashes_whole(
    asterisk: Testbed, ami: AmiClient
) -> None:
    """``set_variables`` is ONE ``EXEC MSet`` whatever the values hold (the endpoint comes
    with the outcome), and Asterisk 22's MSet sets each value exactly (``GET VARIABLE``
    answers the value as stored, unsubstituted)."""
    caller = "+15551230047"
    outcome: dict[str, object] = {}

    async def script(agi: AgiSession) -> None:
        channel = AgiChannel(agi.reader, agi.writer, command_timeout=15)
        await channel.set_variables(MSET_VALUES)
        outcome["commands"] = channel.commands_sent
        for name in MSET_VALUES:
            outcome[name] = await agi.command(f"GET VARIABLE {name}")
        agi.close()

    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call(caller_id=caller))
        await server.finished_session()
        result = await call
    assert_sipp_ok(result)
    assert outcome["commands"] == 1
    got = {name: outcome[name] for name in MSET_VALUES}
    assert got == {name: f"200 result=1 ({value})" for name, value in MSET_VALUES.items()}

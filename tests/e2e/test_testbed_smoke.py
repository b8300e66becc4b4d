"""Smoke tests of the end-to-end harness: SIPp -> Asterisk 22 -> an inline FastAGI server.

They also pin down how Asterisk 22.10 behaves at the AGI protocol level, which the engine's
AGI layer relies on (see tests/e2e/README.md):

* ``GET DATA "a&b&c" ...`` does NOT play a list: Asterisk looks for one file literally named
  ``a&b&c``, logs ``File a&b&c does not exist in any format`` and answers ``200 result=-1`` at
  once (``STREAM FILE "a&b" ""`` likewise answers ``200 result=-1 endpos=0``). The Read
  application does split on ``&``: ``EXEC Read "VAR,a&b&c,1,,1,5"`` plays the pieces in order,
  stops at the first key and answers ``200 result=0``; then ``GET VARIABLE VAR`` gives
  ``200 result=1 (2)`` and ``GET VARIABLE READSTATUS`` ``200 result=1 (OK)`` (or ``TIMEOUT``).
* A command that Asterisk counts as failed (``STREAM FILE`` of a missing file) makes the whole
  session end with AGISTATUS=FAILURE (``test_failed_command_sets_agistatus_failure``).
* Caller hang-up in the middle of a prompt (see ``test_caller_hangs_up_mid_prompt``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING

import pytest
from ami import AmiClient
from sipp import SippResult, run_sipp_call

if TYPE_CHECKING:
    from conftest import Testbed  # the `asterisk` fixture's type (annotations only)

FASTAGI_HOST = "127.0.0.1"
FASTAGI_PORT = 4573  # Asterisk: AGI(agi://${IVR_ENGINE_ADDR}/...), IVR_ENGINE_ADDR=127.0.0.1:4573
PROMPT_LIST = "ivr-engine/welcome&digits/1&digits/2"


class AgiSession:
    """One FastAGI connection from Asterisk, seen from the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.env: dict[str, str] = {}
        # Every line received after the environment, with the time it arrived.
        self.received: list[tuple[float, str]] = []
        self.closed_at: float | None = None

    async def read_env(self, timeout_s: float = 10) -> None:
        while True:
            line = await self.read_line(timeout_s, record=False)
            if line == "":
                return
            key, _, value = line.partition(": ")
            self.env[key] = value

    async def read_line(self, timeout_s: float = 10, *, record: bool = True) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), timeout_s)
        if not raw:
            raise ConnectionError("Asterisk closed the FastAGI connection")
        line = raw.decode().rstrip("\n")
        if record:
            self.received.append((time.monotonic(), line))
        return line

    async def send(self, command: str) -> None:
        self.writer.write(f"{command}\n".encode())
        await self.writer.drain()

    async def command(self, command: str, timeout_s: float = 15) -> str:
        """Send a command and return its reply (the next line with a numeric status)."""
        await self.send(command)
        while True:
            line = await self.read_line(timeout_s)
            if line[:3].isdigit():
                return line

    def close(self) -> None:
        self.closed_at = time.monotonic()
        self.writer.close()


Script = Callable[[AgiSession], Awaitable[None]]


class InlineFastAgi:
    """A minimal FastAGI server on 127.0.0.1:4573 running ``script`` for each call."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.done: asyncio.Queue[tuple[AgiSession, BaseException | None]] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> InlineFastAgi:
        self._server = await asyncio.start_server(
            self._handle, FASTAGI_HOST, FASTAGI_PORT, reuse_address=True, backlog=1024
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = AgiSession(reader, writer)
        error: BaseException | None = None
        try:
            await session.read_env()
            await self.script(session)
        except Exception as exc:
            error = exc
        finally:
            if session.closed_at is None:
                session.close()
            await self.done.put((session, error))

    async def finished_session(self, timeout_s: float = 30) -> AgiSession:
        """The next finished call; re-raises what the script raised (failed assertions).

        Any other error of the script (a read that timed out, a closed connection) comes as
        ``ScriptFailed`` naming the caller: a TimeoutError would read as "no session arrived
        within ``timeout_s``", which is this method's own TimeoutError."""
        session, error = await asyncio.wait_for(self.done.get(), timeout_s)
        if isinstance(error, AssertionError):
            raise error
        if error is not None:
            raise ScriptFailed(session, error) from error
        return session


class ScriptFailed(Exception):
    """A FastAGI session arrived, and its script raised (not an assertion)."""

    def __init__(self, session: AgiSession, error: BaseException) -> None:
        caller = session.env.get("agi_callerid", "?")
        lines = len(session.received)
        super().__init__(
            f"the FastAGI script of caller {caller} raised {error!r} "
            f"(environment {'read' if session.env else 'not read'}, {lines} lines after it)"
        )
        self.session = session


def assert_sipp_ok(result: SippResult) -> None:
    assert result.ok, result.describe()


async def test_fastagi_call_reads_a_key_and_routes(asterisk: Testbed, ami: AmiClient) -> None:
    """A caller presses 2 during the welcome prompt; the engine routes to billing."""
    caller = "+15551230001"
    replies: dict[str, str] = {}

    async def script(agi: AgiSession) -> None:
        assert agi.env["agi_callerid"] == caller
        assert agi.env["agi_network_script"] == "ivr?menu=main"
        assert agi.env["agi_context"] == "ivr-entry"
        # An &-list is NOT supported by GET DATA: immediate failure, nothing played.
        replies["list"] = await agi.command(f'GET DATA "{PROMPT_LIST}" 4000 1')
        # One prompt file works; the caller's key (at ~1.5 s) interrupts it.
        replies["single"] = await agi.command("GET DATA ivr-engine/welcome 4000 1")
        replies["outcome"] = await agi.command("SET VARIABLE IVR_OUTCOME routed")
        replies["intent"] = await agi.command("SET VARIABLE IVR_INTENT billing")
        replies["target"] = await agi.command("SET VARIABLE IVR_TARGET queue:billing")
        agi.close()

    log_mark = asterisk.log_size()
    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call([("wait", 1500), ("dtmf", "2")], caller_id=caller))
        session = await server.finished_session()
        result = await call

    assert replies["list"] == "200 result=-1"
    assert f"File {PROMPT_LIST} does not exist in any format" in asterisk.log_since(log_mark)
    assert replies["single"] == "200 result=2"
    assert replies["outcome"] == replies["intent"] == replies["target"] == "200 result=1"
    routed = await ami.wait_for_event(
        "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, Intent="billing"
    )
    assert routed["Target"] == "queue:billing"
    assert routed["Outcome"] == "routed"
    assert_sipp_ok(result)  # Asterisk hung up after the transfer prompt; SIPp answered BYE
    assert result.hung_up_by == "asterisk"
    await ami.wait_for_event("Hangup", Channel=session.env["agi_channel"])

    execs = ami.agi_execs(channel=session.env["agi_channel"])
    assert [e.command for e in execs] == [
        f'GET DATA "{PROMPT_LIST}" 4000 1',
        "GET DATA ivr-engine/welcome 4000 1",
        "SET VARIABLE IVR_OUTCOME routed",
        "SET VARIABLE IVR_INTENT billing",
        "SET VARIABLE IVR_TARGET queue:billing",
    ]
    assert all(e.result_code == "200" and e.result == "Success" for e in execs), execs


async def test_read_app_plays_a_prompt_list(asterisk: Testbed, ami: AmiClient) -> None:
    """How to play several prompt files in one command: the Read application via EXEC."""
    caller = "+15551230004"
    replies: dict[str, str] = {}

    async def script(agi: AgiSession) -> None:
        # No key: the three pieces play in order, then Read times out after 1 s.
        replies["read_all"] = await agi.command(f'EXEC Read "IVR_DIGIT,{PROMPT_LIST},1,,1,1"')
        replies["status_all"] = await agi.command("GET VARIABLE READSTATUS")
        # The caller presses 2 (at ~7 s) while this list plays.
        replies["read_key"] = await agi.command(
            'EXEC Read "IVR_DIGIT,ivr-engine/press&digits/2,1,,1,5"'
        )
        replies["digit"] = await agi.command("GET VARIABLE IVR_DIGIT")
        replies["status_key"] = await agi.command("GET VARIABLE READSTATUS")
        await agi.command("SET VARIABLE IVR_OUTCOME abandoned")  # the dialplan hangs up
        agi.close()

    log_mark = asterisk.log_size()
    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call([("wait", 7000), ("dtmf", "2")], caller_id=caller))
        session = await server.finished_session()
        result = await call
    assert_sipp_ok(result)

    assert replies["read_all"] == "200 result=0"
    assert replies["status_all"] == "200 result=1 (TIMEOUT)"
    assert replies["read_key"] == "200 result=0"
    assert replies["digit"] == "200 result=1 (2)"
    assert replies["status_key"] == "200 result=1 (OK)"
    channel = session.env["agi_channel"]
    played = asterisk.played_since(log_mark, channel)
    # Asterisk names the format it picked: our WAVs are 8 kHz slin, the core digits GSM.
    assert played[:4] == [
        "ivr-engine/welcome.slin",
        "digits/1.gsm",
        "digits/2.gsm",
        "ivr-engine/press.slin",
    ], played
    await ami.wait_for_event("Hangup", Channel=channel)


async def test_failed_command_sets_agistatus_failure(asterisk: Testbed, ami: AmiClient) -> None:
    """A command Asterisk counts as failed makes AGISTATUS=FAILURE for the whole session.

    ``STREAM FILE`` of a missing file (here an &-list, which STREAM FILE does not split)
    answers ``200 result=-1 endpos=0``; the session goes on normally (no HANGUP line, later
    commands work), but when it ends AGI() reports AGISTATUS=FAILURE although the engine
    finished its work. The dialplan therefore trusts IVR_OUTCOME, not AGISTATUS.
    (``GET DATA`` of a missing file answers ``200 result=-1`` and does NOT do this.)
    """
    caller = "+15551230005"
    replies: dict[str, str] = {}

    async def script(agi: AgiSession) -> None:
        replies["stream_list"] = await agi.command(f'STREAM FILE "{PROMPT_LIST}" ""')
        replies["stream_one"] = await agi.command('STREAM FILE ivr-engine/press ""')
        await agi.command("SET VARIABLE IVR_OUTCOME routed")
        await agi.command("SET VARIABLE IVR_INTENT outage")
        agi.close()

    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call(caller_id=caller))
        session = await server.finished_session()
        result = await call

    assert replies["stream_list"] == "200 result=-1 endpos=0"
    assert replies["stream_one"].startswith("200 result=0 endpos=")
    assert [line for _, line in session.received][:2] == [
        replies["stream_list"],
        replies["stream_one"],
    ]  # no unsolicited HANGUP
    routed = await ami.wait_for_event(
        "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, Intent="outage"
    )
    assert routed["AgiStatus"] == "FAILURE"
    assert (
        ami.find(lambda e: e.get("UserEvent") == "IvrFallback" and e.get("CallerIDNum") == caller)
        is None
    )
    assert_sipp_ok(result)


async def test_engine_unreachable_falls_back_to_static_menu(
    asterisk: Testbed, ami: AmiClient
) -> None:
    """No FastAGI server: AGISTATUS=FAILURE, the call lands in the dialplan's static menu."""
    caller = "+15551230002"
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection(FASTAGI_HOST, FASTAGI_PORT)
        writer.close()
        pytest.fail(f"something is listening on {FASTAGI_HOST}:{FASTAGI_PORT}", pytrace=False)

    result = await run_sipp_call([("wait", 2500), ("dtmf", "6")], caller_id=caller)

    fallback = await ami.wait_for_event("UserEvent", UserEvent="IvrFallback", CallerIDNum=caller)
    assert fallback["AgiStatus"] == "FAILURE"
    routed = await ami.wait_for_event(
        "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, Intent="billing"
    )
    assert routed["Decision"] == "dialplan-fallback"
    assert routed["Target"] == "queue:billing"
    assert routed["Outcome"] == "routed"
    assert_sipp_ok(result)
    assert ami.agi_commands(caller_id=caller) == []


async def test_an_engine_failing_after_setting_an_agent_leaves_nothing_to_ring(
    asterisk: Testbed, ami: AmiClient
) -> None:
    """The engine set the reserved agent's endpoint (its own ``SET VARIABLE``), then failed:
    ivr-fail clears every engine variable, so key 6 of its static menu overflows to billing's
    target; the agent the engine gave back is never rung, no stale id reaches an event."""
    caller = "+15551230006"

    async def script(agi: AgiSession) -> None:
        await agi.command('SET VARIABLE IVR_AGENT_ENDPOINT "PJSIP/agent-1"')
        await agi.command("SET VARIABLE IVR_AGENT_ID agent-1")
        await agi.command("SET VARIABLE IVR_CUSTOMER_ID stale-customer")
        await agi.command("SET VARIABLE IVR_OUTCOME failed")
        agi.close()

    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call([("wait", 3000), ("dtmf", "6")], caller_id=caller))
        await server.finished_session()
        result = await call

    fallback = await ami.wait_for_event("UserEvent", UserEvent="IvrFallback", CallerIDNum=caller)
    assert fallback["Outcome"] == "failed"
    routed = await ami.wait_for_event(
        "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, Intent="billing"
    )
    assert (routed["Agent"], routed["Customer"]) == ("", "")
    overflow = await ami.wait_for_event(
        "UserEvent", UserEvent="IvrOverflow", CallerIDNum=caller, Intent="billing"
    )
    assert overflow["Target"] == "queue:billing"
    dialled = ami.find(
        lambda e: e.get("UserEvent") == "IvrAgentDial" and e.get("CallerIDNum") == caller
    )
    assert dialled is None
    assert_sipp_ok(result)


async def test_caller_hangs_up_mid_prompt(asterisk: Testbed, ami: AmiClient) -> None:
    """What the FastAGI server sees when the caller hangs up during a prompt.

    Observed with Asterisk 22.10 (the AGI layer must handle exactly this):

    1. The command playing the prompt ends at once with its failure reply:
       ``GET DATA ivr-engine/welcome 5000 1`` -> ``200 result=-1``
       (``STREAM FILE`` -> ``200 result=-1 endpos=<samples played>``; ``EXEC Read`` ->
       ``200 result=0``, with READSTATUS ``HANGUP``).
    2. Then, unsolicited, one line ``HANGUP`` (tens of ms later, without any command sent).
    3. The connection stays open and the channel stays alive (no AMI Hangup event) until the
       server closes it. Commands still get answers: one that needs a live channel gets
       ``511 Command Not Permitted on a dead channel or intercept routine``; ``NOOP`` and
       ``GET VARIABLE`` still answer ``200 result=...``.
    4. AGI() returns AGISTATUS=HANGUP and the dialplan stops (no fallback, no routing).
    (With ``Set(AGIEXITONHANGUP=yes)`` before ``AGI()`` Asterisk instead sends ``HANGUP``
    twice and closes the connection itself; the production dialplan does not set it.)
    """
    caller = "+15551230003"
    replies: dict[str, str] = {}
    hangup_events_at_close: list[bool] = []

    async def script(agi: AgiSession) -> None:
        replies["get_data"] = await agi.command("GET DATA ivr-engine/welcome 5000 1")
        replies["unsolicited"] = await agi.read_line(timeout_s=5)
        replies["stream"] = await agi.command('STREAM FILE ivr-engine/welcome ""')
        replies["noop"] = await agi.command("NOOP still-there")
        replies["var"] = await agi.command("GET VARIABLE NO_SUCH_VARIABLE")
        # The channel is still alive: Asterisk waits for us to close.
        await asyncio.sleep(0.5)
        hangup_events_at_close.append(
            ami.find(lambda e: e.get("Event") == "Hangup" and e.get("CallerIDNum") == caller)
            is not None
        )
        agi.close()

    async with InlineFastAgi(script) as server:
        call = asyncio.create_task(run_sipp_call(caller_id=caller, hangup_after_ms=1000))
        session = await server.finished_session()
        result = await call
    assert_sipp_ok(result)  # the caller's BYE was answered 200
    assert result.hung_up_by == "caller"

    assert replies["get_data"] == "200 result=-1"
    assert replies["unsolicited"] == "HANGUP"
    assert replies["stream"] == "511 Command Not Permitted on a dead channel or intercept routine"
    assert replies["noop"] == "200 result=0"
    assert replies["var"] == "200 result=0"  # an unset variable
    assert hangup_events_at_close == [False]
    assert [line for _, line in session.received] == [
        "200 result=-1",
        "HANGUP",
        "511 Command Not Permitted on a dead channel or intercept routine",
        "200 result=0",
        "200 result=0",
    ]
    await ami.wait_for_event("Hangup", Channel=session.env["agi_channel"])
    # AGISTATUS=HANGUP: the dialplan neither routes nor falls back.
    user_events = [
        e["UserEvent"]
        for e in ami.events
        if e.get("Event") == "UserEvent" and e.get("CallerIDNum") == caller
    ]
    assert user_events == []
    execs = ami.agi_execs(channel=session.env["agi_channel"])
    assert [(e.command.split()[0], e.result_code) for e in execs] == [
        ("GET", "200"),
        ("STREAM", "511"),
        ("NOOP", "200"),
        ("GET", "200"),
    ]


async def test_concurrent_calls(asterisk: Testbed, ami: AmiClient) -> None:
    """Several SIPp callers at once (each on its own SIP and media ports) are kept apart."""
    digits = "13579"
    callers = {f"+1555123010{i}": digit for i, digit in enumerate(digits)}

    async def script(agi: AgiSession) -> None:
        reply = await agi.command("GET DATA ivr-engine/welcome 4000 1")
        await agi.command("SET VARIABLE IVR_OUTCOME routed")
        await agi.command(f"SET VARIABLE IVR_INTENT pressed-{reply.removeprefix('200 result=')}")
        agi.close()

    log_mark = asterisk.log_size()
    async with InlineFastAgi(script) as server:
        calls = [
            run_sipp_call([("wait", 1500), ("dtmf", digit)], caller_id=caller)
            for caller, digit in callers.items()
        ]
        results = await asyncio.gather(*calls)
        # SIPp first: a call that failed on the SIP side never reaches the AGI server, and
        # its SIPp trace says why, where a missing session alone would only time out.
        for caller, result in zip(callers, results, strict=True):
            assert result.ok, f"caller {caller}: {result.describe()}"
        arrived: list[str] = []
        try:
            for _ in callers:
                session = await server.finished_session(timeout_s=15)
                arrived.append(session.env.get("agi_callerid", "?"))
        except TimeoutError:
            missing = [
                c
                for c in callers
                if c.removeprefix("+") not in {a.removeprefix("+") for a in arrived}
            ]
            events = [
                e
                for e in ami.events
                if e.get("CallerIDNum") in missing
                and (
                    e.get("Event") not in ("VarSet", "Newexten") or e.get("Variable") == "AGISTATUS"
                )
            ]
            pytest.fail(
                f"no finished FastAGI session for {missing} (arrived: {arrived})\n"
                f"--- their AMI events\n{ami.describe(events)}\n"
                f"--- Asterisk log during the test\n{asterisk.log_since(log_mark)[-6000:]}",
                pytrace=False,
            )

    for caller, digit in callers.items():
        await ami.wait_for_event(
            "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, Intent=f"pressed-{digit}"
        )

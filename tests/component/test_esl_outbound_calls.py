"""The whole engine over FreeSWITCH's outbound Event Socket, against a protocol-exact fake.

The same ``IvrFlow`` as over FastAGI: a real socket from the fake switch to the engine's
``esl_port``, a real SQLite timeline. No FreeSWITCH is available in any registry reachable
from the test machines, so ``fake_freeswitch`` speaks the Event Socket as documented.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ivr_engine.app import Engine
from ivr_engine.settings import Settings
from ivr_engine.telephony.esl.channel import EslChannel
from ivr_engine.telephony.esl.outbound import EslOutboundServer
from ivr_engine.telephony.esl.protocol import ChannelData
from ivr_engine.timeline import open_timeline
from tests.component.fake_asterisk import asterisk_env, header_block
from tests.component.fake_freeswitch import WAIT_S, FsCall, dial_outbound
from tests.component.test_ivr_flow import WELCOME, call_event, labels, seed, store

REPO = Path(__file__).resolve().parents[2]


def esl_settings(url: str, tmp_path: Path, **extra: object) -> Settings:
    return Settings.model_validate(
        {
            "database_url": url,
            "agi_port": 0,
            "http_port": 0,
            "esl_port": 0,
            "menus_dir": REPO / "config/menus",
            "sounds_dir": REPO / "prompts/en",
            "spool_dir": tmp_path / "spool",
            **extra,
        }
    )


@contextlib.asynccontextmanager
async def running_engine(settings: Settings) -> AsyncIterator[Engine]:
    running = Engine(settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def engine(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with running_engine(esl_settings(sqlite_url, tmp_path)) as running:
        yield running


async def fs_call(engine: Engine, call: FsCall) -> FsCall:
    assert engine.esl is not None
    return await dial_outbound(engine.esl.port, call)


async def test_handshake_is_connect_myevents_resume_on_a_socket_without_full(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    call = await fs_call(engine, FsCall(new_phone(), ["1"]))  # `socket HOST:PORT async`
    assert call.commands[:3] == ["connect", "myevents", "resume"]
    assert all(c == "sendmsg" for c in call.commands[3:])
    assert call.refused == []  # nothing that needs `full` (linger, api, bgapi, ...)
    assert call.variables["socket_resume"] == "true"  # no socket_resume from the dialplan
    assert call.dialplan_continues  # the engine ended the session: FreeSWITCH goes on


async def test_returning_billing_caller_hears_billing_first_and_call_is_recorded(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    history = ["billing", "billing", "tech_support", "billing", "billing"]
    ada = await seed(store(engine), phone, history, {"account_number": "40012345"})
    call = await fs_call(engine, FsCall(phone, ["2", "1"]))
    assert call.heard[0][0] == WELCOME and "ivr-engine/shortcut-topic-billing" in call.heard[0]
    assert labels(call.heard[1])[:2] == ["billing", "new-service"]  # 1 tech_support: stays
    assert call.heard[1][:4] == [
        "ivr-engine/for", "ivr-engine/label-billing", "ivr-engine/press", "digits/1"
    ]  # fmt: skip
    app, arg = call.apps[0]
    assert app == "read" and arg.startswith("1 1 file_string://ivr-engine/welcome.wav!")
    assert arg.endswith(" IVR_READ 5000 #")
    assert call.variables["IVR_INTENT"] == "billing"
    assert call.variables["IVR_CUSTOMER_ID"] == ada.customer_id
    assert call.variables["IVR_OUTCOME"] == "routed"
    assert call.variables["IVR_VERIFIED"] == "0"  # caller ID alone verifies nobody
    assert call.apps[-1][0] == "multiset"  # the routing variables in one application
    event = await call_event(store(engine), phone)
    assert event.customer_id == ada.customer_id
    assert event.intent == "billing" and event.data["outcome"] == "routed"
    # the FreeSWITCH UUID is the call id, with the call's own key part (one rule for both)
    assert event.event_id.startswith(f"voice:{call.uuid}~") and event.event_id.endswith(":ivr")
    assert event.data["call_id"] == call.uuid
    assert 0 < event.data["decision_ms"] <= event.data["first_prompt_ms"] < 5000


async def test_hangup_mid_menu_is_abandoned(engine: Engine, new_phone: Callable[[], str]) -> None:
    phone = new_phone()
    call = await fs_call(engine, FsCall(phone, [], hangup_at_read=1))
    assert "IVR_OUTCOME" not in call.variables
    assert [app for app, _ in call.apps] == ["read"]  # nothing sent after the hang-up
    event = await call_event(store(engine), phone)
    assert event.data["outcome"] == "abandoned" and event.intent is None
    assert call.switch_closed  # no linger: FreeSWITCH says goodbye and closes the socket
    assert call.server_closed and call.unanswered == []  # the engine let go, sent nothing
    assert engine.esl is not None and engine.esl.active_calls == 0


async def test_hangup_while_asked_for_account_keeps_the_intent(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    await fs_call(engine, FsCall(phone, ["6"], hangup_at_read=2))
    event = await call_event(store(engine), phone)
    assert (event.data["outcome"], event.intent) == ("abandoned", "billing")


@pytest.mark.parametrize(
    ("malformed", "outcome"),
    [
        # the framing is lost: nothing more is sent, the outcome stays empty
        (b"Content-Type: text/event-plain\nContent-Length: 12x\n\n", None),
        (b"Content-Type: text/event-plain\nContent-Length: 999999999999\n\n", None),
        (b"this is not a header line\n\n", None),
        (b"Content-Length: 5\n\nhello", None),  # no Content-Type
        # a whole frame whose event does not parse: the stream is still in step
        (b"Content-Type: text/event-plain\nContent-Length: 9\n\nNo-Event\n", "failed"),
    ],
)
async def test_malformed_frame_ends_the_call_safely_and_the_server_keeps_serving(
    engine: Engine, new_phone: Callable[[], str], malformed: bytes, outcome: str | None
) -> None:
    phone = new_phone()
    call = await fs_call(engine, FsCall(phone, [], malformed_at_read=1, malformed=malformed))
    assert call.dialplan_continues  # the engine closed the socket: the dialplan falls back
    assert call.variables.get("IVR_OUTCOME") == outcome  # empty or failed: static menu
    event = await call_event(store(engine), phone)
    assert event.data["outcome"] == "failed"
    after = await fs_call(engine, FsCall(new_phone(), ["1"]))
    assert after.variables["IVR_OUTCOME"] == "routed"


async def test_menu_is_chosen_by_channel_variable_and_calls_run_concurrently(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    calls = [FsCall(new_phone(), ["1"], menu="main") for _ in range(20)]
    done = await asyncio.gather(*(fs_call(engine, c) for c in calls))
    assert all(c.variables["IVR_INTENT"] == "new_service" for c in done)
    assert all(c.variables["IVR_DECISION"] == "static" for c in done)


async def test_one_grace_for_fastagi_and_esl_calls_on_stop(sqlite_url: str, tmp_path: Path) -> None:
    """The stop's ``shutdown_grace_s`` is one deadline for every call in progress: the
    FastAGI and the ESL connections are drained together. Drained one after the other, the
    ESL calls had a second grace once the FastAGI one had run out (the stop took twice it)."""
    grace = 1.5
    settings = esl_settings(sqlite_url, tmp_path, shutdown_grace_s=grace)
    engine = Engine(settings)
    await engine.start()
    assert engine.agi is not None and engine.esl is not None
    agi = await asyncio.open_connection("127.0.0.1", engine.agi.port)
    agi[1].write(header_block(asterisk_env("127.0.0.1", engine.agi.port)))
    esl = await asyncio.open_connection("127.0.0.1", engine.esl.port)
    async with asyncio.timeout(5):  # each call in progress: the engine waits for the switch
        assert (await agi[0].readline()).startswith(b"EXEC ")  # the menu's Read
        assert await esl[0].readuntil(b"\n\n") == b"connect\n\n"
    loop = asyncio.get_running_loop()
    started = loop.time()
    engine.stop_accepting()
    await engine.stop()
    took = loop.time() - started
    assert grace - 0.1 < took < grace + 1.0, took  # one grace, not two (3 s)
    assert engine.agi.active_calls == engine.esl.active_calls == 0
    assert await agi[0].read() == b"SET VARIABLE IVR_OUTCOME failed\n"  # then closed
    assert await esl[0].read() == b""  # closed
    for _, writer in (agi, esl):
        writer.close()


async def _stop_during_a_read(
    sqlite_url: str, tmp_path: Path, call: FsCall, release: bool
) -> FsCall:
    """``call`` is in its first ``read`` when the engine stops (no grace left): the stop is
    started, and once the engine has done something about the call (queued a command, or
    closed), the read ends if ``release``. Every wait is bounded: a hang fails the test."""
    engine = Engine(esl_settings(sqlite_url, tmp_path, shutdown_grace_s=0.1))
    await engine.start()
    assert engine.esl is not None
    try:
        dialled = asyncio.create_task(fs_call(engine, call))
        async with asyncio.timeout(WAIT_S):
            await call.playing.wait()
    finally:  # stopped once, always
        engine.stop_accepting()
        stopping = asyncio.create_task(engine.stop())
    async with asyncio.timeout(WAIT_S):
        await call.engine_acted.wait()
        if release:
            call.release.set()
        await stopping
        await dialled
    assert engine.esl.active_calls == 0
    return call


async def test_a_call_cut_by_the_stop_is_told_failed_as_on_asterisk(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """When the stop's grace ends with the caller still in the menu, FreeSWITCH gets
    ``set IVR_OUTCOME=failed`` (queued behind the read still playing) and the socket
    closes only once it has run, as Asterisk gets ``SET VARIABLE IVR_OUTCOME failed``.
    The socket used to be closed with the outcome left empty."""
    phone = new_phone()
    call = await _stop_during_a_read(sqlite_url, tmp_path, FsCall(phone, held_read=1), True)
    assert call.queued == ["set IVR_OUTCOME=failed"]
    assert call.variables["IVR_OUTCOME"] == "failed"  # the dialplan plays the static menu
    assert call.dialplan_continues
    timeline = await open_timeline(sqlite_url, migrate=False)
    try:
        event = await call_event(timeline.store, phone)
    finally:
        await timeline.close()
    assert event.data["outcome"] == "failed"


async def test_a_dead_switch_holds_the_stop_a_bounded_while(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """A switch that answers nothing any more: the ``set`` goes out, no reply comes, and
    the engine closes the socket anyway (``REPORT_TIMEOUT``), so the stop ends."""
    call = FsCall(new_phone(), dead_at_read=1)
    await _stop_during_a_read(sqlite_url, tmp_path, call, release=False)
    assert call.unanswered[-1:] == ["sendmsg"]  # the set, never answered
    assert "IVR_OUTCOME" not in call.variables
    assert call.server_closed


async def test_a_kept_outcome_is_not_told_failed_on_the_stop(new_phone: Callable[[], str]) -> None:
    """A call whose outcome must stand (``keep_outcome``: continued by SMS, the caller has
    the link) is closed as it is when the stop cuts it, as on Asterisk."""
    kept = asyncio.Event()

    async def keeps_and_waits(data: ChannelData, channel: EslChannel) -> None:
        channel.keep_outcome()
        kept.set()
        await asyncio.Event().wait()  # until the stop cancels it

    server = EslOutboundServer(keeps_and_waits, port=0)
    await server.start()
    call = FsCall(new_phone())
    dialled = asyncio.create_task(dial_outbound(server.port, call))
    async with asyncio.timeout(WAIT_S):
        await kept.wait()
        await server.close(grace=0)
        await dialled
    assert call.apps == [] and call.unanswered == []  # nothing sent after the handshake
    assert call.dialplan_continues and server.active_calls == 0


async def test_a_caller_who_keys_in_the_known_postcode_is_verified_for_the_dialplan(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """``IVR_VERIFIED=1`` reaches FreeSWITCH in the routing ``multiset``, as over FastAGI."""
    phone = new_phone()
    await seed(store(engine), phone, [], {"account_number": "40012345", "postcode": "75001"})
    call = await fs_call(engine, FsCall(phone, ["3", "75001"]))  # moving: the postcode asked
    assert call.heard[1:] == [["ivr-engine/enter-postcode"]]
    assert call.variables["IVR_VERIFIED"] == "1"
    assert call.variables["IVR_OUTCOME"] == "routed"

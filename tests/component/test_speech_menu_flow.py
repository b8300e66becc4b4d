"""A speech menu ("say or press") through the FastAGI server and a fake Asterisk 22 that
writes real recordings (flite speech, 8 kHz WAV) where ``RECORD FILE`` says, recognised by
the real recogniser (pocketsphinx, the model in its wheel)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from ivr_engine.domain.models import CallOutcome, Menu, SpeechPolicy
from ivr_engine.flows.call_record import CallRecord
from ivr_engine.flows.ivr_flow import IvrFlow
from ivr_engine.flows.speech_choice import RecordingPlaces, SpeechListener
from ivr_engine.menu_config import load_menus
from ivr_engine.speech_wiring import speech_grammars
from ivr_engine.telephony.agi import FastAgiServer
from ivr_engine.telephony.ivr_handler import ivr_handler
from speech import PhraseRecognizer
from tests.component.fake_asterisk import AsteriskChannel, FakeAsterisk
from tests.component.flow_doubles import NobodyKnown, Records

REPO = Path(__file__).resolve().parents[2]
SAY_OR_PRESS = "ivr-engine/say-or-press"
NO_INPUT = "ivr-engine/no-input"

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="needs flite (setup.sh)")


def now() -> datetime:
    return datetime.now(UTC)


def speech_menus() -> dict[str, Menu]:
    menus = load_menus(REPO / "config/menus")
    return {
        name: dataclasses.replace(menu, speech=SpeechPolicy(enabled=True))
        for name, menu in menus.items()
    }


@pytest.fixture(scope="module")
def voice(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bytes]:
    """``voice("pay my bill")``: flite's rms voice (not the prompts' slt) as an 8 kHz mono
    16-bit WAV, what Asterisk's ``RECORD FILE ... wav`` writes."""
    directory = tmp_path_factory.mktemp("voice")

    def say(text: str) -> bytes:
        raw, wav = directory / "raw.wav", directory / "say.wav"
        subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(raw)], check=True)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(wav)], check=True)
        return wav.read_bytes()

    return say


@pytest.fixture
async def recognizer() -> AsyncIterator[PhraseRecognizer]:
    started = await PhraseRecognizer.start(speech_grammars(speech_menus()))
    yield started
    await started.close()


@pytest.fixture
async def server(
    recognizer: PhraseRecognizer, tmp_path: Path
) -> AsyncIterator[tuple[FastAgiServer, Records, Path]]:
    sink = Records()
    places = RecordingPlaces(switch_dir=PurePosixPath(tmp_path), engine_dir=tmp_path)
    flow = IvrFlow(
        menus=speech_menus(),
        lookup=NobodyKnown(),
        sink=sink,
        clock=now,
        speech=SpeechListener(recognizer, places, timeout_s=10),
    )
    running = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, command_timeout=15.0)
    running.register("ivr", ivr_handler(flow, now))
    await running.start()
    yield running, sink, tmp_path
    await running.close(grace=0)


async def place(
    server: tuple[FastAgiServer, Records, Path], asterisk: AsteriskChannel
) -> CallRecord:
    agi, sink, _ = server
    transcript = await FakeAsterisk("127.0.0.1", agi.port).call(asterisk)
    assert transcript.server_closed and not transcript.dropped
    [record] = sink.records
    return record


def steps(record: CallRecord, name: str) -> list[dict[str, Any]]:
    return [dict(step) for step in record.path if step.get("step") == name]


async def test_a_caller_who_says_pay_my_bill_is_routed_to_billing(
    server: tuple[FastAgiServer, Records, Path], voice: Callable[[str], bytes]
) -> None:
    asterisk = AsteriskChannel(utterances=[voice("I want to pay my bill")])
    record = await place(server, asterisk)
    assert record.intent == "billing" and record.outcome is CallOutcome.ROUTED
    [heard] = steps(record, "speech")
    assert heard["intent"] == "billing" and "bill" in heard["phrase"]
    assert steps(record, "menu")[0]["said"] is True
    assert asterisk.heard[0][-1] == SAY_OR_PRESS  # the menu ends with "or just tell me"
    [path] = asterisk.recorded
    assert PurePosixPath(path).parent == PurePosixPath(server[2])
    assert list(server[2].iterdir()) == []  # the recording is deleted once recognised


async def test_the_menu_waits_only_key_wait_ms_for_a_key_before_listening(
    server: tuple[FastAgiServer, Records, Path], voice: Callable[[str], bytes]
) -> None:
    asterisk = AsteriskChannel(utterances=[voice("technical support")])
    agi, _, _ = server
    transcript = await FakeAsterisk("127.0.0.1", agi.port).call(asterisk)
    first_read = next(c for c in transcript.commands if c.startswith('EXEC "Read"'))
    assert first_read.endswith(',1,,1,0.7"')  # key_wait_ms 700, not input_timeout_ms 5000
    assert any(c.startswith('RECORD FILE "') for c in transcript.commands)


async def test_words_that_name_no_option_are_no_input_and_a_key_still_works(
    server: tuple[FastAgiServer, Records, Path], voice: Callable[[str], bytes]
) -> None:
    asterisk = AsteriskChannel(keys=["", "6"], utterances=[voice("what is the weather like")])
    record = await place(server, asterisk)
    [heard, *_] = steps(record, "speech")
    assert heard["intent"] is None
    assert asterisk.heard[1][0] == NO_INPUT  # "we did not get that", then the menu again
    assert record.intent == "billing"  # key 6 in the default order


async def test_a_key_pressed_while_recorded_chooses_like_a_key_in_the_menu(
    server: tuple[FastAgiServer, Records, Path],
) -> None:
    record = await place(server, AsteriskChannel(utterances=["6"]))
    assert steps(record, "speech") == [{"step": "speech", "attempt": 1, "key": "6"}]
    assert record.intent == "billing"


async def test_a_recording_the_switch_cannot_make_is_no_input_never_silence(
    server: tuple[FastAgiServer, Records, Path],
) -> None:
    asterisk = AsteriskChannel(keys=["", "6"], utterances=["writefile"])
    record = await place(server, asterisk)
    assert steps(record, "speech")[0]["error"] == "recording failed"
    assert asterisk.heard[1][0] == NO_INPUT
    assert record.intent == "billing"


async def test_silence_every_time_ends_at_the_fallback_intent(
    server: tuple[FastAgiServer, Records, Path],
) -> None:
    record = await place(server, AsteriskChannel())
    assert len(steps(record, "speech")) == 3  # attempts: 3
    assert record.intent == "operator"

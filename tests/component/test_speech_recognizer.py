"""PhraseRecognizer with real pocketsphinx worker processes on flite recordings.

Audio is synthesised at test time (tests/speech_audio.py: flite, then sox to 8 kHz mono 16-bit,
what Asterisk's `RECORD FILE <p> wav` writes). Decoding is deterministic (no dither, the
normalisation restarts per file), so these exact utterances give exact answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from speech import Heard, PhraseRecognizer, SpeechConfigError
from tests.speech_audio import say

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOTHING = Heard(None, None, "")
MENUS = {
    "main": {
        "billing": ["billing", "bill", "my bill", "pay my bill", "payment"],
        "tech": ["technical support", "internet"],
        "operator": ["agent", "an agent", "operator"],
        "moving": ["moving", "moving home"],
        "outage": ["outage", "an outage"],
        "cancel": ["cancel"],
    },
    "yes_no": {"yes": ["yes", "yes please"], "no": ["no", "no thanks"]},
}


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def recognizer() -> AsyncIterator[PhraseRecognizer]:
    started = await PhraseRecognizer.start(MENUS, workers=2)
    yield started
    await started.close()


@pytest.mark.parametrize("voice", ["rms", "kal"])
async def test_in_menu_phrases_give_their_intent(
    recognizer: PhraseRecognizer, audio: Path, voice: str
) -> None:
    said = {
        "I want to pay my bill": "billing",
        "technical support": "tech",
        "operator": "operator",
        "report an outage": "outage",
    }
    heard = await asyncio.gather(
        *(recognizer.recognise("main", say(text, voice, audio), timeout_s=60) for text in said)
    )
    assert [h.intent for h in heard] == list(said.values())
    # the phrase is one of that intent's ("outage" or "an outage": "an" may be a filler)
    assert all(h.phrase in MENUS["main"][h.intent or ""] for h in heard)
    assert heard[0].transcript == "i want to pay my bill"


async def test_16_khz_recordings_too(recognizer: PhraseRecognizer, audio: Path) -> None:
    heard = await recognizer.recognise(
        "main", say("technical support", "rms", audio, rate=16000), timeout_s=60
    )
    assert (heard.intent, heard.transcript) == ("tech", "technical support")


async def test_out_of_menu_speech_gives_no_intent(
    recognizer: PhraseRecognizer, audio: Path
) -> None:
    said = [("hello there", "slt"), ("what is the weather like", "awb"), ("um", "rms")]
    heard = await asyncio.gather(
        *(recognizer.recognise("main", say(t, v, audio), timeout_s=60) for t, v in said)
    )
    assert [h.intent for h in heard] == [None, None, None]
    assert heard[0].transcript == "hello there"  # heard, but not an option


async def test_the_menu_decides_the_options(recognizer: PhraseRecognizer, audio: Path) -> None:
    heard = await recognizer.recognise("yes_no", say("operator", "rms", audio), timeout_s=60)
    assert heard.intent is None


def _wav(path: Path, frames: bytes, *, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)
    return path


async def test_unusable_files_give_nothing_and_a_warning(
    recognizer: PhraseRecognizer, audio: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = say("operator", "rms", audio).read_bytes()
    (audio / "garbage.wav").write_bytes(os.urandom(2000))
    (audio / "empty.wav").write_bytes(b"")
    (audio / "truncated.wav").write_bytes(good[:30])  # inside the header
    (audio / "mp3.wav").write_bytes(b"ID3\x04\x00" + os.urandom(500))
    files = [
        audio / "missing.wav",
        audio / "garbage.wav",
        audio / "empty.wav",
        audio / "truncated.wav",
        audio / "mp3.wav",
        _wav(audio / "header-only.wav", b""),
        _wav(audio / "stereo.wav", bytes(8000), channels=2),
    ]
    with caplog.at_level(logging.WARNING, logger="speech.recognizer"):
        heard = [await recognizer.recognise("main", f, timeout_s=60) for f in files]
    assert heard == [NOTHING] * len(files)
    for f in files:
        assert any(str(f) in r.getMessage() for r in caplog.records), f


async def test_a_recording_cut_short_is_decoded_as_far_as_it_goes(
    recognizer: PhraseRecognizer, audio: Path
) -> None:
    whole = say("I want to pay my bill", "kal", audio).read_bytes()
    cut = audio / "cut.wav"
    cut.write_bytes(whole[: len(whole) // 3])  # what a hangup mid-recording leaves
    heard = await recognizer.recognise("main", cut, timeout_s=60)
    assert heard.intent is None and "bill" not in heard.transcript


async def test_an_unknown_menu_gives_nothing_and_a_warning(
    recognizer: PhraseRecognizer, audio: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="speech.recognizer"):
        heard = await recognizer.recognise("nope", say("operator", "rms", audio))
    assert heard == NOTHING
    assert "unknown menu 'nope'" in caplog.text


async def test_a_timeout_gives_nothing_and_the_recogniser_goes_on(
    recognizer: PhraseRecognizer, audio: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wav = say("can you call me back tomorrow", "rms", audio)
    with caplog.at_level(logging.WARNING, logger="speech.recognizer"):
        assert await recognizer.recognise("main", wav, timeout_s=0.001) == NOTHING
    assert "no answer in 0.0 s" in caplog.text
    heard = await recognizer.recognise("main", say("operator", "rms", audio), timeout_s=60)
    assert heard.intent == "operator"


async def test_decoding_does_not_block_the_event_loop(
    recognizer: PhraseRecognizer, audio: Path
) -> None:
    wav = say("can you call me back tomorrow please", "rms", audio)
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    started = time.monotonic()
    await recognizer.recognise("main", wav, timeout_s=60)
    elapsed = time.monotonic() - started
    ticker.cancel()
    # the decode takes hundreds of ms of CPU; on the loop, the ticker would not run meanwhile
    assert elapsed > 0.1
    assert len([t for t in ticks if t > started]) >= 10


async def test_unknown_words_refuse_to_start() -> None:
    with pytest.raises(SpeechConfigError) as refused:
        await PhraseRecognizer.start({"main": {"billing": ["pay my bill"], "x": ["flibbertyjib"]}})
    assert str(refused.value) == (
        "speech phrases: menu 'main', intent 'x', phrase 'flibbertyjib': "
        "not in the pronunciation dictionary: flibbertyjib"
    )


async def test_a_dead_worker_is_replaced_once_and_the_call_answered(audio: Path) -> None:
    recognizer = await PhraseRecognizer.start({"main": MENUS["main"]})
    try:
        wav = say("operator", "rms", audio)
        assert (await recognizer.recognise("main", wav, timeout_s=60)).intent == "operator"
        (pid,) = recognizer._pool._processes  # type: ignore[union-attr]  # the one worker
        os.kill(pid, signal.SIGKILL)
        heard = await asyncio.gather(
            *(recognizer.recognise("main", wav, timeout_s=60) for _ in range(3))
        )
        assert [h.intent for h in heard] == ["operator"] * 3
        (new_pid,) = recognizer._pool._processes  # type: ignore[union-attr]
        assert new_pid != pid
    finally:
        await recognizer.close()
    assert await recognizer.recognise("main", wav) == NOTHING  # closed: no raise either

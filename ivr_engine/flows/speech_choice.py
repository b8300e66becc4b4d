"""A speech menu's listening step: record what the caller says after the menu, recognise it,
delete the recording.

The switch writes the recording (``CallChannel.record_utterance``) into a directory the
engine can read too (``RecordingPlaces``: the same directory under the switch's name and the
engine's). Every failure here (the switch cannot record, the file is not where it should be,
the recogniser is slow or down) is "nothing recognised": the menu's no-input path follows,
so a caller is never left in silence and can always press a key instead.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ivr_engine.domain.errors import RecordingFailed
from ivr_engine.domain.models import Menu
from ivr_engine.flows.call_record import CallRecord
from ivr_engine.ports import CallChannel, SpeechRecognizer

log = logging.getLogger(__name__)

#: What the call's path keeps of a transcript (it is what the caller said, not a field).
MAX_TRANSCRIPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class RecordingPlaces:
    """One directory, as the switch names it and as the engine reads it (the same path on
    one host; under a chroot or a shared mount the two differ)."""

    switch_dir: PurePosixPath
    engine_dir: Path


@dataclass(frozen=True, slots=True)
class Listened:
    """What the listening step got: a key pressed while recorded, or an intent heard."""

    key: str | None = None
    intent: str | None = None


class SpeechListener:
    def __init__(
        self, recognizer: SpeechRecognizer, places: RecordingPlaces, *, timeout_s: float = 3.0
    ) -> None:
        self._recognizer = recognizer
        self._places = places
        self._timeout_s = timeout_s

    async def listen(
        self, channel: CallChannel, menu: Menu, record: CallRecord, attempt: int
    ) -> Listened:
        name = f"ivr-speech-{secrets.token_hex(8)}"
        policy = menu.speech
        try:
            key = await channel.record_utterance(
                str(self._places.switch_dir / name), policy.listen_ms, policy.silence_s
            )
        except RecordingFailed as exc:
            log.warning("call %s: could not record the caller: %s", record.call.call_id, exc)
            record.step("speech", attempt=attempt, error="recording failed")
            return Listened()
        if key is not None:
            record.step("speech", attempt=attempt, key=key)
            return Listened(key=key)
        path = self._places.engine_dir / f"{name}.wav"
        try:
            heard = await self._recognizer.recognise(menu.name, path, timeout_s=self._timeout_s)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)  # a voice is personal data
        record.step(
            "speech",
            attempt=attempt,
            heard=heard.transcript[:MAX_TRANSCRIPT_CHARS],
            phrase=heard.phrase,
            intent=heard.intent,
        )
        return Listened(intent=heard.intent)

"""Speech menus at start-up: the recogniser's processes, built only when a menu says
``speech: enabled``, and the recordings directory the switch and the engine share."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import Menu
from ivr_engine.flows.speech_choice import RecordingPlaces, SpeechListener
from ivr_engine.settings import Settings

if TYPE_CHECKING:  # the recogniser (pocketsphinx) loads only for a speech menu
    from speech import PhraseRecognizer

log = logging.getLogger(__name__)


def speech_grammars(menus: Mapping[str, Menu]) -> dict[str, dict[str, tuple[str, ...]]]:
    """menu name -> intent -> phrases, for the menus with speech enabled."""
    return {
        menu.name: {option.intent: option.phrases for option in menu.options if option.phrases}
        for menu in menus.values()
        if menu.speech.enabled
    }


@dataclass
class Speech:
    recognizer: PhraseRecognizer
    listener: SpeechListener

    async def aclose(self) -> None:
        await self.recognizer.close()


def _recordings_dir(settings: Settings) -> RecordingPlaces:
    engine_dir = settings.speech_recordings_dir.resolve()
    try:
        engine_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"speech_recordings_dir: {engine_dir}: cannot be created: {exc.strerror}"
        ) from None
    if not engine_dir.is_dir() or not os.access(engine_dir, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(
            f"speech_recordings_dir: {engine_dir}: not a directory this process can read "
            "and delete files in"
        )
    switch_dir = PurePosixPath(settings.speech_switch_dir or str(engine_dir))
    return RecordingPlaces(switch_dir=switch_dir, engine_dir=engine_dir)


async def open_speech(settings: Settings, menus: Mapping[str, Menu]) -> Speech | None:
    """None when no menu has speech enabled (nothing is loaded)."""
    grammars = speech_grammars(menus)
    if not grammars:
        return None
    from speech import PhraseRecognizer, SpeechConfigError

    places = await asyncio.to_thread(_recordings_dir, settings)
    try:
        recognizer = await PhraseRecognizer.start(grammars, workers=settings.speech_workers)
    except SpeechConfigError as exc:
        raise ConfigError(f"menus_dir: {settings.menus_dir}: speech phrases: {exc}") from None
    log.info(
        "speech menus %s: recordings in %s (the switch writes %s)",
        ", ".join(sorted(grammars)),
        places.engine_dir,
        places.switch_dir,
    )
    listener = SpeechListener(recognizer, places, timeout_s=settings.speech_timeout_ms / 1000)
    return Speech(recognizer=recognizer, listener=listener)

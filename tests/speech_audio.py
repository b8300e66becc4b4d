"""Test utterances for the speech recogniser: flite's voices, as Asterisk would record them.

`say(text, voice, directory)` synthesises with Debian's `flite` and converts with `sox` to what
`RECORD FILE <p> wav` writes: 8 kHz 16-bit mono PCM WAV. Nothing binary is committed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

VOICES = ("awb", "kal", "rms", "slt")


def say(text: str, voice: str, directory: Path, *, rate: int = 8000) -> Path:
    stem = f"{voice}-{re.sub(r'[^a-z0-9]+', '_', text.lower()).strip('_') or 'blank'}-{rate}"
    wav = directory / f"{stem}.wav"
    if wav.exists():
        return wav
    raw = directory / f"{stem}.flite.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True)
    subprocess.run(
        ["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer", str(wav)],
        check=True,
    )
    raw.unlink()
    return wav

"""The format of a built prompt file, and the error for failing to make one.

A prompt is 8 kHz mono 16-bit PCM with a fixed 44-byte RIFF/WAVE header and nothing else: no
LIST/INFO chunk, no encoder tag, no timestamp. The same text, voice, flite and ffmpeg
therefore give byte-identical files.
"""

from __future__ import annotations

import io
import wave

from ivr_engine.domain.errors import ConfigError

SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2  # bytes: 16-bit signed PCM
CHANNELS = 1


class PromptBuildError(ConfigError):
    """A prompt could not be synthesised or converted (tool missing, tool failed, bad audio).

    A ``ConfigError`` so the CLI reports it as a message with the fix, not a traceback.
    """


def wav_bytes(pcm: bytes, rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> bytes:
    """A minimal RIFF/WAVE file: 44-byte PCM header + samples, no metadata chunks."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()

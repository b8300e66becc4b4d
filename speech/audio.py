"""Reading what Asterisk recorded into the 16 kHz 16-bit mono samples the model needs.

`RECORD FILE <p> wav` writes 8 kHz 16-bit mono PCM (`wav16`: 16 kHz). The en-us model's
front end reads up to 6800 Hz (its feat.params), so 8 kHz audio is upsampled 2x first: a
linear interpolation (one sample between each pair), which measured the same accuracy as
`audioop.ratecv` (deprecated) on the test utterances, without numpy.
"""

from __future__ import annotations

import sys
import wave
from array import array
from pathlib import Path

MODEL_RATE = 16000
RATES = (8000, 16000)
MAX_SECONDS = 20  # a longer recording is cut: nobody says a menu option for 20 s


class AudioError(ValueError):
    """The file is missing, empty, not a WAV file, or not 16-bit mono 8/16 kHz PCM."""


def read_model_audio(path: Path) -> bytes:
    """16 kHz little-endian 16-bit mono PCM from a WAV file; AudioError if that is impossible."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            if channels != 1 or width != 2 or rate not in RATES:
                raise AudioError(
                    f"{path}: {channels} channel(s), {8 * width}-bit, {rate} Hz; "
                    "expected mono 16-bit PCM at 8000 or 16000 Hz"
                )
            frames = wav.readframes(MAX_SECONDS * rate)
    except (wave.Error, EOFError, OSError) as exc:
        raise AudioError(f"{path}: {type(exc).__name__}: {exc}") from exc
    samples = array("h")
    samples.frombytes(frames[: len(frames) // 2 * 2])  # a file cut mid-sample
    if not samples:
        raise AudioError(f"{path}: no audio")
    if sys.byteorder == "big":
        samples.byteswap()
    if rate == 8000:
        samples = upsample_2x(samples)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def upsample_2x(samples: array[int]) -> array[int]:
    """Twice the rate: each sample followed by the mean of it and the next (the last repeated)."""
    out = array("h", bytes(4 * len(samples)))
    out[0::2] = samples
    following = samples[1:]
    following.append(samples[-1])
    out[1::2] = array("h", [(a + b) >> 1 for a, b in zip(samples, following, strict=True)])
    return out

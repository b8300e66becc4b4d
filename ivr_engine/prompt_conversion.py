"""Conversion of a TTS WAV to the prompt format, with pydub (which calls ffmpeg).

Run in a worker thread: mono, 16-bit, a 4th-order Butterworth low-pass at 3,400 Hz (the
telephone band) *before* down-sampling, then a windowed-sinc resampler to 8,000 Hz (its own
anti-alias cut-off at 3,600 Hz). Silence below ``peak - 45 dB`` is then trimmed from both ends
(keeping a 20 ms margin), 5 ms fades avoid clicks, the peak is normalised to -3 dBFS and 50 ms
of silence is added on each side.
"""

from __future__ import annotations

import io
import shutil
import warnings
from typing import Any

from ivr_engine.prompt_format import (
    CHANNELS,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    PromptBuildError,
    wav_bytes,
)

LOWPASS_HZ = 3400
RESAMPLER_CUTOFF = 0.9  # of the 4 kHz output Nyquist: 3,600 Hz
PEAK_DBFS = -3.0
LEAD_IN_MS = 50
TAIL_MS = 50
FADE_MS = 5
TRIM_BELOW_PEAK_DB = 45.0
TRIM_MARGIN_MS = 20  # kept before/after the detected speech so weak onsets (/f/, /h/) survive

# Two biquads with these Qs make a 4th-order Butterworth low-pass (flat pass band, -24 dB/oct).
_BUTTERWORTH_4_Q = (0.5412, 1.3066)


def _pydub() -> Any:
    """Import pydub lazily: the engine imports the prompt modules at start-up without ffmpeg."""
    if shutil.which("ffmpeg") is None:
        raise PromptBuildError("ffmpeg not found (pydub needs it): apt-get install ffmpeg")
    with warnings.catch_warnings():  # pydub imports audioop, deprecated since Python 3.11
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*audioop")
        import pydub  # lazy on purpose (see docstring)

    return pydub


def _ffmpeg_filter() -> str:
    lowpass = ",".join(
        f"lowpass=f={LOWPASS_HZ}:poles=2:width_type=q:width={q}" for q in _BUTTERWORTH_4_Q
    )
    resample = f"aresample={SAMPLE_RATE}:filter_size=64:cutoff={RESAMPLER_CUTOFF}"
    # Filter in double precision; no dither on the final conversion to s16 (deterministic).
    return f"aformat=sample_fmts=dbl,{lowpass},{resample}"


def to_asterisk_wav(raw_wav_bytes: bytes) -> bytes:
    """Convert a TTS WAV to the prompt format: 8 kHz mono 16-bit PCM WAV, band-limited,
    trimmed, normalised to -3 dBFS peak, 50 ms padding. CPU-bound and blocking: call it via
    ``asyncio.to_thread``.
    """
    pydub = _pydub()
    segment_cls = pydub.AudioSegment
    try:
        seg = segment_cls.from_wav(io.BytesIO(raw_wav_bytes))
    except Exception as exc:  # pydub raises assorted errors for bad input
        raise PromptBuildError(f"TTS output is not a readable WAV: {exc}") from exc
    seg = seg.set_sample_width(SAMPLE_WIDTH).set_channels(CHANNELS)

    # Low-pass at the source rate, then resample (ffmpeg, through pydub); raw s16le out.
    out = io.BytesIO()
    try:
        seg.export(
            out,
            format="s16le",
            parameters=["-af", _ffmpeg_filter(), "-ac", str(CHANNELS), "-acodec", "pcm_s16le"],
        )
    except Exception as exc:
        raise PromptBuildError(f"ffmpeg could not filter/resample the audio: {exc}") from exc
    seg = segment_cls(
        data=out.getvalue(), sample_width=SAMPLE_WIDTH, frame_rate=SAMPLE_RATE, channels=CHANNELS
    )
    if len(seg) == 0 or seg.max == 0:
        raise PromptBuildError("synthesised audio is silent")

    threshold = float(seg.max_dBFS) - TRIM_BELOW_PEAK_DB
    detect = pydub.silence.detect_leading_silence
    lead = int(detect(seg, silence_threshold=threshold, chunk_size=5))
    tail = int(detect(seg.reverse(), silence_threshold=threshold, chunk_size=5))
    seg = seg[max(0, lead - TRIM_MARGIN_MS) : len(seg) - max(0, tail - TRIM_MARGIN_MS)]
    seg = seg.fade_in(FADE_MS).fade_out(FADE_MS)
    seg = pydub.effects.normalize(seg, headroom=-PEAK_DBFS)
    silence = segment_cls.silent
    seg = (
        silence(duration=LEAD_IN_MS, frame_rate=SAMPLE_RATE)
        + seg
        + silence(duration=TAIL_MS, frame_rate=SAMPLE_RATE)
    )
    return wav_bytes(bytes(seg.raw_data))

"""Conversion of a TTS WAV to the prompt format, with ffmpeg and pydub.

Run in a worker thread: mono, 16-bit, a 4th-order Butterworth low-pass at 3,400 Hz (the
telephone band) *before* down-sampling, then a windowed-sinc resampler to 8,000 Hz (its own
anti-alias cut-off at 3,600 Hz): ffmpeg, run here through pipes (its exit code and its own
error line are ours to report; pydub's export would bury them in a message naming temporary
files, different for every prompt, and leave those files behind). Silence below
``peak - 45 dB`` is then trimmed from both ends (keeping a 20 ms margin), 5 ms fades avoid
clicks, the peak is normalised to -3 dBFS and 50 ms of silence is added on each side (pydub).

``check_ffmpeg`` runs once before a build: an ffmpeg that is missing, cannot run or fails is
one line saying how to fix it, before any prompt is spoken.
"""

from __future__ import annotations

import io
import subprocess
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


_INSTALL = "install the Debian package ffmpeg (apt-get install ffmpeg)"
FFMPEG_MISSING = f"ffmpeg not found: {_INSTALL}"
FFMPEG_TIMEOUT_S = 60.0


def _pydub() -> Any:
    """Import pydub lazily: the engine imports the prompt modules at start-up without it.
    pydub's own converter is not used (``_run_ffmpeg``): its warning about a missing one is
    not ours to print."""
    with warnings.catch_warnings():  # pydub imports audioop, deprecated since Python 3.11
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*audioop")
        warnings.filterwarnings("ignore", category=RuntimeWarning, message="Couldn't find ffmpeg")
        import pydub  # lazy on purpose (see docstring)

    return pydub


def check_ffmpeg(ffmpeg: str = "ffmpeg") -> None:
    """``ffmpeg -version`` runs and succeeds, else a ``PromptBuildError`` with the fix."""
    code, _, err = _run_ffmpeg([ffmpeg, "-hide_banner", "-version"], b"")
    if code != 0:
        raise PromptBuildError(
            f"`{ffmpeg} -version` failed (exit {code}, {_stderr(err)}): is it ffmpeg? {_INSTALL}"
        )


def _run_ffmpeg(argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
    """Run ffmpeg: exit code, stdout, stderr. Missing, not runnable or too slow: one line
    saying so (the fix, for the first two)."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    except FileNotFoundError:
        raise PromptBuildError(FFMPEG_MISSING) from None
    except OSError as exc:  # EACCES, ENOEXEC...
        why = exc.strerror or repr(exc)
        raise PromptBuildError(f"ffmpeg cannot be run ({argv[0]}: {why}): {_INSTALL}") from None
    except subprocess.TimeoutExpired:
        raise PromptBuildError(f"{argv[0]} did not finish within {FFMPEG_TIMEOUT_S:g} s") from None
    return done.returncode, done.stdout, done.stderr


def _stderr(err: bytes) -> str:
    """ffmpeg's own error lines, on one line."""
    lines = (line.strip() for line in err.decode(errors="replace").splitlines())
    return "; ".join(line for line in lines if line) or "nothing on stderr"


def _ffmpeg_filter() -> str:
    lowpass = ",".join(
        f"lowpass=f={LOWPASS_HZ}:poles=2:width_type=q:width={q}" for q in _BUTTERWORTH_4_Q
    )
    resample = f"aresample={SAMPLE_RATE}:filter_size=64:cutoff={RESAMPLER_CUTOFF}"
    # Filter in double precision; no dither on the final conversion to s16 (deterministic).
    return f"aformat=sample_fmts=dbl,{lowpass},{resample}"


def _ffmpeg_argv(ffmpeg: str) -> list[str]:
    """WAV on stdin, raw s16le on stdout; only errors on stderr."""
    quiet = ["-hide_banner", "-loglevel", "error"]
    pcm = ["-ac", str(CHANNELS), "-acodec", "pcm_s16le", "-f", "s16le"]
    return [ffmpeg, *quiet, "-f", "wav", "-i", "pipe:0", "-af", _ffmpeg_filter(), *pcm, "pipe:1"]


def to_asterisk_wav(raw_wav_bytes: bytes, ffmpeg: str = "ffmpeg") -> bytes:
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

    # Low-pass at the source rate, then resample (ffmpeg); raw s16le out.
    code, pcm, err = _run_ffmpeg(_ffmpeg_argv(ffmpeg), wav_bytes(seg.raw_data, seg.frame_rate))
    if code != 0:
        raise PromptBuildError(f"ffmpeg failed (exit {code}, {_stderr(err)})")
    if not pcm:
        raise PromptBuildError("ffmpeg produced no audio (it exited 0 and wrote nothing)")
    if len(pcm) % (SAMPLE_WIDTH * CHANNELS):
        raise PromptBuildError(f"ffmpeg produced {len(pcm)} bytes: not whole 16-bit samples")
    seg = segment_cls(
        data=pcm, sample_width=SAMPLE_WIDTH, frame_rate=SAMPLE_RATE, channels=CHANNELS
    )
    if seg.max == 0:
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

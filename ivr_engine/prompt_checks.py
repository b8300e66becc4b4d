"""Checks that prompt files are there and that Asterisk can play them as 8 kHz prompts.

The engine runs these at start-up (no TTS tools needed); the builder checks what it built.
"""

from __future__ import annotations

import sys
import wave
from array import array
from collections.abc import Iterable
from pathlib import Path

from ivr_engine.prompt_format import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH

MIN_DURATION_S = 0.1

# Extensions Asterisk can play a prompt from (any one of them makes the prompt "present").
SOUND_EXTENSIONS = frozenset(
    {".wav", ".WAV", ".wav16", ".gsm", ".ulaw", ".ul", ".alaw", ".al", ".sln", ".sln16", ".g722"}
)


def check_prompt_file(path: Path) -> list[str]:
    """Problems that would stop Asterisk playing ``path`` as an 8 kHz prompt; empty if sane."""
    try:
        with wave.open(str(path), "rb") as w:
            channels = w.getnchannels()
            width = w.getsampwidth()
            rate = w.getframerate()
            nframes = w.getnframes()
            comptype = w.getcomptype()
            frames = w.readframes(nframes)
    except FileNotFoundError:
        return ["missing file"]
    except (OSError, EOFError, wave.Error, ValueError, OverflowError) as exc:
        why = str(exc) or ("truncated" if isinstance(exc, EOFError) else type(exc).__name__)
        return [f"unreadable WAV: {why}"]
    problems: list[str] = []
    if comptype != "NONE":
        problems.append(f"compressed ({comptype}); need plain PCM")
    if channels != CHANNELS:
        problems.append(f"{channels} channels; need mono")
    if width != SAMPLE_WIDTH:
        problems.append(f"{8 * width}-bit samples; need 16-bit")
    if rate != SAMPLE_RATE:
        problems.append(f"{rate} Hz; need {SAMPLE_RATE} Hz")
    frame_size = max(1, channels * width)
    held = len(frames) // frame_size
    if held < nframes:
        problems.append(f"truncated: header says {nframes} frames, file holds {held}")
    if held == 0:
        problems.append("empty: no audio frames")
    elif rate > 0 and held / rate < MIN_DURATION_S:
        problems.append(f"too short: {held / rate:.3f} s (minimum {MIN_DURATION_S} s)")
    elif width == SAMPLE_WIDTH:
        samples = array("h", frames[: held * frame_size])
        if sys.byteorder == "big":
            samples.byteswap()
        if max(samples, default=0) == 0 and min(samples, default=0) == 0:
            problems.append("silent: every sample is zero")
    return problems


def prompt_duration(path: Path) -> float:
    """Length of a WAV file in seconds."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def available_prompt_ids(sounds_dir: Path) -> set[str]:
    """Names Asterisk can play from ``sounds_dir`` (a language directory such as ``prompts/en``):
    ``ivr-engine/welcome`` for ``ivr-engine/welcome.wav``, and so on, any sound extension."""
    root = Path(sounds_dir)
    found: set[str] = set()
    if not root.is_dir():
        return found
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix in SOUND_EXTENSIONS and path.is_file():
            found.add(rel.with_suffix("").as_posix())
    return found


def check_prompt_files(sounds_dir: Path, prompt_ids: Iterable[str]) -> dict[str, list[str]]:
    """``check_prompt_file`` for the WAV behind each id (e.g. ``ivr-engine/welcome``) under
    ``sounds_dir``; only ids with problems are returned. Missing non-WAV ids are reported too."""
    root = Path(sounds_dir)
    result: dict[str, list[str]] = {}
    for prompt_id in sorted(set(prompt_ids)):
        wav_path = root / f"{prompt_id}.wav"
        if wav_path.is_file():
            problems = check_prompt_file(wav_path)
        elif any((root / f"{prompt_id}{ext}").is_file() for ext in SOUND_EXTENSIONS):
            problems = []  # another format Asterisk plays; not inspected here
        else:
            problems = ["missing file"]
        if problems:
            result[prompt_id] = problems
    return result

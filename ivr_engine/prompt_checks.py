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


# Headerless formats: bytes per second at their rate, and the bytes of one whole unit.
_RAW_FORMATS: dict[str, tuple[int, int, str]] = {
    ".gsm": (1650, 33, "33-byte GSM frames"),
    ".ulaw": (8000, 1, "bytes"),
    ".ul": (8000, 1, "bytes"),
    ".alaw": (8000, 1, "bytes"),
    ".al": (8000, 1, "bytes"),
    ".sln": (16000, 2, "16-bit samples"),
    ".sln16": (32000, 2, "16-bit samples"),
    ".g722": (8000, 1, "bytes"),
}
# Bytes that are silence (G.711 codes of 0 and -0; signed linear 0).
_SILENCE: dict[str, frozenset[int]] = {
    ".ulaw": frozenset({0xFF, 0x7F}),
    ".ul": frozenset({0xFF, 0x7F}),
    ".alaw": frozenset({0xD5, 0x55}),
    ".al": frozenset({0xD5, 0x55}),
    ".sln": frozenset({0}),
    ".sln16": frozenset({0}),
}


def check_sound_file(path: Path) -> list[str]:
    """``check_prompt_file`` for a ``.wav``; any other format Asterisk plays is checked by
    its size (empty, a part of a GSM frame or sample, under ``MIN_DURATION_S``) and, for
    G.711 and signed linear, for silence. Empty if sane."""
    if path.suffix == ".wav":
        return check_prompt_file(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ["missing file"]
    except OSError as exc:
        return [f"unreadable: {exc.strerror or exc!r}"]
    if not data:
        return ["empty: 0 bytes"]
    if path.suffix not in _RAW_FORMATS:  # .wav16, .WAV: containers, not inspected here
        return []
    per_second, unit, units = _RAW_FORMATS[path.suffix]
    problems = []
    if len(data) % unit:
        problems.append(f"truncated: {len(data)} bytes is not a whole number of {units}")
    seconds = len(data) / per_second
    if seconds < MIN_DURATION_S:
        problems.append(f"too short: {seconds:.3f} s (minimum {MIN_DURATION_S} s)")
    elif path.suffix in _SILENCE and set(data) <= _SILENCE[path.suffix]:
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


def check_prompt_sounds(sounds_dir: Path, prompt_ids: Iterable[str]) -> dict[Path, list[str]]:
    """``check_sound_file`` for every sound file of each id (e.g. ``ivr-engine/welcome``)
    under ``sounds_dir``: Asterisk may play any of them, by the channel's codec. Keyed by
    file; an id with no file at all is keyed by its ``.wav`` path ("missing file")."""
    root = Path(sounds_dir)
    result: dict[Path, list[str]] = {}
    for prompt_id in sorted(set(prompt_ids)):
        files = [root / f"{prompt_id}{ext}" for ext in sorted(SOUND_EXTENSIONS)]
        present = [path for path in files if path.is_file()]
        if not present:
            result[root / f"{prompt_id}.wav"] = ["missing file"]
        for path in present:
            problems = check_sound_file(path)
            if problems:
                result[path] = problems
    return result


def check_prompt_files(sounds_dir: Path, prompt_ids: Iterable[str]) -> dict[str, list[str]]:
    """``check_prompt_sounds`` by id; only ids with problems are returned. The problems of
    a WAV read as ``check_prompt_file`` gives them, those of another file start with its
    name (``legacy.gsm: empty: 0 bytes``)."""
    result: dict[str, list[str]] = {}
    root = Path(sounds_dir)
    for path, problems in check_prompt_sounds(root, prompt_ids).items():
        prompt_id = path.relative_to(root).with_suffix("").as_posix()
        named = problems if path.suffix == ".wav" else [f"{path.name}: {p}" for p in problems]
        result.setdefault(prompt_id, []).extend(named)
    return result

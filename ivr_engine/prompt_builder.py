"""Build the IVR prompt set from text, reproducibly, in a format Asterisk plays as-is.

Pipeline for every prompt id in ``prompts/prompts.yaml``:

1. ``flite -voice <voice>`` (offline TTS, Debian package ``flite``) writes a WAV at the voice's
   native rate (16 kHz for ``slt``/``rms``). It runs as an asyncio subprocess, so building never
   blocks the event loop.
2. pydub (which calls ffmpeg) converts it, in a worker thread: mono, 16-bit, a 4th-order
   Butterworth low-pass at 3,400 Hz (the telephone band) *before* down-sampling, then a
   windowed-sinc resampler to 8,000 Hz (its own anti-alias cut-off at 3,600 Hz).
3. Silence below ``peak - 45 dB`` is trimmed from both ends (keeping a 20 ms margin), 5 ms
   fades avoid clicks, the peak is normalised to -3 dBFS and 50 ms of silence is added on
   each side.
4. The samples are written with a fixed 44-byte RIFF/WAVE header (PCM, 8 kHz, mono, 16-bit) and
   nothing else: no LIST/INFO chunk, no encoder tag, no timestamp. The same text, voice, flite
   and ffmpeg therefore give byte-identical files.

Files land in ``<out_dir>/<language>/ivr-engine/<id>.wav``; Asterisk's ``format_wav`` plays
them as ``ivr-engine/<id>`` (no extension) once ``<out_dir>/<language>`` is its sounds
directory for that language. Digits are *not* built here: menus use Asterisk's core sounds
``digits/0`` .. ``digits/9`` (package ``asterisk-core-sounds-en-gsm``).

Run ``python -m ivr_engine.prompt_builder prompts/prompts.yaml prompts`` (or
``ivr-engine prompts build``) to regenerate.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import shutil
import sys
import tempfile
import warnings
import wave
from array import array
from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ivr_engine.domain.errors import ConfigError

PROMPT_NAMESPACE = "ivr-engine"
"""Sub-directory of a language's sounds directory; prompt ``X`` is played as ``ivr-engine/X``."""

DEFAULT_VOICE = "slt"
SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2  # bytes: 16-bit signed PCM
CHANNELS = 1
LOWPASS_HZ = 3400
RESAMPLER_CUTOFF = 0.9  # of the 4 kHz output Nyquist: 3,600 Hz
PEAK_DBFS = -3.0
LEAD_IN_MS = 50
TAIL_MS = 50
FADE_MS = 5
TRIM_BELOW_PEAK_DB = 45.0
TRIM_MARGIN_MS = 20  # kept before/after the detected speech so weak onsets (/f/, /h/) survive
MIN_DURATION_S = 0.1
FLITE_TIMEOUT_S = 60.0

_ID_RE = re.compile(r"^[a-z0-9-]+$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_VOICE_RE = re.compile(r"^[A-Za-z0-9_]+$")
_TOP_LEVEL_KEYS = frozenset({"language", "voice", "prompts"})

# Extensions Asterisk can play a prompt from (any one of them makes the prompt "present").
SOUND_EXTENSIONS = frozenset(
    {".wav", ".WAV", ".wav16", ".gsm", ".ulaw", ".ul", ".alaw", ".al", ".sln", ".sln16", ".g722"}
)

# Two biquads with these Qs make a 4th-order Butterworth low-pass (flat pass band, -24 dB/oct).
_BUTTERWORTH_4_Q = (0.5412, 1.3066)


class PromptBuildError(ConfigError):
    """A prompt could not be synthesised or converted (tool missing, tool failed, bad audio).

    A ``ConfigError`` so the CLI reports it as a message with the fix, not a traceback.
    """


@dataclass(frozen=True, slots=True)
class PromptSet:
    """The validated contents of ``prompts.yaml``."""

    source: Path
    language: str
    voice: str
    prompts: Mapping[str, str]  # id -> text, in file order

    def path_for(self, out_dir: Path, prompt_id: str) -> Path:
        return out_dir / self.language / PROMPT_NAMESPACE / f"{prompt_id}.wav"


# --------------------------------------------------------------------------- prompt texts


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_prompt_texts(path: Path) -> PromptSet:
    """Read and validate ``prompts.yaml``; every error names the file and the key.

    Expected structure::

        language: en          # Asterisk language directory the files go to
        voice: slt            # a voice listed by `flite -lv`
        prompts:
          welcome: Thank you for calling Seed Telecom.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read prompt texts: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping with keys language, voice, prompts; "
            f"got {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in data if k not in _TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (allowed: language, voice, prompts)")

    language = data.get("language")
    if not isinstance(language, str) or not _LANGUAGE_RE.match(language):
        raise ConfigError(
            f"{path}: language: expected an Asterisk language code such as 'en' or 'en_GB', "
            f"got {language!r}"
        )
    voice = data.get("voice", DEFAULT_VOICE)
    if not isinstance(voice, str) or not _VOICE_RE.match(voice):
        raise ConfigError(
            f"{path}: voice: expected a flite voice name such as 'slt' (see `flite -lv`), "
            f"got {voice!r}"
        )

    raw = data.get("prompts")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: prompts: expected a non-empty mapping of prompt id -> text")
    prompts: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _ID_RE.match(key):
            raise ConfigError(
                f"{path}: prompts.{key}: invalid prompt id {key!r} "
                "(use lower-case letters, digits and '-'; it becomes the file name)"
            )
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: prompts.{key}: text must be a non-empty string")
        prompts[key] = " ".join(value.split())
    return PromptSet(source=path, language=language, voice=voice, prompts=MappingProxyType(prompts))


# --------------------------------------------------------------------------- synthesis

_voice_cache: dict[str, frozenset[str]] = {}


async def _run(argv: list[str], timeout_s: float) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise PromptBuildError(f"{argv[0]} did not finish within {timeout_s:g} s") from None
    return proc.returncode if proc.returncode is not None else -1, out, err


async def flite_voices(flite: str = "flite") -> frozenset[str]:
    """Voices compiled into ``flite`` (``flite -lv``)."""
    cached = _voice_cache.get(flite)
    if cached is not None:
        return cached
    try:
        code, out, err = await _run([flite, "-lv"], FLITE_TIMEOUT_S)
    except FileNotFoundError:
        raise PromptBuildError("flite not found: apt-get install flite") from None
    listing = out.decode(errors="replace")
    if code != 0 or ":" not in listing:
        raise PromptBuildError(f"`{flite} -lv` failed: {err.decode(errors='replace').strip()}")
    voices = frozenset(listing.split(":", 1)[1].split())
    _voice_cache[flite] = voices
    return voices


async def synthesize(
    text: str,
    voice: str = DEFAULT_VOICE,
    *,
    flite: str = "flite",
    timeout_s: float = FLITE_TIMEOUT_S,
) -> bytes:
    """Speak ``text`` with flite and return its WAV file (native rate of the voice).

    flite silently falls back to its default voice for an unknown name, so the voice is checked
    against ``flite -lv`` first.
    """
    if not text.strip():
        raise PromptBuildError("cannot synthesise an empty text")
    voices = await flite_voices(flite)
    if voice not in voices:
        raise PromptBuildError(
            f"flite voice {voice!r} not available (flite -lv lists: {', '.join(sorted(voices))})"
        )
    with tempfile.TemporaryDirectory(prefix="ivr-prompt-") as tmp:
        out = Path(tmp) / "tts.wav"
        try:
            code, _, err = await _run(
                [flite, "-voice", voice, "-t", text, "-o", str(out)], timeout_s
            )
        except FileNotFoundError:
            raise PromptBuildError("flite not found: apt-get install flite") from None
        if code != 0:
            raise PromptBuildError(
                f"flite failed (exit {code}) for {text!r}: {err.decode(errors='replace').strip()}"
            )
        try:
            data = await asyncio.to_thread(out.read_bytes)
        except OSError as exc:
            raise PromptBuildError(f"flite wrote no audio for {text!r}: {exc}") from exc
    if len(data) <= 44:
        raise PromptBuildError(f"flite wrote an empty WAV for {text!r}")
    return data


# --------------------------------------------------------------------------- conversion


def _pydub() -> Any:
    """Import pydub lazily: the engine imports this module at start-up without needing ffmpeg."""
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


def wav_bytes(pcm: bytes, rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> bytes:
    """A minimal RIFF/WAVE file: 44-byte PCM header + samples, no metadata chunks."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


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


# --------------------------------------------------------------------------- building


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomic write; an identical file is left untouched (keeps mtimes and git quiet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def build_prompts(
    prompts_yaml: Path,
    out_dir: Path,
    only: set[str] | None = None,
    *,
    concurrency: int = 4,
    flite: str = "flite",
) -> list[Path]:
    """Synthesise every prompt (or just ``only``) to ``out_dir/<language>/ivr-engine/<id>.wav``.

    Returns the files, in prompt-file order. Same input -> byte-identical files.
    """
    prompt_set = await asyncio.to_thread(load_prompt_texts, Path(prompts_yaml))
    ids = list(prompt_set.prompts)
    if only is not None:
        unknown = sorted(only - set(ids))
        if unknown:
            raise ConfigError(
                f"{prompt_set.source}: prompts: no such prompt id(s): {', '.join(unknown)}"
            )
        ids = [i for i in ids if i in only]
    limit = asyncio.Semaphore(max(1, concurrency))

    async def build_one(prompt_id: str) -> Path:
        async with limit:
            text = prompt_set.prompts[prompt_id]
            try:
                raw = await synthesize(text, prompt_set.voice, flite=flite)
                data = await asyncio.to_thread(to_asterisk_wav, raw)
            except PromptBuildError as exc:
                raise PromptBuildError(f"{prompt_set.source}: prompts.{prompt_id}: {exc}") from exc
            target = prompt_set.path_for(Path(out_dir), prompt_id)
            await asyncio.to_thread(_write_if_changed, target, data)
            return target

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(build_one(i)) for i in ids]
    except ExceptionGroup as failed:
        # Report plain errors (as the CLI expects), all of them when they are build errors.
        errors = failed.exceptions
        if all(isinstance(e, PromptBuildError) for e in errors):
            raise PromptBuildError("\n".join(str(e) for e in errors)) from errors[0]
        raise errors[0] from None
    return [t.result() for t in tasks]


# --------------------------------------------------------------------------- checking


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


# --------------------------------------------------------------------------- command line


def _summary(paths: Collection[Path]) -> str:
    width = max((len(p.stem) for p in paths), default=2)
    lines = [f"{'id':<{width}}  seconds  bytes"]
    for p in paths:
        lines.append(f"{p.stem:<{width}}  {prompt_duration(p):7.2f}  {p.stat().st_size}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ivr_engine.prompt_builder",
        description="Build the 8 kHz WAV prompt set from prompts.yaml with flite + ffmpeg.",
    )
    parser.add_argument("prompts_yaml", type=Path, nargs="?", default=Path("prompts/prompts.yaml"))
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("prompts"))
    parser.add_argument("--only", nargs="+", metavar="ID", help="build just these prompt ids")
    args = parser.parse_args(argv)
    try:
        paths = asyncio.run(
            build_prompts(args.prompts_yaml, args.out_dir, set(args.only) if args.only else None)
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(_summary(paths))
    bad = {p: check_prompt_file(p) for p in paths}
    for p, problems in bad.items():
        for problem in problems:
            print(f"error: {p}: {problem}", file=sys.stderr)
    if any(bad.values()):
        return 1
    print(f"built {len(paths)} prompt file(s) under {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

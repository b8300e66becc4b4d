"""Speech from text with flite (offline TTS, Debian package ``flite``).

``flite -voice <voice>`` writes a WAV at the voice's native rate (16 kHz for ``slt``/``rms``).
It runs as an asyncio subprocess, so building never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

from ivr_engine.prompt_format import PromptBuildError
from ivr_engine.prompt_texts import DEFAULT_VOICE

FLITE_TIMEOUT_S = 60.0

_INSTALL = "install the Debian package flite (apt-get install flite)"
FLITE_MISSING = f"flite not found: {_INSTALL}"

_voice_cache: dict[str, frozenset[str]] = {}


def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc`` unless it is already gone: when the deadline fires just as it exits,
    asyncio has closed its transport and ``kill()`` raises ``ProcessLookupError``."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


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
        _kill(proc)
        await proc.wait()
        raise PromptBuildError(f"{argv[0]} did not finish within {timeout_s:g} s") from None
    except asyncio.CancelledError:  # another prompt failed: leave no orphan (nor a transport
        _kill(proc)  # collected after the loop closed, printing a traceback at exit)
        await proc.wait()
        raise
    return proc.returncode if proc.returncode is not None else -1, out, err


async def _run_flite(argv: list[str], timeout_s: float) -> tuple[int, bytes, bytes]:
    """``_run`` for flite: a flite that is not there, or not a program that can run (not
    executable, a broken file), is a ``PromptBuildError`` saying how to install it."""
    try:
        return await _run(argv, timeout_s)
    except FileNotFoundError:
        raise PromptBuildError(FLITE_MISSING) from None
    except OSError as exc:  # EACCES, ENOEXEC...
        why = exc.strerror or repr(exc)
        raise PromptBuildError(f"flite cannot be run ({argv[0]}: {why}): {_INSTALL}") from None


def _stderr(err: bytes) -> str:
    return err.decode(errors="replace").strip() or "nothing on stderr"


async def flite_voices(flite: str = "flite") -> frozenset[str]:
    """Voices compiled into ``flite`` (``flite -lv``)."""
    cached = _voice_cache.get(flite)
    if cached is not None:
        return cached
    code, out, err = await _run_flite([flite, "-lv"], FLITE_TIMEOUT_S)
    listing = out.decode(errors="replace")
    if code != 0 or ":" not in listing:
        raise PromptBuildError(
            f"`{flite} -lv` failed (exit {code}, {_stderr(err)}): is it flite? {_INSTALL}"
        )
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
        code, _, err = await _run_flite(
            [flite, "-voice", voice, "-t", text, "-o", str(out)], timeout_s
        )
        if code != 0:
            raise PromptBuildError(f"flite failed (exit {code}) for {text!r}: {_stderr(err)}")
        try:
            data = await asyncio.to_thread(out.read_bytes)
        except OSError as exc:
            raise PromptBuildError(f"flite wrote no audio for {text!r}: {exc}") from exc
    if len(data) <= 44:
        raise PromptBuildError(f"flite wrote an empty WAV for {text!r}")
    return data

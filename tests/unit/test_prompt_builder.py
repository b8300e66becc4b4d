"""Prompt builder: text validation, flite + pydub conversion, reproducibility, file checks.

Tests that synthesise speech need Debian's flite and ffmpeg; they *fail* (never skip) with the
install command when either is missing, so a CI image without them cannot pass by accident.
Spectra are measured with a small pure-Python DFT (numpy is not a dependency).
"""

from __future__ import annotations

import array
import asyncio
import gc
import io
import math
import os
import shutil
import sys
import wave
from pathlib import Path

import pytest

from ivr_engine.domain.errors import ConfigError
from ivr_engine.menu_config import load_menus, referenced_prompts
from ivr_engine.prompt_builder import build_prompts
from ivr_engine.prompt_checks import (
    available_prompt_ids,
    check_prompt_file,
    check_prompt_files,
    prompt_duration,
)
from ivr_engine.prompt_conversion import to_asterisk_wav
from ivr_engine.prompt_format import PromptBuildError, wav_bytes
from ivr_engine.prompt_synthesis import _run, _run_flite, synthesize
from ivr_engine.prompt_texts import load_prompt_texts

ROOT = Path(__file__).resolve().parents[2]
PROMPTS_YAML = ROOT / "prompts" / "prompts.yaml"
COMMITTED = ROOT / "prompts" / "en"

REQUIRED_IDS = {
    "welcome",
    "for",
    "press",
    "say-or-press",
    "label-new-service",
    "label-tech-support",
    "label-moving",
    "label-outage",
    "label-cancel",
    "label-billing",
    "label-operator",
    "shortcut-calling-about",
    "shortcut-topic-billing",
    "shortcut-topic-tech-support",
    "shortcut-topic-new-service",
    "shortcut-topic-moving",
    "shortcut-topic-outage",
    "shortcut-topic-cancel",
    "shortcut-again",
    "continue-open-case",
    "continue-question",
    "continue-sms-offer",
    "continue-sms-sent",
    "enter-account-number",
    "enter-postcode",
    "no-match",
    "thank-you",
    "invalid-option",
    "no-input",
    "transfer",
    "goodbye",
    "technical-difficulty",
    "nobody-available",
    "callback-later",
}


@pytest.fixture
def tts_tools() -> None:
    """Require flite and ffmpeg: fail loudly with the fix instead of skipping."""
    missing = [tool for tool in ("flite", "ffmpeg") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not installed: apt-get install {' '.join(missing)} "
            "(needed to synthesise prompts)",
            pytrace=False,
        )


# --------------------------------------------------------------------------- helpers


def write_yaml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "prompts.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def tone_pcm(
    freqs: list[float], rate: int, seconds: float, amp: int = 8000, channels: int = 1
) -> bytes:
    n = int(rate * seconds)
    samples = array.array("h")
    for i in range(n):
        value = int(sum(amp * math.sin(2 * math.pi * f * i / rate) for f in freqs))
        samples.extend([value] * channels)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def make_wav(rate: int = 8000, channels: int = 1, width: int = 2, seconds: float = 0.5) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes(tone_pcm([440.0], rate, seconds, channels=channels))
        else:
            w.writeframes(bytes([128 + 60, 128 - 60]) * int(rate * seconds * channels / 2))
    return buf.getvalue()


def read_samples(data: bytes) -> tuple[int, list[int]]:
    with wave.open(io.BytesIO(data), "rb") as w:
        rate = w.getframerate()
        samples = array.array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return rate, list(samples)


def tone_power(samples: list[int], rate: int, freq: float) -> float:
    """Goertzel: power of one frequency."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for value in samples:
        s1, s2 = value + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / len(samples) ** 2


def fraction_above(samples: list[int], rate: int, cutoff_hz: float, n: int) -> float:
    """Share of the signal's energy above ``cutoff_hz`` (Hann-windowed naive DFT, n points)."""
    window = [0.5 - 0.5 * math.cos(2 * math.pi * i / n) for i in range(n)]
    bins = range(1, n // 2 + 1)
    cos = {k: [math.cos(2 * math.pi * k * i / n) for i in range(n)] for k in bins}
    sin = {k: [math.sin(2 * math.pi * k * i / n) for i in range(n)] for k in bins}
    first_high = math.ceil(cutoff_hz * n / rate)
    high = total = 0.0
    for start in range(0, len(samples) - n + 1, n):
        frame = [samples[start + i] * window[i] for i in range(n)]
        for k in bins:
            re = sum(a * b for a, b in zip(frame, cos[k], strict=True))
            im = sum(a * b for a, b in zip(frame, sin[k], strict=True))
            power = re * re + im * im
            total += power
            if k >= first_high:
                high += power
    return high / total


# --------------------------------------------------------------------------- prompts.yaml


def test_committed_prompt_texts_are_valid_and_complete() -> None:
    prompt_set = load_prompt_texts(PROMPTS_YAML)
    assert prompt_set.language == "en"
    assert prompt_set.voice == "slt"
    assert set(prompt_set.prompts) == REQUIRED_IDS
    assert prompt_set.prompts["welcome"] == "Thank you for calling Seed Telecom."
    assert prompt_set.prompts["for"] == "For"


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("language: en\nprompts:\n  Welcome_1: Hello\n", "prompts.Welcome_1"),
        ("language: en\nprompts:\n  welcome: ''\n", "prompts.welcome"),
        ("language: en\nprompts:\n  welcome: '   '\n", "prompts.welcome"),
        ("language: en\nprompts:\n  welcome:\n", "prompts.welcome"),
        ("language: en\nprompts:\n  welcome: [a, b]\n", "prompts.welcome"),
        ("language: en\nprompts:\n  welcome: Hi\n  welcome: Hello\n", "welcome"),
        ("language: en\nprompts: {}\n", "prompts"),
        ("language: en\n", "prompts"),
        ("prompts:\n  welcome: Hi\n", "language"),
        ("language: english\nprompts:\n  welcome: Hi\n", "language"),
        ("language: en\nvoice: 'slt; rm'\nprompts:\n  welcome: Hi\n", "voice"),
        ("language: en\nvoices: slt\nprompts:\n  welcome: Hi\n", "voices"),
        ("- welcome\n", "mapping"),
        ("language: en\nprompts: [welcome\n", "invalid YAML"),
        # re's "$" matches before a final "\n": these passed, and "welcome\n.wav" was built
        ('language: en\nprompts:\n  "welcome\\n": Hi\n', "prompts.'welcome\\n': invalid prompt id"),
        ('language: "en\\n"\nprompts:\n  welcome: Hi\n', "language"),
        ('language: en\nvoice: "slt\\n"\nprompts:\n  welcome: Hi\n', "voice"),
        ('language: en\nprompts:\n  "wel\\tcome": Hi\n', "prompts.'wel\\tcome'"),
        ('language: en\nprompts:\n  welcome: "Hi\\0there"\n', "prompts.welcome: text"),
        ('language: en\nprompts:\n  welcome: "Hi \\u202Eereht"\n', "U+202E"),
        ('language: en\nprompts:\n  welcome: "Hi\\x7f"\n', "U+007F"),
    ],
)
def test_invalid_prompt_texts_name_file_and_key(tmp_path: Path, body: str, names: str) -> None:
    path = write_yaml(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_prompt_texts(path)
    message = str(caught.value)
    assert str(path) in message
    assert names in message


def test_unreadable_prompt_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_prompt_texts(missing)


def test_texts_are_whitespace_normalised_and_ordered(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "language: en\nprompts:\n  b: ' two\n   words '\n  a: one\n")
    prompt_set = load_prompt_texts(path)
    assert list(prompt_set.prompts.items()) == [("b", "two words"), ("a", "one")]
    assert prompt_set.voice == "slt"  # the default


async def test_only_with_unknown_id_is_a_config_error(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "language: en\nprompts:\n  welcome: Hi\n")
    with pytest.raises(ConfigError, match="no-such-prompt"):
        await build_prompts(path, tmp_path / "out", only={"no-such-prompt"})


# --------------------------------------------------------------------------- synthesis


async def test_missing_flite_gives_the_install_command(tmp_path: Path) -> None:
    missing = r"flite not found: install the Debian package flite"
    with pytest.raises(PromptBuildError, match=missing):
        await synthesize("Hello", "slt", flite=str(tmp_path / "no-flite-here"))


async def test_build_error_names_file_and_key_when_flite_is_missing(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "language: en\nprompts:\n  welcome: Hi\n")
    with pytest.raises(PromptBuildError) as caught:
        await build_prompts(path, tmp_path / "out", flite=str(tmp_path / "no-flite-here"))
    message = str(caught.value)
    assert str(path) in message
    assert "prompts.welcome" in message
    assert "apt-get install flite" in message


async def test_unknown_voice_is_refused_not_silently_replaced(
    tts_tools: None, tmp_path: Path
) -> None:
    # flite itself falls back to its default voice for an unknown name.
    path = write_yaml(tmp_path, "language: en\nvoice: nosuchvoice\nprompts:\n  welcome: Hi\n")
    with pytest.raises(PromptBuildError, match="nosuchvoice"):
        await build_prompts(path, tmp_path / "out")


async def test_build_one_prompt_gives_8khz_mono_16bit_wav(tts_tools: None, tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "language: en\nvoice: slt\nprompts:\n"
        "  welcome: Thank you for calling Seed Telecom.\n  goodbye: Goodbye.\n",
    )
    out = tmp_path / "out"
    written = await build_prompts(path, out, only={"welcome"})
    target = out / "en" / "ivr-engine" / "welcome.wav"
    assert written == [target]
    assert not (out / "en" / "ivr-engine" / "goodbye.wav").exists()
    with wave.open(str(target), "rb") as w:
        assert w.getframerate() == 8000
        assert w.getnchannels() == 1
        assert w.getsampwidth() == 2
        assert w.getcomptype() == "NONE"
        assert w.getnframes() / w.getframerate() > 0.3
        nframes = w.getnframes()
    # Only the 44-byte PCM header and the samples: no LIST/INFO chunk, no encoder tag.
    data = target.read_bytes()
    assert len(data) == 44 + 2 * nframes
    assert data[36:40] == b"data"
    assert check_prompt_file(target) == []
    assert available_prompt_ids(out / "en") == {"ivr-engine/welcome"}

    rate, samples = read_samples(data)
    peak = max(abs(s) for s in samples)
    assert -3.5 < 20 * math.log10(peak / 32768) < -2.5  # normalised to about -3 dBFS
    assert all(s == 0 for s in samples[: rate * 40 // 1000])  # lead-in silence
    assert all(s == 0 for s in samples[-rate * 40 // 1000 :])  # tail silence


async def test_build_is_byte_identical(tts_tools: None, tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "language: en\nvoice: slt\nprompts:\n  for: For\n  thank-you: Thank you.\n",
    )
    first = await build_prompts(path, tmp_path / "a")
    second = await build_prompts(path, tmp_path / "b")
    assert [p.name for p in first] == ["for.wav", "thank-you.wav"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    # Rebuilding in place leaves identical files untouched.
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first}
    again = await build_prompts(path, tmp_path / "a")
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in again} == before


def test_low_pass_removes_tones_above_the_telephone_band() -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg not installed: apt-get install ffmpeg", pytrace=False)
    # 1 kHz (kept), 3.8 kHz (above the band), 6 kHz (would alias to 2 kHz without filtering).
    source = wav_bytes(tone_pcm([1000.0, 3800.0, 6000.0], 16000, 1.0), rate=16000)
    rate, samples = read_samples(to_asterisk_wav(source))
    assert rate == 8000
    middle = samples[2000:6000]
    kept = tone_power(middle, rate, 1000.0)
    assert tone_power(middle, rate, 3800.0) < kept * 10 ** (-25 / 10)  # >= 25 dB down
    assert tone_power(middle, rate, 2000.0) < kept * 10 ** (-60 / 10)  # no aliasing
    # In-band speech frequencies pass nearly untouched.
    source = wav_bytes(tone_pcm([1000.0, 3000.0], 16000, 1.0), rate=16000)
    rate, samples = read_samples(to_asterisk_wav(source))
    middle = samples[2000:6000]
    ratio = tone_power(middle, rate, 3000.0) / tone_power(middle, rate, 1000.0)
    assert ratio > 10 ** (-2 / 10)  # within 2 dB


async def test_low_pass_on_speech_leaves_little_energy_above_3600_hz(tts_tools: None) -> None:
    raw = await synthesize("Please enter your account number, followed by the hash key.", "slt")
    raw_rate, raw_samples = read_samples(raw)
    rate, samples = read_samples(to_asterisk_wav(raw))
    before = fraction_above(raw_samples, raw_rate, 3600, 256)
    after = fraction_above(samples, rate, 3600, 128)
    assert after < 0.001
    assert after < before / 10


# --------------------------------------------------------------------------- file checks


def test_check_accepts_a_sane_prompt(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    good.write_bytes(make_wav())
    assert check_prompt_file(good) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (make_wav()[:-3000], "truncated"),
        (b"this is not a wav file at all" * 10, "unreadable"),
        (b"", "unreadable"),
        (make_wav()[:30], "unreadable"),
        (make_wav(rate=16000), "need 8000 Hz"),
        (make_wav(channels=2), "need mono"),
        (make_wav(width=1), "need 16-bit"),
        (make_wav(seconds=0.0), "empty"),
        (make_wav(seconds=0.02), "too short"),
        (wav_bytes(bytes(8000)), "silent"),
    ],
    ids=[
        "truncated",
        "garbage",
        "zero-bytes",
        "header-only",
        "16khz",
        "stereo",
        "8bit",
        "no-frames",
        "too-short",
        "silent",
    ],
)
def test_check_flags_broken_prompts(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    problems = check_prompt_file(path)
    assert any(expected in p for p in problems), problems


def test_check_flags_a_missing_file(tmp_path: Path) -> None:
    assert check_prompt_file(tmp_path / "absent.wav") == ["missing file"]


def test_available_prompt_ids_and_directory_check(tmp_path: Path) -> None:
    ivr = tmp_path / "ivr-engine"
    ivr.mkdir()
    (ivr / "welcome.wav").write_bytes(make_wav())
    (ivr / "broken.wav").write_bytes(b"garbage")
    (ivr / "legacy.gsm").write_bytes(b"\xd8" * 33 * 5)  # 5 frames: 0.1 s, the minimum
    (ivr / "notes.txt").write_text("not a sound")
    (ivr / ".hidden.wav").write_bytes(make_wav())
    assert available_prompt_ids(tmp_path) == {
        "ivr-engine/welcome",
        "ivr-engine/broken",
        "ivr-engine/legacy",
    }
    assert available_prompt_ids(tmp_path / "nowhere") == set()
    problems = check_prompt_files(
        tmp_path, ["ivr-engine/welcome", "ivr-engine/broken", "ivr-engine/legacy", "ivr-engine/x"]
    )
    assert set(problems) == {"ivr-engine/broken", "ivr-engine/x"}
    assert problems["ivr-engine/x"] == ["missing file"]


# --------------------------------------------------------------------------- committed set


def test_every_committed_prompt_exists_and_is_sane() -> None:
    ids = set(load_prompt_texts(PROMPTS_YAML).prompts)
    available = available_prompt_ids(COMMITTED)
    assert available == {f"ivr-engine/{i}" for i in ids}, "regenerate: see prompts/README.md"
    assert check_prompt_files(COMMITTED, available) == {}


def test_committed_prompt_durations_are_plausible() -> None:
    durations = {
        path.stem: prompt_duration(path) for path in (COMMITTED / "ivr-engine").glob("*.wav")
    }
    assert durations, "no committed prompts"
    print("\n".join(f"{k:<28} {v:5.2f} s" for k, v in sorted(durations.items())))
    assert durations["for"] < 0.7
    assert durations["press"] < 0.8
    assert 1.5 < durations["welcome"] < 3.0
    assert all(0.3 < seconds < 6.0 for seconds in durations.values()), durations


def test_sample_menu_announcements_read_as_english() -> None:
    """An option is announced as "For" + its label + "press" + the digit, so a label is a
    noun phrase: "to report an outage," was heard as "For to report an outage, press 4"."""
    texts = load_prompt_texts(PROMPTS_YAML).prompts
    heard = []
    for menu in load_menus(ROOT / "config" / "menus").values():
        for_word = texts[menu.prompts.for_word.removeprefix("ivr-engine/")]
        for option in menu.options:
            label = texts[option.prompt.removeprefix("ivr-engine/")]
            heard.append(f"{for_word} {label} press {option.digit}")
    assert heard
    assert [h for h in heard if h.lower().startswith("for to ")] == []


def test_sample_menus_only_reference_prompts_that_exist() -> None:
    available = available_prompt_ids(COMMITTED)
    for menu in load_menus(ROOT / "config" / "menus").values():
        own = {p for p in referenced_prompts(menu) if not p.startswith("digits/")}
        assert own <= available, sorted(own - available)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("p.gsm", b"", "empty: 0 bytes"),
        ("p.gsm", b"\xd8" * 200, "not a whole number of 33-byte GSM frames"),
        ("p.gsm", b"\xd8" * 33, "too short: 0.020 s"),
        ("p.ulaw", b"", "empty"),
        ("p.ul", b"\x10" * 100, "too short"),
        ("p.ulaw", b"\xff" * 8000, "silent"),
        ("p.alaw", b"", "empty"),
        ("p.al", b"\xd5\x55" * 4000, "silent"),
        ("p.sln", b"\x01" * 3201, "not a whole number of 16-bit samples"),
        ("p.sln", bytes(16000), "silent"),
        ("p.sln16", b"\x01\x02" * 100, "too short"),
        ("p.g722", b"", "empty"),
        ("p.wav16", b"", "empty"),
    ],
)
def test_an_empty_or_short_prompt_of_another_format_is_flagged(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / name).write_bytes(content)
    problems = check_prompt_files(tmp_path, {"x/p"})
    assert list(problems) == ["x/p"] and len(problems["x/p"]) == 1, problems
    assert problems["x/p"][0].startswith(f"{name}: ") and expected in problems["x/p"][0]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.gsm", b"\xd8" * 33 * 50),
        ("p.ulaw", bytes(range(256)) * 8),
        ("p.alaw", bytes(range(256)) * 8),
        ("p.sln", bytes(range(256)) * 16),
        ("p.g722", b"\x12" * 4000),
    ],
)
def test_a_sane_prompt_of_another_format_passes(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / name).write_bytes(content)
    assert check_prompt_files(tmp_path, {"x/p"}) == {}


def test_an_unreadable_prompt_says_why(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "cut.wav").write_bytes(b"RIFF")  # the wave module: EOFError, no text
    assert check_prompt_files(tmp_path, {"x/cut"}) == {"x/cut": ["unreadable WAV: truncated"]}


async def test_a_cancelled_flite_run_is_killed_not_orphaned(tmp_path: Path) -> None:
    """A build stops its other prompts when one fails: their flite must not run on (and its
    transport, collected after the loop closed, printed a traceback at exit)."""
    started = tmp_path / "started"
    os.mkfifo(started)  # the script writes its pid there: read it once it runs
    script = f"echo $$ > {started}; exec sleep 30"
    gc.disable()  # the transport sits in a reference cycle: only a gc pass killed flite
    try:
        running = asyncio.create_task(_run(["/bin/sh", "-c", script], 60))
        pid = int(await asyncio.to_thread(started.read_text))
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        with pytest.raises(ProcessLookupError):  # killed and reaped by the time it returns
            os.kill(pid, 0)
    finally:
        gc.enable()


async def test_a_deadline_that_runs_out_as_flite_exits_is_a_timeout_not_a_broken_flite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race seen under load: the deadline fired after flite had exited and asyncio had
    closed its transport, so ``kill()`` raised ``ProcessLookupError`` (an ``OSError``) and the
    build said "flite cannot be run". The run here is real; only the moment the deadline fires
    is pinned: right after the process was reaped."""
    communicate = asyncio.subprocess.Process.communicate

    async def exits_then_deadline(
        self: asyncio.subprocess.Process, input: bytes | None = None
    ) -> tuple[bytes, bytes]:
        await communicate(self, input)
        await self.wait()  # transport closed: kill() now raises ProcessLookupError
        raise TimeoutError  # what asyncio.timeout raises when the deadline fires

    monkeypatch.setattr(asyncio.subprocess.Process, "communicate", exits_then_deadline)
    with pytest.raises(PromptBuildError, match="did not finish within 7 s"):
        await _run_flite(["/bin/true"], 7)


async def test_a_flite_cancelled_as_it_exits_stays_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same race on the cancel path (another prompt failed and the build stops the rest):
    the run must end cancelled, not with ``ProcessLookupError`` reported as a broken flite."""
    communicate = asyncio.subprocess.Process.communicate

    async def exits_then_cancelled(
        self: asyncio.subprocess.Process, input: bytes | None = None
    ) -> tuple[bytes, bytes]:
        await communicate(self, input)
        await self.wait()
        raise asyncio.CancelledError

    monkeypatch.setattr(asyncio.subprocess.Process, "communicate", exits_then_cancelled)
    with pytest.raises(asyncio.CancelledError):
        await _run_flite(["/bin/true"], 7)

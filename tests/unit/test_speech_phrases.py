"""The recogniser's pure parts: phrase checks, the grammar, the accept rule, WAV reading."""

from __future__ import annotations

import wave
from array import array
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speech import check_phrases
from speech.audio import AudioError, read_model_audio, upsample_2x
from speech.phrases import choose, jsgf, normalise, phrase_problems

MENU = normalise(
    {
        "main": {
            "billing": ["Billing", "pay my bill", "my bill", "payment"],
            "disputes": ["bill dispute", "wrong charge"],
            "operator": ["agent", "an agent"],
        }
    }
)["main"]


def test_check_phrases_names_menu_intent_phrase_and_unknown_word() -> None:
    problems = check_phrases({"main": {"billing": ["pay my bill", "pay my zorblax"]}})
    assert problems == [
        "menu 'main', intent 'billing', phrase 'pay my zorblax': "
        "not in the pronunciation dictionary: zorblax"
    ]


def test_check_phrases_finds_empty_phrases_and_a_phrase_on_two_intents() -> None:
    problems = check_phrases(
        {"main": {"billing": ["billing", "  "], "payments": ["Billing"], "none": []}}
    )
    assert problems == [
        "menu 'main', intent 'billing', phrase '  ': empty phrase",
        "menu 'main', intent 'payments', phrase 'Billing': "
        "the same phrase is also given to intent 'billing'",
        "menu 'main', intent 'none': no phrases",
    ]


def test_the_same_phrase_in_two_menus_is_fine() -> None:
    assert check_phrases({"a": {"x": ["billing"]}, "b": {"y": ["billing"]}}) == []


def test_words_the_grammar_cannot_hold_are_refused_even_if_listed() -> None:
    # punctuation would break the JSGF text (and pocketsphinx crashes on a bad grammar)
    vocabulary = frozenset({"pay", "bill;", "<fill>"})
    assert phrase_problems({"m": {"i": ["pay bill;", "<fill>"]}}, vocabulary) == [
        "menu 'm', intent 'i', phrase 'pay bill;': not in the pronunciation dictionary: bill;",
        "menu 'm', intent 'i', phrase '<fill>': not in the pronunciation dictionary: <fill>",
    ]


def test_grammar_is_fillers_one_phrase_fillers() -> None:
    text = jsgf(MENU)
    assert "public <say> = <fill>* ( agent | an agent | bill dispute | billing |" in text
    assert text.rstrip().endswith(") <fill>*;")


@pytest.mark.parametrize(
    ("grammar", "transcript", "expected"),
    [
        ("i want to pay my bill", "i want to pay my bill", ("billing", "pay my bill")),
        ("billing", "billing please", ("billing", "billing")),
        ("an agent", "they agent", ("operator", "an agent")),  # a distinctive word confirms
        ("payment", "my bill", ("billing", "payment")),  # another phrase of the same intent
    ],
)
def test_accepted_when_the_transcript_agrees(
    grammar: str, transcript: str, expected: tuple[str, str]
) -> None:
    choice = choose(MENU, grammar, transcript)
    assert choice is not None
    assert (choice.intent, choice.phrase) == expected


@pytest.mark.parametrize(
    ("grammar", "transcript"),
    [
        ("billing", "hello there"),  # the grammar forced a phrase onto out-of-menu speech
        ("billing", "killing"),  # near, but no word of the phrase
        ("an agent", "an apple"),  # only a stop word in common
        ("bill dispute", "pay bill"),  # "bill" is not distinctive: billing uses it too
        ("my bill", "a bill"),  # ... nor for billing: disputes uses it
        ("my bill", "my bill or an agent"),  # the transcript also says another option
        ("", "billing"),
        ("the a", "the a"),
    ],
)
def test_nothing_accepted_when_the_transcript_does_not_confirm(
    grammar: str, transcript: str
) -> None:
    assert choose(MENU, grammar, transcript) is None


@given(st.lists(st.sampled_from(["billing", "bill", "agent", "dispute", "the", "my", "hello"])))
def test_an_accepted_intent_always_has_evidence_in_the_transcript(words: list[str]) -> None:
    transcript = " ".join(words)
    for grammar in ("billing", "an agent", "bill dispute", "my bill"):
        choice = choose(MENU, grammar, transcript)
        if choice is not None:
            phrases = [" ".join(p) for p in MENU[choice.intent]]
            assert any(w in transcript.split() for p in phrases for w in p.split()), transcript


def _wav(path: Path, frames: bytes, *, rate: int = 8000, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(frames)
    return path


def test_8_khz_is_upsampled_and_16_khz_kept(tmp_path: Path) -> None:
    samples = array("h", [0, 100, -100, 32767])
    narrow = read_model_audio(_wav(tmp_path / "8k.wav", samples.tobytes()))
    assert array("h", narrow).tolist() == [0, 50, 100, 0, -100, 16333, 32767, 32767]
    wide = read_model_audio(_wav(tmp_path / "16k.wav", samples.tobytes(), rate=16000))
    assert wide == samples.tobytes()


def test_upsampling_keeps_every_sample_and_stays_in_range() -> None:
    samples = array("h", [-32768, 32767, -32768, 32767])
    out = upsample_2x(samples)
    assert out[0::2] == samples and len(out) == 8 and min(out) >= -32768


@pytest.mark.parametrize(
    "make",
    [
        lambda d: d / "missing.wav",
        lambda d: d,  # a directory
        lambda d: (d / "empty.wav", (d / "empty.wav").write_bytes(b""))[0],
        lambda d: (d / "text.wav", (d / "text.wav").write_text("not audio\n"))[0],
        lambda d: _wav(d / "header-only.wav", b""),
        lambda d: _wav(d / "stereo.wav", bytes(400), channels=2),
        lambda d: _wav(d / "8bit.wav", bytes(400), width=1),
        lambda d: _wav(d / "44k.wav", bytes(400), rate=44100),
    ],
    ids=["missing", "directory", "empty", "text", "header-only", "stereo", "8-bit", "44.1kHz"],
)
def test_unusable_files_raise_audio_error(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AudioError):
        read_model_audio(make(tmp_path))


def test_a_file_cut_mid_sample_keeps_what_is_there(tmp_path: Path) -> None:
    path = _wav(tmp_path / "cut.wav", array("h", [1, 2, 3, 4]).tobytes())
    path.write_bytes(path.read_bytes()[:-3])  # the header still says 4 frames
    assert array("h", read_model_audio(path)).tolist() == [1, 1, 2, 2]  # 2 whole samples

"""The worker-process side: pocketsphinx decoders built once per process, two passes per file.

Runs only inside the recogniser's ProcessPoolExecutor (`init_worker` is its initializer): the
decoding is CPU-bound C code that would stall the event loop. Each worker holds

* one grammar decoder with one JSGF search per menu (`phrases.jsgf`), and
* one open-vocabulary decoder with the model's en-us.lm.bin, for the transcript.

Both restart cepstral mean normalisation from the model's prior for every file, so the answer
for a recording does not depend on which calls that worker decoded before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pocketsphinx import Decoder, get_model_path

from speech.audio import AudioError, read_model_audio
from speech.phrases import MenuPhrases, choose, jsgf


@dataclass(frozen=True, slots=True)
class Decoded:
    intent: str | None
    phrase: str | None
    transcript: str
    problem: str | None = None  # why the file could not be decoded (the parent logs it)


@dataclass(slots=True)
class _Worker:
    grammar: Decoder
    open_vocabulary: Decoder
    cmn_prior: str
    menus: dict[str, MenuPhrases]
    searches: dict[str, str]  # menu -> the grammar decoder's search name


_worker: _Worker | None = None


def model_file(*parts: str) -> str:
    return os.path.join(get_model_path(), "en-us", *parts)


def init_worker(menus: dict[str, MenuPhrases]) -> None:
    """Pool initializer: build both decoders and every menu's grammar search."""
    global _worker
    common = {"hmm": model_file("en-us"), "dict": model_file("cmudict-en-us.dict")}
    # maxhmmpf 2000 (default 30000): half the CPU, the same answers on bench/speech_accuracy.py
    open_vocabulary = Decoder(
        **common, lm=model_file("en-us.lm.bin"), maxhmmpf=2000, loglevel="FATAL"
    )
    searches = {menu: f"menu{n}" for n, menu in enumerate(menus)}
    grammar = Decoder(**common, lm=None, loglevel="FATAL")
    for menu, name in searches.items():
        grammar.add_jsgf_string(name, jsgf(menus[menu]))
    _worker = _Worker(grammar, open_vocabulary, open_vocabulary.get_cmn(), menus, searches)


def ping() -> int:
    """Answered once the initializer has run: the pool is ready."""
    return os.getpid()


def decode_file(menu: str, path: str) -> Decoded:
    """Both passes over one recording; a file that cannot be read gives a `problem`."""
    if _worker is None:
        raise RuntimeError("decode_file runs only in a worker set up by init_worker")
    try:
        audio = read_model_audio(Path(path))
    except AudioError as exc:
        return Decoded(None, None, "", problem=str(exc))
    _worker.grammar.activate_search(_worker.searches[menu])
    candidate = _decode(_worker.grammar, audio, _worker.cmn_prior)
    transcript = _decode(_worker.open_vocabulary, audio, _worker.cmn_prior)
    choice = choose(_worker.menus[menu], candidate, transcript) if candidate else None
    if choice is None:
        return Decoded(None, None, transcript)
    return Decoded(choice.intent, choice.phrase, transcript)


def _decode(decoder: Decoder, audio: bytes, cmn_prior: str) -> str:
    decoder.set_cmn(cmn_prior)
    decoder.start_utt()
    decoder.process_raw(audio, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""

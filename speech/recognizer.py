"""Phrase recognition for "say or press" menus, off the event loop.

`PhraseRecognizer.start` checks every phrase against the model's pronunciation dictionary, then
starts a process pool whose initializer builds the decoders once per worker
(`speech.decoding`). `recognise` never raises into the call: a file it cannot read, an unknown
menu, a timeout or a dead pool all give `Heard(None, None, "")` and a log warning, and the
caller presses a key instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from speech import decoding
from speech.phrases import MenuPhrases, normalise, phrase_problems

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Heard:
    intent: str | None  # the option chosen, None = nothing accepted (caller retries / presses)
    phrase: str | None  # the configured phrase that matched
    transcript: str  # what the open-vocabulary pass heard ("" if nothing)


NOTHING = Heard(None, None, "")


class SpeechConfigError(ValueError):
    """Phrases the recogniser cannot use; the message names menu, intent, phrase and word."""


@functools.cache
def dictionary_words() -> frozenset[str]:
    """The words of the model's pronunciation dictionary (alternates like `read(2)` folded)."""
    with open(decoding.model_file("cmudict-en-us.dict"), encoding="utf-8") as lines:
        return frozenset(line.split(maxsplit=1)[0].split("(")[0] for line in lines if line.strip())


def check_phrases(grammars: Mapping[str, Mapping[str, Sequence[str]]]) -> list[str]:
    """menu name -> intent -> phrases. Problems (one readable string each) for words not in the
    model's pronunciation dictionary, empty phrases, a phrase given to two intents of one menu."""
    return phrase_problems(grammars, dictionary_words())


class PhraseRecognizer:
    """Use `await PhraseRecognizer.start(...)`; `await close()` at shutdown."""

    def __init__(self, menus: dict[str, MenuPhrases], workers: int) -> None:
        self._menus = menus
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._restart: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, grammars: Mapping[str, Mapping[str, Sequence[str]]], *, workers: int = 1
    ) -> PhraseRecognizer:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        problems = await asyncio.to_thread(check_phrases, grammars)
        if problems:
            raise SpeechConfigError("speech phrases: " + "; ".join(problems))
        recognizer = cls(normalise(grammars), workers)
        await recognizer._open_pool()
        return recognizer

    async def _open_pool(self) -> None:
        pool = ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded process
            initializer=decoding.init_worker,
            initargs=(self._menus,),
        )
        self._pool = pool
        loop = asyncio.get_running_loop()
        # every worker's decoders are built before the first call needs them
        await asyncio.gather(
            *(loop.run_in_executor(pool, decoding.ping) for _ in range(self._workers))
        )

    async def recognise(self, menu: str, wav_path: Path, *, timeout_s: float = 3.0) -> Heard:
        if menu not in self._menus:
            log.warning("speech: unknown menu %r (known: %s)", menu, sorted(self._menus))
            return NOTHING
        try:
            async with asyncio.timeout(timeout_s):
                decoded = await self._decode(menu, wav_path)
        except TimeoutError:
            log.warning("speech: no answer in %.1f s for %s (menu %r)", timeout_s, wav_path, menu)
            return NOTHING
        except Exception:  # speech only adds an option: fail open to the keypad, loudly
            log.exception("speech: recognising %s (menu %r) failed", wav_path, menu)
            return NOTHING
        if decoded is None:
            return NOTHING
        if decoded.problem is not None:
            log.warning("speech: cannot use the recording: %s", decoded.problem)
            return NOTHING
        return Heard(decoded.intent, decoded.phrase, decoded.transcript)

    async def _decode(self, menu: str, wav_path: Path) -> decoding.Decoded | None:
        """The worker's answer; after the pool broke, once more on a restarted pool."""
        for attempt in (1, 2):
            pool = await self._usable_pool()
            if pool is None:
                log.warning("speech: the recogniser is closed (menu %r, %s)", menu, wav_path)
                return None
            try:
                work = pool.submit(decoding.decode_file, menu, str(wav_path))
            except BrokenProcessPool:  # broken before this call
                log.warning("speech: worker pool broken (attempt %d) on %s", attempt, wav_path)
                self._replace_broken(pool)
                continue
            except RuntimeError:  # shut down by close() meanwhile
                log.warning("speech: the recogniser is closed (menu %r, %s)", menu, wav_path)
                return None
            try:
                return await asyncio.wrap_future(work)
            except BrokenProcessPool:
                log.warning("speech: worker pool broken (attempt %d) on %s", attempt, wav_path)
                self._replace_broken(pool)
        return None

    async def _usable_pool(self) -> ProcessPoolExecutor | None:
        if self._restart is not None:
            # asyncio.wait: a caller timing out neither cancels the restart nor sees its failure
            await asyncio.wait({self._restart})
        return self._pool

    def _replace_broken(self, broken: ProcessPoolExecutor) -> None:
        """Start one restart per broken pool, however many calls saw it break."""
        if self._pool is not broken or (self._restart is not None and not self._restart.done()):
            return
        self._restart = asyncio.get_running_loop().create_task(self._reopen(broken))

    async def _reopen(self, broken: ProcessPoolExecutor) -> None:
        broken.shutdown(wait=False, cancel_futures=True)
        try:
            await self._open_pool()
        except (BrokenProcessPool, OSError):
            log.exception("speech: restarting the worker pool failed")
            self._pool = None

    async def close(self) -> None:
        restart, self._restart = self._restart, None
        if restart is not None:
            restart.cancel()
            await asyncio.gather(restart, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

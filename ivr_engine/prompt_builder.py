"""Build the IVR prompt set from text, reproducibly, in a format Asterisk plays as-is.

Pipeline for every prompt id in ``prompts/prompts.yaml`` (``prompt_texts``):

1. flite speaks the text at the voice's native rate (``prompt_synthesis``), as an asyncio
   subprocess, so building never blocks the event loop.
2. ffmpeg and pydub convert it, in a worker thread (``prompt_conversion``): mono, 16-bit,
   low-passed to the telephone band, resampled to 8,000 Hz, trimmed, faded, normalised to
   -3 dBFS and padded with 50 ms of silence on each side.
3. The samples are written with a fixed 44-byte RIFF/WAVE header and nothing else
   (``prompt_format``), so the same text, voice, flite and ffmpeg give byte-identical files;
   an identical file already there is left untouched.
4. Every file built is checked the way the engine checks prompts at start-up
   (``prompt_checks``).

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
import os
import sys
import tempfile
from collections.abc import Collection
from pathlib import Path

from ivr_engine.domain.errors import ConfigError
from ivr_engine.prompt_checks import check_prompt_file, prompt_duration
from ivr_engine.prompt_conversion import check_ffmpeg, to_asterisk_wav
from ivr_engine.prompt_format import PromptBuildError
from ivr_engine.prompt_synthesis import synthesize
from ivr_engine.prompt_texts import load_prompt_texts


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
    ffmpeg: str = "ffmpeg",
) -> list[Path]:
    """Synthesise every prompt (or just ``only``) to ``out_dir/<language>/ivr-engine/<id>.wav``.

    Returns the files, in prompt-file order. Same input -> byte-identical files. An ffmpeg
    that is missing or does not run is one error before any prompt is spoken.
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
    await asyncio.to_thread(check_ffmpeg, ffmpeg)
    limit = asyncio.Semaphore(max(1, concurrency))

    async def build_one(prompt_id: str) -> Path:
        async with limit:
            text = prompt_set.prompts[prompt_id]
            try:
                raw = await synthesize(text, prompt_set.voice, flite=flite)
                data = await asyncio.to_thread(to_asterisk_wav, raw, ffmpeg)
            except PromptBuildError as exc:
                raise _PromptFailed(prompt_id, str(exc)) from exc
            target = prompt_set.path_for(Path(out_dir), prompt_id)
            await asyncio.to_thread(_write_if_changed, target, data)
            return target

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(build_one(i)) for i in ids]
    except ExceptionGroup as failed:
        # Report plain errors (as the CLI expects), all of them when they are build errors.
        errors = failed.exceptions
        if all(isinstance(e, _PromptFailed) for e in errors):
            failures = [e for e in errors if isinstance(e, _PromptFailed)]
            raise PromptBuildError(_failures_text(prompt_set.source, failures)) from errors[0]
        raise errors[0] from None
    return [t.result() for t in tasks]


class _PromptFailed(PromptBuildError):
    def __init__(self, prompt_id: str, why: str) -> None:
        super().__init__(f"prompts.{prompt_id}: {why}")
        self.prompt_id, self.why = prompt_id, why


def _failures_text(source: Path, failures: list[_PromptFailed]) -> str:
    """One line per distinct problem, naming the file and the first key it stopped (a
    missing flite stops every prompt: said once, not once per prompt)."""
    by_why: dict[str, list[str]] = {}
    for failure in failures:
        by_why.setdefault(failure.why, []).append(failure.prompt_id)
    lines = []
    for why, prompt_ids in by_why.items():
        more = f" (and {len(prompt_ids) - 1} more)" if len(prompt_ids) > 1 else ""
        lines.append(f"{source}: prompts.{prompt_ids[0]}{more}: {why}")
    return "\n".join(lines)


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
    return report_build(paths, args.out_dir)


def report_build(paths: Collection[Path], out_dir: Path) -> int:
    """Print the table (id, seconds, bytes), check every file the way the engine does at
    start-up; the exit code (1 if a file fails a check). Shared by both commands."""
    print(_summary(paths))
    bad = {p: check_prompt_file(p) for p in paths}
    for p, problems in bad.items():
        for problem in problems:
            print(f"error: {p}: {problem}", file=sys.stderr)
    if any(bad.values()):
        return 1
    print(f"built {len(paths)} prompt file(s) under {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

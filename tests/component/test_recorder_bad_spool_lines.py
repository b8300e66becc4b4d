"""A damaged spool (a crash's garbage, a line that parses but is not a call) costs only
its own lines, moved to ``calls.rejected.jsonl``: the writer task lives on, the spooled
calls around them and every later call are written (real SQLite). Before, one such line
ended the task at start-up, silently: every call after it was lost, and ``close()``
re-raised before spooling what it held."""

from __future__ import annotations

from pathlib import Path

from ivr_engine.flows.call_record import to_write
from ivr_engine.flows.recorder import REJECTED_FILE, SPOOL_FILE
from ivr_engine.flows.spool_lines import write_to_json
from ivr_engine.timeline import FastCallWriter
from tests.component.recorder_support import Switchable, event_ids, record, recorder, until

GOOD = record(call_id="spooled-good")


def spooled(call_id: str, old: str, new: str) -> bytes:
    """A spool line of a call, with ``old`` replaced by ``new``."""
    line = write_to_json(to_write(record(call_id=call_id)))
    assert old in line
    return line.replace(old, new).encode()


BAD_LINES = [
    b'{"half a line written by a crash \xff',  # not UTF-8
    spooled("list-data", '"data":{', '"data":[1,{'),  # parses; its data is not an object
    spooled("surrogate", '"menu":"main"', '"menu":"\\ud800"'),  # no database takes it
    spooled("bad-time", '"occurred_at":"', '"occurred_at":"x'),
    b"[1, 2, 3]",
]


def damaged_spool(spool_dir: Path) -> None:
    spool_dir.mkdir()
    good = write_to_json(to_write(GOOD)).encode()
    (spool_dir / SPOOL_FILE).write_bytes(b"\n".join([BAD_LINES[0], good, *BAD_LINES[1:]]) + b"\n")


async def test_bad_spool_lines_are_rejected_alone_and_later_calls_are_written(
    sqlite_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    damaged_spool(spool_dir)
    real = FastCallWriter(sqlite_url)
    rec = recorder(Switchable(real), spool_dir)
    await rec.start()
    rec.submit(record(call_id="later"))
    expected = ["voice:later:ivr", "voice:spooled-good:ivr"]

    async def written() -> bool:
        return await event_ids(sqlite_url) == expected

    try:
        await until(written)
        assert rec._task is not None and not rec._task.done()
    finally:
        await rec.close(grace_s=1)
        await real.close()
    rejected = (spool_dir / REJECTED_FILE).read_bytes().split(b"\n")
    assert rejected == [*BAD_LINES, b""]  # kept as they were, one per line


async def test_an_unexpected_error_in_a_write_does_not_end_the_recorder(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The call that met the error is kept on disk (spooled, or rejected once it fails
    again on its own) and the recorder goes on writing the next calls."""
    spool_dir = tmp_path / "spool"
    real = FastCallWriter(sqlite_url)
    writer = Switchable(real)
    rec = recorder(writer, spool_dir)
    await rec.start()
    writer.fail = RuntimeError("a bug, not a database error")
    rec.submit(record("+15550000001", call_id="first"))

    def on_disk() -> bool:
        files = [spool_dir / n for n in (SPOOL_FILE, REJECTED_FILE)]
        return any(f.exists() and b"voice:first~" in f.read_bytes() for f in files)

    async def kept() -> bool:
        return on_disk()

    async def second() -> bool:
        return "voice:second:ivr" in await event_ids(sqlite_url)

    try:
        await until(kept)
        writer.fail = None
        rec.submit(record("+15550000002", call_id="second"))
        await until(second)
        assert rec._task is not None and not rec._task.done()
    finally:
        await rec.close(grace_s=1)
        await real.close()
    assert on_disk() or "voice:first:ivr" in await event_ids(sqlite_url)

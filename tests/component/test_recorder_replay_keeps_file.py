"""A replay that cannot write its calls (database down) and cannot spool them again (the
spool cannot be written) leaves them in the replay file on disk. Before, it deleted the
replay file anyway: the calls were then only in memory, lost to a SIGKILL, an OOM kill or
a power cut (real SQLite)."""

from __future__ import annotations

from pathlib import Path

from ivr_engine.flows.call_record import to_write
from ivr_engine.flows.recorder import SPOOL_FILE
from ivr_engine.flows.spool_files import REPLAY_FILE
from ivr_engine.flows.spool_lines import write_to_json
from ivr_engine.timeline import FastCallWriter
from tests.component.recorder_support import DOWN, Switchable, event_ids, record, recorder


def calls_on_disk(spool_dir: Path) -> int:
    replay = spool_dir / REPLAY_FILE
    return len(replay.read_bytes().splitlines()) if replay.exists() else 0


async def test_calls_the_replay_cannot_spool_again_stay_in_the_replay_file(
    sqlite_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    lines = [write_to_json(to_write(record(call_id=f"c{n}"))) for n in range(5)]
    (spool_dir / REPLAY_FILE).write_text("".join(f"{t}\n" for t in lines))  # a crashed replay's
    # the spool cannot be written (as on a full disk): a link to a directory that is gone
    (spool_dir / SPOOL_FILE).symlink_to(tmp_path / "gone" / SPOOL_FILE)
    real = FastCallWriter(sqlite_url)
    writer = Switchable(real)
    writer.fail = DOWN
    rec = recorder(writer, spool_dir)
    try:
        assert await rec.replay_spool() == 0
        assert calls_on_disk(spool_dir) == 5
        (spool_dir / SPOOL_FILE).unlink()
        writer.fail = None
        assert await rec.replay_spool() == 5
    finally:
        await rec.close(grace_s=1)
        await real.close()
    assert await event_ids(sqlite_url) == [f"voice:c{n}:ivr" for n in range(5)]
    assert calls_on_disk(spool_dir) == 0

"""What making the call spool durable costs: each spool step with its ``fsync``s, and with
``os.fsync`` made a no-op (the code before them), alternating round by round so machine
noise hits both alike.

    .venv/bin/python bench/spool_fsync.py [--dir data/spool-bench] [--rounds 300]

``--dir`` must be on the disk the spool lives on (not tmpfs: there fsync costs nothing).
Steps: one call appended to the spool, creating it, then again (one call per append: a
call ending while the database is down); a batch of 256 calls appended; taking the spool
(256 calls appended, then copied onto an existing replay file); moving the replay offset
(once per chunk of ``max_batch`` = 256 calls). Reports the median and p95 wall time of each
step, in microseconds. Calls are only spooled while the database is down, and a replay
writes each chunk to the database (itself a commit with an fsync).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr_engine.flows.call_record import to_write
from ivr_engine.flows.spool_files import (
    REPLAY_FILE,
    SPOOL_FILE,
    append_to_spool,
    replace_file,
    take_spool,
)
from ivr_engine.flows.spool_lines import write_to_json
from ivr_engine.flows.spool_replay import OFFSET_FILE
from tests.component.recorder_support import record


def line() -> bytes:
    return (write_to_json(to_write(record("+15550001"))) + "\n").encode()


def steps(directory: Path) -> dict[str, Callable[[], object]]:
    spool = directory / SPOOL_FILE
    one = line()
    batch = b"".join(line() for _ in range(256))

    def take() -> None:
        append_to_spool(spool, batch)
        (directory / REPLAY_FILE).write_bytes(one)  # a replay file is there: copied onto it
        take_spool(spool)
        (directory / REPLAY_FILE).unlink()

    return {
        "append 1 call, new spool file": lambda: append_to_spool(spool, one),
        "append 1 call": lambda: append_to_spool(spool, one),
        "append 256 calls": lambda: append_to_spool(spool, batch),
        "append 256 calls + take them onto a replay": take,
        "move the replay offset": lambda: replace_file(directory / OFFSET_FILE, b"123456\n"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("data/spool-bench"))
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    real_fsync = os.fsync
    times: dict[tuple[str, bool], list[float]] = {}
    for round_ in range(args.rounds):
        for synced in (round_ % 2 == 0, round_ % 2 == 1):
            os.fsync = real_fsync if synced else (lambda fd: None)
            directory = args.dir / ("synced" if synced else "unsynced")
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            for name, step in steps(directory).items():
                start = time.perf_counter()
                step()
                times.setdefault((name, synced), []).append(time.perf_counter() - start)
    os.fsync = real_fsync
    shutil.rmtree(args.dir, ignore_errors=True)
    print(f"{args.rounds} rounds in {args.dir} (median / p95, microseconds)")
    for name in steps(args.dir):
        cells = []
        for synced in (False, True):
            values = sorted(times[(name, synced)])
            p95 = values[int(len(values) * 0.95)]
            cells.append(f"{statistics.median(values) * 1e6:8.0f} / {p95 * 1e6:8.0f}")
        print(f"{name:44s} no fsync {cells[0]}   fsync {cells[1]}")


if __name__ == "__main__":
    main()

"""AMI read path, side by side in one run: chunked framing (``AmiFramer``, what the client
uses) vs the line-at-a-time ``StreamReader.readuntil`` loop it replaced.

    .venv/bin/python bench/ami_parse.py [--events 50000] [--rounds 5]

Both read the same bytes (a realistic mix of call events, CRLF, 15-20 headers each) from an
in-memory ``StreamReader`` fed in 64 KiB pieces, as the socket would deliver them, and build
the same ``AmiEvent`` objects. Reports CPU µs per event (best and median of the rounds) and
the ratio. Pure CPU: no socket, so the numbers isolate the parsing cost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr_engine.telephony.ami.framing import AmiFramer
from ivr_engine.telephony.ami.messages import Header
from ivr_engine.telephony.ami.parsing import build_message, build_plain, parse_header_line

CHUNK = 64 * 1024
LIMIT = 64 * 1024


def call_events(n: int) -> bytes:
    """``n`` events shaped like Asterisk 22's: Newchannel, Newstate, DialBegin, Hangup."""
    common = (
        "Privilege: call,all\r\nSystemName: pbx-1\r\nChannel: PJSIP/trunk-{i:08x}\r\n"
        "ChannelState: 6\r\nChannelStateDesc: Up\r\nCallerIDNum: +4915112{i:06d}\r\n"
        "CallerIDName: Jos\u00e9 Example\r\nConnectedLineNum: <unknown>\r\n"
        "ConnectedLineName: <unknown>\r\nLanguage: en\r\nAccountCode: \r\n"
        "Context: ivr-entry\r\nExten: s\r\nPriority: 1\r\nUniqueid: 1700000000.{i}\r\n"
        "Linkedid: 1700000000.{i}\r\nTimestamp: 1700000000.{i:06d}\r\n"
    )
    names = ["Newchannel", "Newstate", "DialBegin", "Hangup"]
    parts = []
    for i in range(n):
        extra = "Cause: 16\r\nCause-txt: Normal Clearing\r\n" if i % 4 == 3 else ""
        parts.append(f"Event: {names[i % 4]}\r\n{common.format(i=i)}{extra}\r\n")
    return "".join(parts).encode()


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=LIMIT)
    for start in range(0, len(data), CHUNK):
        reader.feed_data(data[start : start + CHUNK])
    reader.feed_eof()
    return reader


async def line_at_a_time(data: bytes) -> int:
    """The replaced loop: one ``readuntil`` (one await) per line."""
    reader, count = reader_of(data), 0
    headers: list[Header] = []
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return count
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line:
            headers.append(parse_header_line(line))
        elif headers:
            build_message(headers)
            count += 1
            headers = []


async def chunked(data: bytes) -> int:
    """The client's loop: one ``read`` per chunk, framed by ``AmiFramer``, plain messages
    kept as their text (``build_plain``), the others built from their headers."""
    reader, count = reader_of(data), 0
    framer = AmiFramer(max_line_bytes=LIMIT, max_message_bytes=4 * 1024 * 1024)
    while data := await reader.read(CHUNK):
        for raw in framer.feed_raw(data):
            build_plain(raw) if isinstance(raw, str) else build_message(raw)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = call_events(args.events)
    timings: dict[str, list[float]] = {"line at a time (readuntil)": [], "chunked (AmiFramer)": []}
    for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
        for name, parse in zip(timings, (line_at_a_time, chunked), strict=True):
            started = time.process_time()
            count = asyncio.run(parse(data))
            timings[name].append((time.process_time() - started) / count * 1e6)
            assert count == args.events, (name, count)
    print(f"{args.events:,} events, {len(data) / args.events:.0f} bytes each, {args.rounds} rounds")
    print("| read path | CPU µs / event (best) | (median) |")
    print("| --- | ---: | ---: |")
    for name, values in timings.items():
        print(f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} |")
    old, new = (statistics.median(v) for v in timings.values())
    print(f"\nline-at-a-time / chunked CPU ratio (medians): {old / new:.2f}x")


if __name__ == "__main__":
    main()

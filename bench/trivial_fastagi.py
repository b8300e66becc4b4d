"""The floor of any FastAGI server: the bench's "trivial" variant (bench/sipp_cpu.py).

    .venv/bin/python bench/trivial_fastagi.py --port 4575

Plain asyncio streams, no database, no personalisation, no logging: per call it reads the
``agi_*`` header block, plays the static menu with ONE ``EXEC Read`` (the same prompts as
the pure-dialplan menu), reads the key with ``GET FULL VARIABLE``, hands the result to the
dialplan with ONE ``EXEC MSet`` and closes: the fewest AGI round trips a menu can take.
On ``agi://.../bare`` it only sends that MSet (no menu): the bench's "bare" variant, a
FastAGI session alone, after which the dialplan plays the menu itself.
Its CPU per call, next to the full engine's and the pure dialplan's in one run, shows how
much of the FastAGI cost is the protocol itself on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

OPTIONS = [
    ("new-service", 1), ("tech-support", 2), ("moving", 3), ("outage", 4), ("cancel", 5),
    ("billing", 6), ("operator", 0),
]  # fmt: skip
MENU = "&".join(
    ["ivr-engine/welcome"]
    + [
        f"ivr-engine/for&ivr-engine/label-{name}&ivr-engine/press&digits/{key}"
        for name, key in OPTIONS
    ]
)
INTENTS = {"1": "new_service", "2": "tech_support", "3": "moving", "4": "outage",
           "5": "cancel", "6": "billing", "0": "operator"}  # fmt: skip
TARGETS = {"billing": "queue:billing", "operator": "queue:general"}


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> str:
    writer.write(line.encode() + b"\n")
    reply = (await reader.readline()).decode()
    if not reply.startswith("200"):
        raise ConnectionError(reply.strip())
    return reply


async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
        bare = False
        while line := (await reader.readline()).strip():  # the agi_* header block
            if line.startswith(b"agi_network_script:"):
                bare = line.endswith(b"bare")
        if bare:
            await command(reader, writer, 'EXEC MSet "IVR_DECISION=bare,IVR_CUSTOMER_ID="')
            writer.close()
            return
        await command(reader, writer, f'EXEC Read "IVR_READ,{MENU},1,,1,5"')
        reply = await command(reader, writer, 'GET FULL VARIABLE "${IVR_READ}"')
        digit = reply.partition("(")[2].rstrip(")\r\n")
        intent = INTENTS.get(digit, "operator")
        target = TARGETS.get(intent, "queue:general")
        await command(
            reader, writer,
            f'EXEC MSet "IVR_OUTCOME=routed,IVR_INTENT={intent},IVR_TARGET={target},'
            'IVR_DECISION=trivial"',
        )  # fmt: skip
    writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(call, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=4575)
    asyncio.run(main(parser.parse_args().port))

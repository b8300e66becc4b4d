"""A simulated Asterisk for demos: dials the engine over a real FastAGI socket.

It sends the ``agi_*`` header block Asterisk 22 sends, answers each command as Asterisk
would, and presses scripted keys, so a person can see what a caller would hear.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from ivr_engine.telephony.agi.channel import read_mset_options


@dataclass
class SimulatedCall:
    caller_id: str
    keys: Sequence[str]  # one entry per Read; "" = the caller stays silent
    hangup_at_read: int | None = None  # the caller hangs up during this Read (1 = the first)
    heard: list[list[str]] = field(default_factory=list)  # prompt files per Read / GET DATA
    variables: dict[str, str] = field(default_factory=dict)
    uniqueid: str | None = None  # the channel's Uniqueid (the call id); random when None
    presentation: int = 0  # agi_callingpres: 0 allowed, 0x20 (32) restricted: number withheld
    played: list[str] = field(default_factory=list)  # Playback files before the next GET DATA


def _headers(call: SimulatedCall, host: str, port: int, script: str) -> bytes:
    uniqueid = call.uniqueid = call.uniqueid or f"sim-{uuid.uuid4().hex[:12]}"
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://{host}:{port}/{script}",
        "agi_channel": f"PJSIP/simulated-{uniqueid}",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.0.0-simulated",
        "agi_callerid": call.caller_id,
        "agi_calleridname": "unknown",
        "agi_callingpres": str(call.presentation),
        "agi_context": "ivr-entry",
        "agi_extension": "s",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "0",
    }
    return "".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n"


def _reply(call: SimulatedCall, command: str, presses: list[str]) -> str:
    """Answer as Asterisk 22 does for the commands the engine sends."""
    parts = shlex.split(command)
    verb = " ".join(parts[:2]).upper()
    if verb == "EXEC READ":
        # Read(variable,prompt&prompt,maxdigits,options,attempts,timeout)
        variable, prompts, max_digits = parts[2].split(",")[:3]
        call.heard.append(prompts.split("&"))
        if call.hangup_at_read == len(call.heard):  # as Asterisk: Read returns, then HANGUP
            call.variables.update({variable: "", "READSTATUS": "HANGUP"})
            return "200 result=0\nHANGUP"
        keys = (presses.pop(0) if presses else "")[: int(max_digits or 255)]
        call.variables[variable] = keys
        call.variables["READSTATUS"] = "OK" if keys else "TIMEOUT"
        return "200 result=0"
    if verb == "EXEC PLAYBACK":  # a lead-in before GET DATA (sensitive reads)
        call.played += parts[2].split("&")
        return "200 result=0"
    if verb == "GET DATA":  # GET DATA file timeout maxdigits: the digits come in the reply
        call.heard.append([*call.played, parts[2]])
        call.played.clear()
        if call.hangup_at_read == len(call.heard):
            return "200 result=-1\nHANGUP"
        keys = (presses.pop(0) if presses else "")[: int(parts[4]) if len(parts) > 4 else 255]
        return f"200 result={keys}" if keys else "200 result= (timeout)"
    if verb == "EXEC MSET":  # MSet(a=1,b=2), escapes read as Asterisk reads them
        call.variables.update(read_mset_options(parts[2]))
        return "200 result=0"
    if verb == "GET FULL":  # GET FULL VARIABLE "${A}|${B}"
        expanded = re.sub(r"\$\{(\w+)\}", lambda m: call.variables.get(m[1], ""), parts[3])
        return f"200 result=1 ({expanded})"
    if verb == "GET VARIABLE":
        value = call.variables.get(parts[2])
        return "200 result=0" if value is None else f"200 result=1 ({value})"
    if verb == "SET VARIABLE":
        call.variables[parts[2]] = parts[3] if len(parts) > 3 else ""
        return "200 result=1"
    if verb == "RECORD FILE":  # a speech menu: the simulated caller says nothing
        return "200 result=0 (timeout) endpos=0"
    return "200 result=0"


async def simulate_call(
    call: SimulatedCall,
    host: str,
    port: int,
    menu: str = "main",
    timeout_s: float = 10.0,
    script: str | None = None,
) -> SimulatedCall:
    """Run one call against a FastAGI server; returns the call with what was heard."""
    presses = list(call.keys)
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(_headers(call, host, port, script or f"ivr?menu={menu}"))
            await writer.drain()
            while line := await reader.readline():
                command = line.decode().strip()
                writer.write((_reply(call, command, presses) + "\n").encode())
                await writer.drain()
        finally:
            writer.close()
    return call

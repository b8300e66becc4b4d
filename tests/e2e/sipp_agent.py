"""SIPp agents for the end-to-end tests: a UAS on the agent's SIP port (PJSIP endpoints
``agent-1`` -> 127.0.0.1:5071, ``agent-2`` -> 127.0.0.1:5072 in tests/e2e/asterisk/pjsip.conf).

* ``answer``: INVITE -> 180 -> (``ring_ms``) -> 200 OK with SDP -> ACK -> talks until the
  caller hangs up (Asterisk's BYE on the agent leg -> 200 OK).
* ``no_answer``: INVITE -> 180, rings until Asterisk gives up and sends CANCEL -> 200 (for the
  CANCEL) -> 487 -> ACK.

``SippAgent`` runs SIPp in the background for up to ``calls`` calls; ``stop()`` ends it and
returns what it saw (SIPp's message trace), for assertions and diagnostics.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Mode = Literal["answer", "no_answer"]

_HEADER = [
    '<?xml version="1.0" encoding="ISO-8859-1" ?>',
    '<!DOCTYPE scenario SYSTEM "sipp.dtd">',
    '<scenario name="ivr-engine e2e agent">',
]
_INVITE = ['  <recv request="INVITE" crlf="true"/>']


def _reply(status: str, *, sdp: bool = False, contact: bool = True) -> list[str]:
    lines = [
        "  <send>",
        "    <![CDATA[",
        f"      SIP/2.0 {status}",
        "      [last_Via:]",
        "      [last_From:]",
        "      [last_To:];tag=[pid]SIPpAgent[call_number]",
        "      [last_Call-ID:]",
        "      [last_CSeq:]",
    ]
    if contact:
        lines.append("      Contact: <sip:agent@[local_ip]:[local_port];transport=[transport]>")
    if sdp:
        lines += [
            "      Content-Type: application/sdp",
            "      Content-Length: [len]",
            "",
            "      v=0",
            "      o=agent 53655765 2353687637 IN IP[local_ip_type] [local_ip]",
            "      s=-",
            "      c=IN IP[media_ip_type] [media_ip]",
            "      t=0 0",
            "      m=audio [media_port] RTP/AVP 0 101",
            "      a=rtpmap:0 PCMU/8000",
            "      a=rtpmap:101 telephone-event/8000",
            "      a=fmtp:101 0-16",
        ]
    else:
        lines.append("      Content-Length: 0")
    lines += ["    ]]>", "  </send>"]
    return lines


def scenario_xml(mode: Mode, *, ring_ms: int = 500) -> str:
    body = [*_HEADER, *_INVITE, *_reply("180 Ringing")]
    if mode == "answer":
        body += [
            f'  <pause milliseconds="{ring_ms}"/>',
            *_reply("200 OK", sdp=True),
            '  <recv request="ACK" crlf="true"/>',
            # Talks until the caller hangs up: Asterisk then sends BYE on the agent leg.
            '  <recv request="BYE"/>',
            *_reply("200 OK", contact=False),
        ]
    else:
        body += [
            '  <recv request="CANCEL"/>',
            *_reply("200 OK", contact=False),
            *_reply("487 Request Terminated", contact=False),
            '  <recv request="ACK"/>',
        ]
    body += ['  <label id="end"/>', "</scenario>", ""]
    return "\n".join(body)


@dataclass
class SippAgent:
    """One agent phone: SIPp as UAS on 127.0.0.1:``port``."""

    port: int
    mode: Mode = "answer"
    calls: int = 10
    ring_ms: int = 500
    _proc: asyncio.subprocess.Process | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None
    messages: str = ""
    errors: str = ""
    invites: int = field(default=0)

    async def start(self) -> SippAgent:
        self._dir = tempfile.TemporaryDirectory(prefix=f"ivr-agent-{self.port}-")
        work = Path(self._dir.name)
        scenario = work / "agent.xml"
        scenario.write_text(scenario_xml(self.mode, ring_ms=self.ring_ms), "ascii")
        self._proc = await asyncio.create_subprocess_exec(
            *("sipp", "-sf", str(scenario), "-p", str(self.port), "-i", "127.0.0.1"),
            *("-mi", "127.0.0.1", "-mp", str(40000 + (self.port % 100) * 8)),
            *("-m", str(self.calls), "-nostdin", "-trace_msg", "-trace_err"),
            *("-message_file", str(work / "messages.log"), "-error_file", str(work / "err.log")),
            cwd=work,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,  # errors go to -error_file (err.log)
        )
        await asyncio.sleep(0.3)  # bound to its port
        if self._proc.returncode is not None:
            raise RuntimeError(f"SIPp agent on {self.port} exited at once")
        return self

    async def stop(self) -> str:
        """Stop SIPp; returns (and keeps) its message trace."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 5)
            if self._proc.returncode is None:
                self._proc.kill()
                await self._proc.wait()
        if self._dir is not None:
            work = Path(self._dir.name)
            self.messages = _read(work / "messages.log")
            self.errors = _read(work / "err.log")
            self.invites = self.messages.count("INVITE sip:")
            self._dir.cleanup()
            self._dir = None
        return self.messages


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""

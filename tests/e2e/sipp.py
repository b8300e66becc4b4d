"""SIPp callers for the end-to-end tests.

``write_scenario`` writes a SIPp UAC scenario for one call: INVITE (SDP offering PCMU/8000 and
telephone-event/8000 on payload 101) from a caller id to a destination, ACK, then a list of
actions, then either waits for Asterisk's BYE (and answers it 200 OK) or, with
``hangup_after_ms``, waits that long and sends BYE itself.

Actions:

* ``("wait", ms)``: pause. If Asterisk hangs up meanwhile, its BYE is answered and the call
  ends normally (``SippResult.hung_up_by == "asterisk"``), so a test never fails just because
  a wait outlasted the call.
* ``("dtmf", "2")``: press keys as RFC 2833/4733 telephone events, replaying Debian
  sip-tester's captures ``/usr/share/sip-tester/dtmf_2833_<d>.pcap`` (``*`` -> ``star``,
  ``#`` -> ``pound``). Each capture lasts 140 ms and SIPp plays it in the background;
  consecutive keys (``("dtmf", "123#")``) are spaced ``DTMF_GAP_MS`` apart. Each press is
  replayed from a renumbered copy (``numbered_dtmf_pcap``): as shipped, the captures share
  one SSRC and sequence space, so "2" then "1" went backwards and Asterisk dropped the "1".

* ``("audio", path)``: play a capture of speech (``speech_pcap`` makes one from a WAV) in the
  background, as the caller talking; the scenario goes on at once (follow it with a wait).

``run_sipp_call`` runs SIPp for one call on a free local port (calls may run concurrently) and
returns a ``SippResult`` (exit code, output, SIPp's error log and message trace). The ports
are outside the kernel's ephemeral range, and a call whose SIPp found a port taken (it exits
before its INVITE: no call, no FastAGI session) is placed again on other ports.
"""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import io
import itertools
import os
import socket
import struct
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import quoteattr

ASTERISK_SIP = "127.0.0.1:5060"
LOCAL_IP = "127.0.0.1"
DTMF_PCAP_DIR = Path("/usr/share/sip-tester")
#: Pause after each key: the capture lasts 140 ms, plus an inter-digit gap.
DTMF_GAP_MS = 250

Action = tuple[Literal["wait"], int] | tuple[Literal["dtmf"], str] | tuple[Literal["audio"], Path]

_DTMF_NAMES = {"*": "star", "#": "pound", **{str(d): str(d) for d in range(10)}}


@dataclass(frozen=True)
class SippResult:
    """Outcome of one SIPp call."""

    returncode: int | None  # None: killed after the timeout
    stdout: str
    stderr: str
    errors: str  # SIPp's -trace_err log (unexpected messages, failed calls)
    messages: str  # SIPp's -trace_msg log (every SIP message sent and received)
    scenario: str  # the scenario XML
    timed_out: bool = False

    @property
    def hung_up_by(self) -> str | None:
        """``"caller"`` (SIPp sent BYE), ``"asterisk"`` (SIPp received it) or None."""
        for block in self.messages.split("-----------------------------------------------"):
            if "\nBYE sip:" in block:
                return "caller" if "message sent" in block else "asterisk"
        return None

    @property
    def ok(self) -> bool:
        """SIPp exits 0 when every call (here: the one call) succeeded."""
        return self.returncode == 0 and not self.timed_out

    @property
    def could_not_bind(self) -> bool:
        """SIPp exited before the call: one of its ports (SIP, audio or video RTP) was taken
        (``Unable to bind main socket`` / ``... audio RTP socket``, errno 98)."""
        return (
            self.returncode not in (0, None)
            and "Unable to bind" in self.stderr + self.errors
            and "message sent" not in self.messages
        )

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        return (
            f"sipp returncode={self.returncode} timed_out={self.timed_out}\n"
            f"--- errors\n{self.errors}\n--- stderr\n{self.stderr}\n"
            f"--- stdout (tail)\n{self.stdout[-3000:]}\n--- messages (tail)\n"
            f"{self.messages[-6000:]}"
        )


def dtmf_pcap(key: str) -> Path:
    """The capture that plays one key."""
    try:
        return DTMF_PCAP_DIR / f"dtmf_2833_{_DTMF_NAMES[key]}.pcap"
    except KeyError:
        raise ValueError(f"no DTMF capture for key {key!r}") from None


_PCAP_HEADER = 24
_RECORD_HEADER = 16
_RTP_AT = 14 + 20 + 8  # Ethernet + IPv4 + UDP headers in Debian's captures
_UDP_CHECKSUM_AT = 14 + 20 + 6


def numbered_dtmf_pcap(key: str, press: int, directory: Path) -> Path:
    """A copy of the key's capture as the ``press``-th key of a call (0, 1, ...).

    Every Debian capture carries the same SSRC, and their RTP sequence numbers and
    timestamps are those of one recording session: replayed as-is, "2" then "1" goes
    backwards in sequence and Asterisk drops the "1" as a late packet, and a repeated key
    repeats the previous event's timestamp (a retransmission). So each press gets its own
    increasing sequence numbers and a new event timestamp (UDP checksum zeroed: optional
    in IPv4, and the payload changed).
    """
    data = bytearray(dtmf_pcap(key).read_bytes())
    offset = _PCAP_HEADER
    first_seq: int | None = None
    while offset < len(data):
        length = int.from_bytes(data[offset + 8 : offset + 12], "little")
        packet = offset + _RECORD_HEADER
        rtp = packet + _RTP_AT
        seq = int.from_bytes(data[rtp + 2 : rtp + 4], "big")
        first_seq = seq if first_seq is None else first_seq
        new_seq = (20_000 + press * 32 + (seq - first_seq)) % 65_536
        data[rtp + 2 : rtp + 4] = new_seq.to_bytes(2, "big")
        data[rtp + 4 : rtp + 8] = (160_000 + press * 16_000).to_bytes(4, "big")
        data[packet + _UDP_CHECKSUM_AT : packet + _UDP_CHECKSUM_AT + 2] = b"\0\0"
        offset = packet + length
    path = directory / f"dtmf-{press:03d}-{_DTMF_NAMES[key]}.pcap"
    path.write_bytes(bytes(data))
    return path


def speech_pcap(wav: bytes, path: Path) -> Path:
    """A capture SIPp can replay as the caller speaking: the WAV's audio (8 kHz mono 16-bit
    PCM) as G.711 mu-law RTP (payload 0, the SDP's PCMU), 160 samples per 20 ms packet, in
    an Ethernet/IPv4/UDP pcap like Debian's DTMF captures. Its own SSRC, sequence numbers
    and timestamps (those of the DTMF captures start at 20,000 and 160,000)."""
    with wave.open(io.BytesIO(wav)) as audio:
        if (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) != (8000, 1, 2):
            raise ValueError("speech_pcap needs 8 kHz mono 16-bit PCM")
        pcm = audio.readframes(audio.getnframes())
    ulaw = audioop.lin2ulaw(pcm, 2)
    ulaw += b"\xff" * (-len(ulaw) % 160)  # mu-law silence to a whole packet
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for n in range(len(ulaw) // 160):
        rtp = struct.pack("!BBHII", 0x80, 0, (40_000 + n) % 65_536, 400_000 + 160 * n, 0x5EED)
        udp_payload = rtp + ulaw[160 * n : 160 * (n + 1)]
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(udp_payload), 0) + udp_payload
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
            bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
        )  # fmt: skip
        frame = b"\0" * 12 + b"\x08\x00" + ip + udp
        seconds, micros = divmod(n * 20_000, 1_000_000)
        out += struct.pack("<IIII", 1_700_000_000 + seconds, micros, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))
    return path


def _wait_xml(ms: int, label: str) -> list[str]:
    """A pause that also accepts Asterisk's BYE (then jumps to answer it)."""
    return [
        f'  <recv request="BYE" timeout="{ms}" ontimeout="{label}" next="got_bye"/>',
        f'  <label id="{label}"/>',
    ]


def _actions_xml(actions: Sequence[Action], pcap_dir: Path | None) -> list[str]:
    lines: list[str] = []
    presses = itertools.count()
    labels = itertools.count(1)
    last_was_key = False
    for action in actions:
        kind, value = action
        if kind == "wait":
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"wait needs milliseconds >= 0, got {value!r}")
            if value:
                lines += _wait_xml(value, f"wait{next(labels)}")
            last_was_key = False
        elif kind == "dtmf":
            if not isinstance(value, str) or not value:
                raise ValueError(f"dtmf needs one or more keys, got {value!r}")
            for key in value:
                press = next(presses)
                pcap = (
                    dtmf_pcap(key) if pcap_dir is None else numbered_dtmf_pcap(key, press, pcap_dir)
                )
                if last_was_key:
                    lines += _wait_xml(DTMF_GAP_MS, f"wait{next(labels)}")
                lines += [
                    "  <nop>",
                    "    <action>",
                    f"      <exec play_pcap_audio={quoteattr(str(pcap))}/>",
                    "    </action>",
                    "  </nop>",
                ]
                last_was_key = True
        elif kind == "audio":
            if not isinstance(value, Path) or not value.is_file():
                raise ValueError(f"audio needs a capture file, got {value!r}")
            lines += [
                "  <nop>",
                "    <action>",
                f"      <exec play_pcap_audio={quoteattr(str(value))}/>",
                "    </action>",
                "  </nop>",
            ]
            last_was_key = False
        else:
            raise ValueError(f"unknown action {action!r}")
    return lines


def scenario_xml(
    *,
    caller_id: str,
    destination: str,
    actions: Sequence[Action] = (),
    hangup_after_ms: int | None = None,
    pcap_dir: Path | None = None,
) -> str:
    """The SIPp scenario for one call (see the module docstring); with ``pcap_dir``, each
    key press plays its own renumbered capture written there (``numbered_dtmf_pcap``)."""
    for value, what in ((caller_id, "caller_id"), (destination, "destination")):
        if not value or any(c in value for c in '<>@;: \r\n"&'):
            raise ValueError(f"{what} must be a plain SIP user part, got {value!r}")
    caller = f"sip:{caller_id}@[local_ip]:[local_port]"
    callee = f"sip:{destination}@[remote_ip]:[remote_port]"
    from_hdr = f"From: <{caller}>;tag=[pid]SIPpTag00[call_number]"
    body = [
        '<?xml version="1.0" encoding="ISO-8859-1" ?>',
        '<!DOCTYPE scenario SYSTEM "sipp.dtd">',
        '<scenario name="ivr-engine e2e caller">',
        '  <send retrans="500">',
        "    <![CDATA[",
        f"      INVITE {callee} SIP/2.0",
        "      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
        f"      {from_hdr}",
        f"      To: <{callee}>",
        "      Call-ID: [call_id]",
        "      CSeq: 1 INVITE",
        f"      Contact: <{caller}>",
        "      Max-Forwards: 70",
        "      Subject: ivr-engine e2e",
        "      Content-Type: application/sdp",
        "      Content-Length: [len]",
        "",
        "      v=0",
        "      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]",
        "      s=-",
        "      c=IN IP[media_ip_type] [media_ip]",
        "      t=0 0",
        "      m=audio [media_port] RTP/AVP 0 101",
        "      a=rtpmap:0 PCMU/8000",
        "      a=rtpmap:101 telephone-event/8000",
        "      a=fmtp:101 0-16",
        "      a=ptime:20",
        "      a=sendrecv",
        "    ]]>",
        "  </send>",
        '  <recv response="100" optional="true"/>',
        '  <recv response="180" optional="true"/>',
        '  <recv response="183" optional="true"/>',
        '  <recv response="200" rtd="true"/>',
        "  <send>",
        "    <![CDATA[",
        f"      ACK {callee} SIP/2.0",
        "      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
        f"      {from_hdr}",
        f"      To: <{callee}>[peer_tag_param]",
        "      Call-ID: [call_id]",
        "      CSeq: 1 ACK",
        f"      Contact: <{caller}>",
        "      Max-Forwards: 70",
        "      Content-Length: 0",
        "    ]]>",
        "  </send>",
    ]
    body += _actions_xml(actions, pcap_dir)
    if hangup_after_ms is None:
        # Asterisk ends the call.
        body.append('  <recv request="BYE"/>')
    else:
        # The caller hangs up, unless Asterisk does first.
        body += [
            *(_wait_xml(hangup_after_ms, "caller_bye") if hangup_after_ms > 0 else []),
            '  <send retrans="500">',
            "    <![CDATA[",
            f"      BYE {callee} SIP/2.0",
            "      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
            f"      {from_hdr}",
            f"      To: <{callee}>[peer_tag_param]",
            "      Call-ID: [call_id]",
            "      CSeq: 2 BYE",
            f"      Contact: <{caller}>",
            "      Max-Forwards: 70",
            "      Content-Length: 0",
            "    ]]>",
            "  </send>",
            '  <recv response="200" crlf="true" next="end"/>',
        ]
    body += [
        '  <label id="got_bye"/>',
        "  <send>",
        "    <![CDATA[",
        "      SIP/2.0 200 OK",
        "      [last_Via:]",
        "      [last_From:]",
        "      [last_To:]",
        "      [last_Call-ID:]",
        "      [last_CSeq:]",
        f"      Contact: <{caller}>",
        "      Content-Length: 0",
        "    ]]>",
        "  </send>",
        '  <label id="end"/>',
    ]
    body += [
        '  <ResponseTimeRepartition value="10, 20, 30, 40, 50, 100, 150, 200"/>',
        '  <CallLengthRepartition value="10, 50, 100, 500, 1000, 5000, 10000"/>',
        "</scenario>",
        "",
    ]
    return "\n".join(body)


def write_scenario(
    path: Path,
    *,
    caller_id: str = "+15551230001",
    destination: str = "1000",
    actions: Sequence[Action] = (),
    hangup_after_ms: int | None = None,
) -> Path:
    """Write the scenario for one call to ``path`` and return it."""
    path.write_text(
        scenario_xml(
            caller_id=caller_id,
            destination=destination,
            actions=actions,
            hangup_after_ms=hangup_after_ms,
            pcap_dir=path.parent,
        ),
        encoding="ascii",
    )
    return path


# Ports for SIPp, away from Asterisk's (5060, RTP 20000-20999), the agents' (5071-5073), the
# bench's SIPp (5090, 40000) and Linux's ephemeral range (32768-60999 by default), from which
# any process's UDP socket (a DNS query) may take a port between our check and SIPp's bind.
# Spread by process id so parallel test sessions rarely even try the same port.
SIP_PORT_RANGE = range(15100, 17100)
MEDIA_PORT_RANGE = range(21000, 32760)  # each call: 4 ports from a multiple of 8
_SIP_PORTS = itertools.cycle(range(SIP_PORT_RANGE.start + os.getpid() % 500 * 4, 17100, 4))
_MEDIA_PORTS = itertools.cycle(range(MEDIA_PORT_RANGE.start + os.getpid() % 500 * 8, 32760, 8))
#: Attempts of a call whose SIPp could not bind its ports (taken after ``_free_port`` looked).
BIND_ATTEMPTS = 5


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOCAL_IP, port))
        except OSError:
            return False
    return True


def _free_port(ports: itertools.cycle[int], span: int) -> int:
    """A port p with p .. p+span-1 free on UDP (SIPp binds media p and p+2 for video)."""
    for _ in range(2000):
        port = next(ports)
        if all(_udp_free(p) for p in range(port, port + span)):
            return port
    raise RuntimeError("no free local UDP port for SIPp")


async def run_sipp_call(
    actions: Sequence[Action] = (),
    *,
    caller_id: str = "+15551230001",
    destination: str = "1000",
    hangup_after_ms: int | None = None,
    target: str = ASTERISK_SIP,
    timeout_s: float = 60.0,
    workdir: Path | None = None,
) -> SippResult:
    """Place one call with SIPp and wait for it to end (at most ``timeout_s``).

    A port ``_free_port`` found free can be taken by another process before SIPp binds it;
    SIPp then exits at once, before sending anything (``could_not_bind``). Such a call never
    started, so it is placed again on other ports (up to ``BIND_ATTEMPTS`` times)."""
    own_dir = None
    if workdir is None:
        own_dir = tempfile.TemporaryDirectory(prefix="ivr-sipp-")
        workdir = Path(own_dir.name)
    try:
        for _ in range(BIND_ATTEMPTS):
            sip_port = _free_port(_SIP_PORTS, 1)
            media_port = _free_port(_MEDIA_PORTS, 4)
            scenario = write_scenario(
                workdir / f"call-{sip_port}.xml",
                caller_id=caller_id,
                destination=destination,
                actions=actions,
                hangup_after_ms=hangup_after_ms,
            )
            result = await _run_sipp(
                scenario, scenario.read_text(), sip_port, media_port, target, timeout_s
            )
            if not result.could_not_bind:
                break
        return result
    finally:
        if own_dir is not None:
            own_dir.cleanup()


async def _run_sipp(
    scenario: Path,
    scenario_text: str,
    sip_port: int,
    media_port: int,
    target: str,
    timeout_s: float,
) -> SippResult:
    workdir = scenario.parent
    error_file = workdir / f"call-{sip_port}-errors.log"
    message_file = workdir / f"call-{sip_port}-messages.log"
    cmd = [
        "sipp",
        target,
        "-sf",
        str(scenario),
        "-m",
        "1",
        "-l",
        "1",
        "-i",
        LOCAL_IP,
        "-mi",
        LOCAL_IP,
        "-p",
        str(sip_port),
        "-mp",
        str(media_port),
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(error_file),
        "-trace_msg",
        "-message_file",
        str(message_file),
        "-timeout",
        f"{max(1, int(timeout_s))}s",
        "-timeout_error",
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    timed_out = False
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s + 10)
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        # A test that cancels a call still running (e.g. across an Asterisk restart)
        # must not leave SIPp running, nor its pipes to be collected after the loop.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.communicate())
        raise
    return SippResult(
        returncode=None if timed_out else proc.returncode,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        errors=_read(error_file),
        messages=_read(message_file),
        scenario=scenario_text,
        timed_out=timed_out,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""

"""The SIPp callers' local ports (``sipp.run_sipp_call``).

SIPp exits at once, before sending its INVITE, when one of its ports is taken (``Unable to bind
... errno = 98``): no call, so no FastAGI session. ``_free_port`` checks a port before SIPp
starts, and another process can take it meanwhile; an ephemeral UDP port (any process's DNS
query) is most likely to, so the callers' ports stay out of the kernel's ephemeral range,
and a call whose SIPp could not bind is placed again on other ports.
"""

from __future__ import annotations

import itertools
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sipp
from sipp import LOCAL_IP, run_sipp_call

if TYPE_CHECKING:
    from conftest import Testbed  # the `asterisk` fixture's type (annotations only)


def _ephemeral_ports() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


def test_caller_ports_are_outside_the_ephemeral_range() -> None:
    ephemeral = _ephemeral_ports()
    # Every port the pickers hand out (and the 3 above a media port SIPp may bind), a full
    # turn of each cycle; a taken port is skipped, which only shortens the turn.
    media = [sipp._free_port(sipp._MEDIA_PORTS, 4) for _ in range(1500)]
    sip = [sipp._free_port(sipp._SIP_PORTS, 1) for _ in range(500)]
    used = {p for m in media for p in range(m, m + 4)} | set(sip)
    inside = sorted(p for p in used if p in ephemeral)
    assert inside == [], f"{len(inside)} ports in the ephemeral range {ephemeral}: {inside[:5]}"


async def test_a_call_whose_port_was_taken_before_sipp_bound_it_is_placed_again(
    asterisk: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process binds the audio port the picker has just found free (once)."""
    taken: list[socket.socket] = []
    free_port = sipp._free_port

    def picker_then_another_process(ports: itertools.cycle[int], span: int) -> int:
        port = free_port(ports, span)
        if span == 4 and not taken:
            other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            other.bind((LOCAL_IP, port))
            taken.append(other)
        return port

    monkeypatch.setattr(sipp, "_free_port", picker_then_another_process)
    try:
        result = await run_sipp_call(caller_id="+15551230041", hangup_after_ms=500)
    finally:
        for other in taken:
            other.close()
    assert len(taken) == 1
    assert result.ok, result.describe()
    assert result.hung_up_by == "caller"

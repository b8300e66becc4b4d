"""SIPp load runs for bench/sipp_cpu.py: write the caller scenario, run SIPp at a fixed rate,
read back its statistics (calls, failures, retransmissions) and per-call set-up times."""

from __future__ import annotations

import asyncio
import csv
import math
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCENARIO_TEMPLATE = BENCH / "sipp" / "ivr_caller.xml"
DTMF_PCAP_DIR = Path("/usr/share/sip-tester")
ASTERISK_SIP = "127.0.0.1:5060"
LOCAL_IP = "127.0.0.1"
SIPP_SIP_PORT = 5090  # away from Asterisk's 5060 and its RTP range 10000-29999
SIPP_MEDIA_PORT = 40000


@dataclass(frozen=True)
class SippStats:
    """What one SIPp run reported."""

    returncode: int
    created: int
    successful: int
    failed: int
    retransmissions: int
    setup_ms: tuple[float, ...]  # INVITE sent -> 200 OK, one per answered call
    errors_tail: str

    @property
    def retrans_share(self) -> float:
        return self.retransmissions / self.created if self.created else 0.0

    def setup_percentile(self, q: float) -> float:
        if not self.setup_ms:
            return math.nan
        ordered = sorted(self.setup_ms)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def write_scenario(path: Path, *, destination: str, key: str, key_delay_ms: int) -> Path:
    """The caller scenario for one variant: dial ``destination``, press ``key`` once."""
    text = SCENARIO_TEMPLATE.read_text(encoding="ascii")
    pcap = DTMF_PCAP_DIR / f"dtmf_2833_{key}.pcap"
    if not pcap.exists():
        raise FileNotFoundError(f"{pcap}: install sip-tester (SIPp's DTMF captures)")
    for name, value in (
        ("@DESTINATION@", destination),
        ("@DTMF_PCAP@", str(pcap)),
        ("@KEY_DELAY_MS@", str(key_delay_ms)),
    ):
        text = text.replace(name, value)
    path.write_text(text, encoding="ascii")
    return path


def write_callers(path: Path, phones: list[str]) -> Path:
    """SIPp ``-inf`` injection file: callers taken in order, one per call."""
    path.write_text("SEQUENTIAL\n" + "".join(f"{p};\n" for p in phones), encoding="ascii")
    return path


def sipp_command(
    scenario: Path, callers: Path, *, rate: float, calls: int, run_dir: Path
) -> list[str]:
    return [
        "sipp", ASTERISK_SIP,
        "-sf", str(scenario), "-inf", str(callers),
        "-r", f"{rate:g}", "-rp", "1000", "-m", str(calls), "-l", "20000",
        "-i", LOCAL_IP, "-mi", LOCAL_IP,
        "-p", str(SIPP_SIP_PORT), "-mp", str(SIPP_MEDIA_PORT),
        "-nostdin", "-recv_timeout", "30000",
        "-timeout", f"{int(calls / rate) + 90}s", "-timeout_error",
        "-trace_stat", "-stf", str(run_dir / "stat.csv"), "-fd", "5",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", str(run_dir / "errors.log"),
    ]  # fmt: skip


async def run_sipp(
    scenario: Path, callers: Path, *, rate: float, calls: int, run_dir: Path
) -> SippStats:
    """Place ``calls`` calls at ``rate`` calls/s and wait until every call has ended."""
    cmd = sipp_command(scenario, callers, rate=rate, calls=calls, run_dir=run_dir)
    (run_dir / "command.txt").write_text(" ".join(cmd) + "\n", encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=run_dir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await proc.communicate()
    returncode = proc.returncode if proc.returncode is not None else -1
    return read_stats(run_dir, returncode, stderr.decode(errors="replace"))


def read_stats(run_dir: Path, returncode: int, stderr: str) -> SippStats:
    last = _last_stat_row(run_dir / "stat.csv")
    errors = run_dir / "errors.log"
    tail = errors.read_text(errors="replace")[-2000:] if errors.exists() else ""
    return SippStats(
        returncode=returncode,
        created=int(last.get("TotalCallCreated", 0)),
        successful=int(last.get("SuccessfulCall(C)", 0)),
        failed=int(last.get("FailedCall(C)", 0)),
        retransmissions=int(last.get("Retransmissions(C)", 0)),
        setup_ms=_setup_times(run_dir),
        errors_tail=(stderr[-1000:] + tail).strip(),
    )


def _last_stat_row(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _setup_times(run_dir: Path) -> tuple[float, ...]:
    """``-trace_rtt`` writes ``<scenario>_<pid>_rtt.csv``: Date_ms;response_time_ms;rtd_no."""
    times: list[float] = []
    for path in run_dir.glob("*_rtt.csv"):
        for row in csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"):
            if len(row) >= 2:
                try:
                    times.append(float(row[1]))
                except ValueError:
                    continue  # header
    return tuple(times)

"""Fixtures for the end-to-end tests: a real Asterisk 22 (chroot) driven by SIPp callers.

* ``asterisk`` (session): ``scripts/asterisk-testbed.sh provision`` (cached chroot) and
  ``start``; ``stop`` always runs at the end. If provisioning or start-up fails (for example
  when not root) the tests FAIL with the script's output; they are never skipped.
* ``ami``: an ``AmiClient`` logged in to Asterisk (127.0.0.1:5038, ivrtest/ivrtest).
* Every test under tests/e2e is marked ``e2e``; after each test that used Asterisk, calls
  still up are hung up so the next test starts clean.

Ports reserved for these tests on 127.0.0.1: SIP 5060/udp, AMI 5038, FastAGI 4573.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ami import AmiClient

E2E_DIR = Path(__file__).resolve().parent
REPO = E2E_DIR.parents[1]
TESTBED = REPO / "scripts" / "asterisk-testbed.sh"
CHROOT = Path(os.environ.get("IVR_ASTERISK_CHROOT", "/var/cache/ivr-engine/asterisk-sid"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: the marker must be there before `-m` deselects items.
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def _testbed(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["bash", str(TESTBED), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return subprocess.CompletedProcess(
            exc.cmd, -1, out, f"{err}\n(timed out after {timeout} s)"
        )


def _fail(step: str, proc: subprocess.CompletedProcess[str]) -> None:
    pytest.fail(
        f"asterisk-testbed.sh {step} failed (exit {proc.returncode}):\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
        pytrace=False,
    )


@dataclass(frozen=True)
class Testbed:
    """The running Asterisk."""

    __test__ = False  # not a test class, despite the name

    chroot: Path

    @property
    def messages_log(self) -> Path:
        return self.chroot / "var/log/asterisk/messages.log"

    def log_text(self) -> str:
        return self.messages_log.read_text(errors="replace")

    def log_size(self) -> int:
        """Mark the log; ``log_since(mark)`` returns what was written afterwards."""
        return self.messages_log.stat().st_size

    def log_since(self, mark: int) -> str:
        with self.messages_log.open("rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def played_since(self, mark: int, channel: str) -> list[str]:
        """The files ``channel`` played since ``mark``, in order, as Asterisk names them: with
        the format it picked (``ivr-engine/welcome.slin``, ``digits/1.gsm``)."""
        return [
            line.split("Playing '", 1)[1].split("'", 1)[0]
            for line in self.log_since(mark).splitlines()
            if f"<{channel}> Playing '" in line
        ]

    def cli(self, command: str, timeout: float = 20) -> str:
        proc = _testbed("cli", command, timeout=timeout)
        if proc.returncode != 0:
            _fail(f"cli {command!r}", proc)
        return proc.stdout


@pytest.fixture(scope="session")
def asterisk() -> Iterator[Testbed]:
    proc = _testbed("provision", timeout=1200)
    if proc.returncode != 0:
        _fail("provision", proc)
    try:
        proc = _testbed("start", timeout=180)
        if proc.returncode != 0:
            _fail("start", proc)
        yield Testbed(CHROOT)
    finally:
        stop = _testbed("stop", timeout=120)
        if stop.returncode != 0:
            print(f"asterisk-testbed.sh stop: {stop.stdout}\n{stop.stderr}")


@pytest.fixture(autouse=True)
def _hang_up_leftover_calls(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "asterisk" in request.fixturenames:
        testbed: Testbed = request.getfixturevalue("asterisk")
        testbed.cli("channel request hangup all")


@pytest.fixture
async def ami(asterisk: Testbed) -> AsyncIterator[AmiClient]:
    client = AmiClient()
    try:
        await client.connect()
    except Exception as exc:
        pytest.fail(f"cannot log in to AMI at 127.0.0.1:5038: {exc!r}", pytrace=False)
    try:
        yield client
    finally:
        await client.close()

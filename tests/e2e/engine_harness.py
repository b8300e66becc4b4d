"""The real engine for the end-to-end tests: started in-process on 127.0.0.1:4573.

Also a private PostgreSQL cluster (``initdb`` as the ``postgres`` user, own port and socket
directory) that a test may stop and start again, to show what callers get while the
database is down, without touching the machine's shared PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ami import AmiClient

from ivr_engine.app import Engine
from ivr_engine.domain.models import KnownField
from ivr_engine.ports import Customer, Identity, NewTimelineEvent, StoredEvent, TimelineStore
from ivr_engine.settings import Settings

REPO = Path(__file__).resolve().parents[2]
AGI_PORT = 4573  # IVR_ENGINE_ADDR in tests/e2e/asterisk/extensions.conf
_READ = re.compile(r'^EXEC "?Read"? "(?P<args>[^"]*)"$')


def engine_settings(database_url: str, spool_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        agi_host="127.0.0.1",
        agi_port=AGI_PORT,
        http_port=0,
        menus_dir=REPO / "config/menus",
        sounds_dir=REPO / "prompts/en",
        spool_dir=spool_dir,
        decision_deadline_ms=150,
    )


@contextlib.asynccontextmanager
async def running_engine(settings: Settings) -> AsyncIterator[Engine]:
    engine = Engine(settings)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def store_of(engine: Engine) -> TimelineStore:
    assert engine.timeline is not None
    return engine.timeline.store


async def seed_customer(
    store: TimelineStore,
    phone: str,
    intents: Sequence[str] = (),
    fields: dict[str, str] | None = None,
) -> Customer:
    """A customer with ``phone``, one past contact per intent (newest first, alternating
    voice and chat) and known fields entered in chat."""
    now = datetime.now(UTC)
    known = [
        KnownField(name, value, "chat", now - timedelta(days=3))
        for name, value in (fields or {}).items()
    ]
    customer = await store.create_customer("Test Caller", [Identity("phone", phone)], known)
    await store.append_events(
        [
            NewTimelineEvent(
                event_id=f"seed:{customer.customer_id}:{n}",
                customer_id=customer.customer_id,
                occurred_at=now - timedelta(days=2 + 5 * n),
                channel="voice" if n % 2 else "chat",
                event_type="call.ivr" if n % 2 else "chat.conversation",
                intent=intent,
            )
            for n, intent in enumerate(intents)
        ]
    )
    return customer


async def wait_for_call_event(
    store: TimelineStore, phone: str, timeout_s: float = 20.0
) -> tuple[Customer, StoredEvent]:
    """The ``call.ivr`` event the engine's recorder writes for the newest call from ``phone``."""
    deadline = time.monotonic() + timeout_s
    while True:
        for customer in await store.find_customers(Identity("phone", phone)):
            page = await store.timeline(customer.customer_id, limit=20)
            calls = [e for e in page.events if e.event_id.endswith(":ivr")]
            if calls:
                return customer, calls[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no call event for {phone} on the timeline in {timeout_s} s")
        await asyncio.sleep(0.2)


def read_prompt_lists(ami: AmiClient, caller_id: str) -> list[list[str]]:
    """The prompt lists the engine played with ``EXEC Read``, in order, as Asterisk
    reported the commands (AMI ``AGIExecStart``)."""
    lists = []
    for command in ami.agi_commands(caller_id=caller_id):
        match = _READ.match(command)
        if match:
            lists.append(match["args"].split(",")[1].split("&"))
    return lists


def menu_order(prompts: Sequence[str]) -> list[tuple[str, str]]:
    """``(label, digit)`` pairs from a menu prompt list: ``for label-X press digits/N``."""
    pairs = []
    for i, prompt in enumerate(prompts):
        if prompt.startswith("ivr-engine/label-") and i + 2 < len(prompts):
            digit = prompts[i + 2].removeprefix("digits/")
            pairs.append((prompt.removeprefix("ivr-engine/label-"), digit))
    return pairs


# ---------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed under /usr/lib/postgresql")
    return str(found[-1])


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster this test owns (it may stop it)."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                _pg_bin("pg_ctl"),
                "-D",
                str(self.directory),
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._ctl("-o", options, "-l", str(self.directory / "server.log"), "-w", "start")

    def stop(self) -> None:
        """An immediate stop, as when the database server dies."""
        self._ctl("-m", "immediate", "-w", "stop")


def free_port_outside_ephemeral_range() -> int:
    """A TCP port on 127.0.0.1 that is free now and that the kernel never hands out as a
    client's source port (55432, the old fixed choice, sits in Linux's ephemeral range
    32768-60999: a client connection had taken it once and the cluster could not start)."""
    for port in random.sample(range(15000, 20000), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port in 15000-19999 on 127.0.0.1")


@contextlib.contextmanager
def private_postgres(port: int | None = None) -> Iterator[PrivatePostgres]:
    base = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
    directory = base / "data"
    shutil.chown(base, "postgres")
    subprocess.run(
        [
            *("runuser", "-u", "postgres", "--", _pg_bin("initdb"), "-D", str(directory)),
            *("-A", "trust", "-U", "postgres", "--no-sync"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = PrivatePostgres(directory, port or free_port_outside_ephemeral_range())
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)

"""Desktop credentials, the agent directory file, sessions, the login throttle, config checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from ivr_engine.agents import ChangeFeedLagged, open_agent_state_store
from ivr_engine.agents.model import AgentChange
from ivr_engine.desktop import DesktopConfig, DesktopHub, hash_password, load_agent_directory
from ivr_engine.desktop.__main__ import main as desktop_cli
from ivr_engine.desktop.directory import AgentDirectory, DesktopAgent, parse_agent_directory
from ivr_engine.desktop.listener import follow_agent_changes
from ivr_engine.desktop.passwords import (
    new_api_token,
    parse_password_hash,
    token_digest,
    verify_password,
)
from ivr_engine.desktop.throttle import LoginThrottle, TooManyAttempts
from ivr_engine.domain.errors import ConfigError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- passwords


def test_password_hash_round_trip_and_per_agent_salt() -> None:
    first, second = hash_password("s3cret", n=2**10), hash_password("s3cret", n=2**10)
    assert first.salt != second.salt and first.key != second.key
    text = first.encode()
    assert text.startswith("scrypt$1024$8$1$")
    parsed = parse_password_hash(text)
    assert parsed == first
    assert verify_password("s3cret", parsed) and not verify_password("s3cret ", parsed)
    assert verify_password("pässwörd", hash_password("pässwörd", n=2**10))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bcrypt$2b$...", "expected scrypt"),
        ("scrypt$16384$8$1$AAAA", "expected scrypt"),
        ("scrypt$x$8$1$AAAAAAAAAAA=$AAAA", "unreadable"),
        ("scrypt$16384$8$1$!!!$AAAA", "unreadable"),
        ("scrypt$1000$8$1$AAAAAAAAAAA=$" + "A" * 44, "power of two"),
        ("scrypt$2097152$8$1$AAAAAAAAAAA=$" + "A" * 44, "power of two"),
        ("scrypt$16384$99$1$AAAAAAAAAAA=$" + "A" * 44, "r must be"),
        ("scrypt$16384$8$1$AAAA$" + "A" * 44, "salt"),
    ],
)
def test_unreadable_password_hashes_say_why(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_password_hash(text)


def test_tokens_are_stored_as_digests() -> None:
    token, digest = new_api_token()
    assert len(token) >= 40 and bytes.fromhex(digest) == token_digest(token)


def test_cli_prints_a_directory_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert desktop_cli(["new-token"]) == 0
    assert "token_sha256: " in capsys.readouterr().out
    assert desktop_cli(["what"]) == 2


# --------------------------------------------------------------------------- directory

_GOOD_HASH = hash_password("pw", n=2**10).encode()


def _yaml(*agents: str) -> str:
    return "agents:\n" + "".join(agents)


def _agent(agent_id: str = "a100", extra: str = "") -> str:
    return (
        f"  - agent_id: {agent_id}\n    name: Alice\n    sip_endpoint: PJSIP/alice\n"
        f"    password_hash: '{_GOOD_HASH}'\n{extra}"
    )


def test_directory_loads_from_yaml(tmp_path: Path) -> None:
    token, digest = new_api_token()
    path = tmp_path / "agents.yaml"
    path.write_text(
        _yaml(
            _agent("a100", "    max_concurrent: 3\n"),
            "  - agent_id: cti\n    name: CTI\n    sip_endpoint: PJSIP/cti\n"
            f"    token_sha256: {digest}\n",
        ),
        encoding="utf-8",
    )
    directory = load_agent_directory(path)
    assert len(directory) == 2
    alice = directory.get("a100")
    assert alice is not None and alice.max_concurrent == 3 and alice.sip_endpoint == "PJSIP/alice"
    assert directory.check_password("a100", "pw") == alice
    assert directory.check_password("a100", "PW") is None
    assert directory.check_password("nobody", "pw") is None
    assert directory.check_password("cti", "pw") is None  # token-only agent
    cti = directory.check_token(token)
    assert cti is not None and cti.agent_id == "cti"
    assert directory.check_token(token + "x") is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_yaml(_agent(), _agent()), "agents: agent 'a100' is listed twice"),
        (_yaml(_agent("bad id")), "agents[0].agent_id"),
        (_yaml(_agent("a1", "    colour: red\n")), "agents[0].colour"),
        (_yaml(_agent("a1", "    max_concurrent: '2'\n")), "agents[0].max_concurrent"),
        (
            "agents:\n  - agent_id: a1\n    name: A\n    sip_endpoint: PJSIP/a\n",
            "needs a password_hash or a token_sha256",
        ),
        (
            "agents:\n  - agent_id: a1\n    name: A\n    sip_endpoint: PJSIP/a\n"
            "    password_hash: plain-text\n",
            "agents[0].password_hash",
        ),
        (
            "agents:\n  - agent_id: a1\n    name: A\n    sip_endpoint: PJSIP/a\n"
            "    token_sha256: abc\n",
            "agents[0].token_sha256",
        ),
        ("agents: [\n", "not valid YAML"),
        ("- a\n", "<top>"),
    ],
)
def test_directory_errors_name_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "agents.yaml"
    with pytest.raises(ConfigError) as raised:
        parse_agent_directory(path, text)
    assert str(raised.value).startswith(f"{path}: ") and needle in str(raised.value)


def test_missing_directory_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the agent directory"):
        load_agent_directory(tmp_path / "nope.yaml")


def test_shared_tokens_are_refused() -> None:
    digest = token_digest("t" * 32)
    with pytest.raises(ValueError, match="reuses another agent's API token"):
        AgentDirectory(
            [
                DesktopAgent("a", "A", "PJSIP/a", token_sha256=digest),
                DesktopAgent("b", "B", "PJSIP/b", token_sha256=digest),
            ]
        )


# --------------------------------------------------------------------------- sessions


# Sessions themselves (signature, expiry, per-agent cap), in-process and in Redis:
# test_desktop_session_contract.py.


def test_throttle_locks_out_then_forgets() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=3, window_s=60, max_keys=2, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("a") is None
        throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(60)
    clock.now += 30
    assert throttle.retry_after("a") == pytest.approx(30)
    clock.now += 31
    assert throttle.retry_after("a") is None
    throttle.failed("b")
    attempt = throttle.begin([("b", None), ("c", 1)])  # counted at once, on every key
    assert throttle.retry_after("b") is None and throttle.retry_after("c", 1) is not None
    with pytest.raises(TooManyAttempts):
        throttle.begin([("b", None), ("c", 1)])
    throttle.release(attempt)  # takes back its own count only: b's failure stays
    assert throttle.retry_after("c", 1) is None and throttle.retry_after("b", 1) is not None
    for key in ("x", "y", "z"):  # bounded: the oldest keys are forgotten
        for _ in range(3):
            throttle.failed(key)
    assert throttle.retry_after("x") is None and throttle.retry_after("z") is not None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"base_path": "desktop"}, "base_path"),
        ({"base_path": "/desktop/"}, "base_path"),
        ({"allowed_origins": frozenset({"https://desk.example.com/"})}, "allowed_origins"),
        ({"allowed_origins": frozenset({"HTTPS://DESK"})}, "allowed_origins"),
        ({"allowed_origins": frozenset({"https://desk.example.com\n"})}, "allowed_origins"),
        ({"allowed_origins": frozenset({"https://[::1]\n"})}, "allowed_origins"),
        ({"cookie_secret": b"x"}, "cookie_secret"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
    ],
)
def test_config_is_checked(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        DesktopConfig(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- change feed


class LaggingStore:
    """The in-process store, whose first feed subscription lags at once."""

    def __init__(self) -> None:
        self.inner = open_agent_state_store(None)
        self.subscriptions = 0
        self.resubscribed = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    @asynccontextmanager
    async def changes(self) -> AsyncIterator[AsyncIterator[AgentChange]]:
        self.subscriptions += 1
        if self.subscriptions == 1:
            raise ChangeFeedLagged("behind")
        async with self.inner.changes() as feed:
            self.resubscribed.set()
            yield feed


async def test_a_lagging_feed_is_resubscribed() -> None:
    store = LaggingStore()
    hub = DesktopHub(None)
    task = asyncio.create_task(follow_agent_changes(store, hub, retry_s=0.01))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            await store.resubscribed.wait()
        assert store.subscriptions == 2 and not task.done()
    finally:
        await store.inner.aclose()
        async with asyncio.timeout(5):
            await task  # the closed store ends the feed, and the follower with it

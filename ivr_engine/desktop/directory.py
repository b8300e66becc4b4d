"""The agent directory of the desktop: who may log in, and how (in memory, loadable from YAML).

File format (a list, so a duplicated ``agent_id`` is refused rather than silently merged)::

    agents:
      - agent_id: a100
        name: Alice Martin
        sip_endpoint: PJSIP/alice
        password_hash: scrypt$16384$8$1$<salt>$<key>   # python -m ivr_engine.desktop hash-password
        token_sha256: <64 hex digits>                    # optional API token (SHA-256 of it)
        max_concurrent: 1                                # optional, default 1
        skills: {billing: 5, general: 2}                 # routing profile (contact_center)
        languages: [en, es]
        team: billing

Every agent needs a ``password_hash`` or a ``token_sha256`` (or both). Errors name the file,
the key and the fix.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from ivr_engine.config_errors import load_document, validation_problems
from ivr_engine.desktop.passwords import (
    PasswordHash,
    dummy_hash,
    parse_password_hash,
    parse_token_digest,
    token_digest,
    verify_password,
)
from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.plain_text import plain_text

AGENT_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


@dataclass(frozen=True, slots=True)
class DesktopAgent:
    agent_id: str
    name: str
    sip_endpoint: str
    password_hash: PasswordHash | None = None
    token_sha256: bytes | None = None
    max_concurrent: int = 1

    def __post_init__(self) -> None:
        if self.password_hash is None and self.token_sha256 is None:
            raise ValueError(f"agent {self.agent_id!r} needs a password_hash or a token_sha256")

    @property
    def credentials_tag(self) -> str:
        """Changes whenever the password or the API token changes (a new password gets a new
        salt, so even the same one again): kept with each session, which ends when it no
        longer matches. A digest of the stored hashes, never of a secret itself."""
        tag = hashlib.sha256(b"ivr-desktop-credentials\0")
        tag.update(self.password_hash.encode().encode() if self.password_hash else b"-")
        tag.update(b"\0" + (self.token_sha256 or b"-"))
        return tag.hexdigest()[:32]


class AgentDirectory:
    """Agents by id and by API-token digest; duplicates are refused.

    ``replace_all`` swaps the whole directory at once (the live roster calls it when agents
    are created, edited or deleted): a login sees the old directory or the new, never a mix.
    """

    def __init__(self, agents: Iterable[DesktopAgent] = ()) -> None:
        self._by_id: dict[str, DesktopAgent] = _index(agents)
        self._watchers: set[asyncio.Event] = set()

    def replace_all(self, agents: Iterable[DesktopAgent]) -> None:
        """Swap in ``agents`` (``ValueError`` for a duplicate, and nothing changes), and set
        every ``watch`` event."""
        self._by_id = _index(agents)
        for changed in self._watchers:
            changed.set()

    @contextmanager
    def watch(self) -> Iterator[asyncio.Event]:
        """An event set by every ``replace_all`` while the block runs (the session sweep
        ends the sessions of changed credentials at once)."""
        changed = asyncio.Event()
        self._watchers.add(changed)
        try:
            yield changed
        finally:
            self._watchers.discard(changed)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[DesktopAgent]:
        return iter(self._by_id.values())

    def get(self, agent_id: str) -> DesktopAgent | None:
        return self._by_id.get(agent_id)

    def _token_owner(self, digest: bytes) -> DesktopAgent | None:
        return _token_owner(self._by_id, digest)

    def check_password(self, agent_id: str, password: str) -> DesktopAgent | None:
        """The agent if the password matches; CPU-bound (scrypt), run it in a thread.

        An unknown agent, or one without a password, costs one scrypt too (no timing oracle).
        """
        agent = self._by_id.get(agent_id)
        stored = agent.password_hash if agent is not None else None
        matches = verify_password(password, stored or dummy_hash())
        return agent if matches and stored is not None else None

    def check_token(self, token: str) -> DesktopAgent | None:
        return self._token_owner(token_digest(token))


def _index(agents: Iterable[DesktopAgent]) -> dict[str, DesktopAgent]:
    by_id: dict[str, DesktopAgent] = {}
    for agent in agents:
        if agent.agent_id in by_id:
            raise ValueError(f"agent {agent.agent_id!r} is listed twice")
        if agent.token_sha256 is not None and _token_owner(by_id, agent.token_sha256):
            raise ValueError(f"agent {agent.agent_id!r} reuses another agent's API token")
        by_id[agent.agent_id] = agent
    return by_id


def _token_owner(by_id: dict[str, DesktopAgent], digest: bytes) -> DesktopAgent | None:
    found = None
    for agent in by_id.values():  # no early exit: same time whoever owns it
        stored = agent.token_sha256 if agent.token_sha256 is not None else bytes(32)
        if hmac.compare_digest(stored, digest) and agent.token_sha256 is not None:
            found = agent
    return found


# --------------------------------------------------------------------------- YAML


class _AgentModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    agent_id: Annotated[str, Field(pattern=AGENT_ID_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=120), AfterValidator(plain_text)]
    sip_endpoint: Annotated[str, Field(pattern=r"^[A-Za-z0-9_:\-/.@]{1,120}$")]
    password_hash: str | None = None
    token_sha256: str | None = None
    max_concurrent: Annotated[int, Field(ge=1, le=50)] = 1
    # The routing profile lives in the same file (ivr_engine.contact_center.agents_file).
    skills: dict[str, int] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    team: Annotated[str, AfterValidator(plain_text)] = ""

    @field_validator("password_hash")
    @classmethod
    def _readable_hash(cls, value: str | None) -> str | None:
        if value is not None:
            parse_password_hash(value)
        return value

    @field_validator("token_sha256")
    @classmethod
    def _readable_digest(cls, value: str | None) -> str | None:
        if value is not None:
            parse_token_digest(value)
        return value


class _DirectoryModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: list[_AgentModel] = Field(max_length=10_000)


def login_entry(
    agent_id: str,
    name: str,
    sip_endpoint: str,
    password_hash: str | None,
    token_sha256: str | None,
    max_concurrent: int,
) -> DesktopAgent:
    """A login entry from stored text credentials (``ValueError`` if one is unreadable)."""
    return DesktopAgent(
        agent_id=agent_id,
        name=name,
        sip_endpoint=sip_endpoint,
        password_hash=None if password_hash is None else parse_password_hash(password_hash),
        token_sha256=None if token_sha256 is None else parse_token_digest(token_sha256),
        max_concurrent=max_concurrent,
    )


def _to_agent(model: _AgentModel) -> DesktopAgent:
    return login_entry(
        model.agent_id, model.name, model.sip_endpoint, model.password_hash,
        model.token_sha256, model.max_concurrent,
    )  # fmt: skip


def parse_agent_directory(path: Path, text: str) -> AgentDirectory:
    """YAML text → directory; ``ConfigError`` names ``path``, the key and the problem."""
    raw = load_document(path, text)
    try:
        model = _DirectoryModel.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_problems(path, exc)) from None
    try:
        return AgentDirectory(_to_agent(agent) for agent in model.agents)
    except ValueError as exc:
        raise ConfigError(f"{path}: agents: {exc}") from None


def load_agent_directory(path: Path) -> AgentDirectory:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the agent directory: {exc.strerror}") from None
    return parse_agent_directory(path, text)

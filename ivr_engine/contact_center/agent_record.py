"""``AgentRecord``: one roster entry as stored (routing profile + desktop credentials).

The routing side (``routing.Agent``) and the desktop side (``desktop.DesktopAgent``) are
both derived from it, so the router and the login directory always agree on who exists.
Credentials are kept as their stored text (scrypt hash, SHA-256 hex digest), never in clear.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ivr_engine.desktop.directory import DesktopAgent, login_entry
from ivr_engine.routing import Agent


@dataclass(frozen=True, slots=True)
class AgentRecord:
    agent_id: str
    name: str
    sip_endpoint: str
    skills: Mapping[str, int] = field(default_factory=dict)
    languages: tuple[str, ...] = ()
    team: str = ""
    max_concurrent: int = 1
    password_hash: str | None = None  # scrypt$N$r$p$<salt>$<key>
    token_sha256: str | None = None  # 64 hex digits

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))
        object.__setattr__(self, "languages", tuple(self.languages))

    def routing_agent(self) -> Agent:
        return Agent(
            agent_id=self.agent_id,
            name=self.name,
            endpoint=self.sip_endpoint,
            skills=dict(self.skills),
            languages=frozenset(self.languages),
            team=self.team,
            max_concurrent=self.max_concurrent,
        )

    def profile(self) -> dict[str, Any]:
        """The editable profile as plain values (request bodies, table rows); no credentials."""
        return {
            "name": self.name,
            "sip_endpoint": self.sip_endpoint,
            "skills": dict(self.skills),
            "languages": list(self.languages),
            "team": self.team,
            "max_concurrent": self.max_concurrent,
        }

    def desktop_agent(self) -> DesktopAgent:
        """``ValueError`` when the stored credentials are unreadable or both missing."""
        return login_entry(
            self.agent_id, self.name, self.sip_endpoint, self.password_hash,
            self.token_sha256, self.max_concurrent,
        )  # fmt: skip


def records_from_file(
    profiles: Iterable[Agent], logins: Iterable[DesktopAgent]
) -> list[AgentRecord]:
    """The agents file, parsed by both of its readers, as roster records (file order)."""
    by_id = {login.agent_id: login for login in logins}
    records = []
    for profile in profiles:
        login = by_id.get(profile.agent_id)
        password = login.password_hash if login is not None else None
        token = login.token_sha256 if login is not None else None
        records.append(
            AgentRecord(
                agent_id=profile.agent_id,
                name=profile.name,
                sip_endpoint=profile.endpoint,
                skills=dict(profile.skills),
                languages=tuple(sorted(profile.languages)),
                team=profile.team,
                max_concurrent=profile.max_concurrent,
                password_hash=None if password is None else password.encode(),
                token_sha256=None if token is None else token.hex(),
            )
        )
    return records

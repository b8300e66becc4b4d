"""The routing profile of each agent, from the same ``agents.yaml`` as the desktop directory.

Each agent: ``agent_id``, ``name``, ``sip_endpoint`` (dial string), ``skills`` (skill → 1..5),
``languages``, ``team``, ``max_concurrent``; login keys (``password_hash``, ``token_sha256``)
belong to the desktop and are ignored here. Errors name the file, the key and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ivr_engine.config_errors import load_document, validation_problems
from ivr_engine.contact_center.agent_bodies import Endpoint, Name, Team
from ivr_engine.data_dirs import from_working_dir
from ivr_engine.desktop.directory import AGENT_ID_PATTERN
from ivr_engine.domain.errors import ConfigError
from ivr_engine.routing import Agent, RoutingConfig
from ivr_engine.routing.models import language_key


class _Profile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    # the rules of the HTTP API and the CSV import: a "," in a dial string would become
    # extra Dial() options (U(), G(): subroutines) in the dialplan, "{" or "|" in a bridge
    agent_id: Annotated[str, Field(pattern=AGENT_ID_PATTERN)]
    name: Name  # no control characters: a "\n" or U+202E would forge what screens show
    sip_endpoint: Endpoint
    skills: dict[str, Annotated[int, Field(ge=1, le=5)]] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    team: Team = ""
    max_concurrent: Annotated[int, Field(ge=1, le=50)] = 1


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: list[_Profile]


def parse_agent_profiles(path: Path, text: str, config: RoutingConfig | None = None) -> list[Agent]:
    raw = load_document(path, text)
    try:
        model = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_problems(path, exc)) from None
    agents = [
        Agent(
            agent_id=p.agent_id,
            name=p.name,
            endpoint=p.sip_endpoint,
            skills=dict(p.skills),
            languages=frozenset(language_key(lang) for lang in p.languages),
            team=p.team,
            max_concurrent=p.max_concurrent,
        )
        for p in model.agents
    ]
    if config is not None:
        known = known_skills(config)
        for index, agent in enumerate(agents):
            unknown = sorted(set(agent.skills) - known)
            if unknown and known:
                raise ConfigError(
                    f"{path}: agents.{index}.skills: {unknown} not required by any intent in "
                    f"the routing config (known: {sorted(known)})"
                )
    return agents


def known_skills(config: RoutingConfig) -> set[str]:
    """Every skill some intent of the routing config requires."""
    return {need.skill for rule in config.intents.values() for need in rule.skills}


def load_agent_profiles(path: Path, config: RoutingConfig | None = None) -> list[Agent]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"agents_file: {path}: cannot read the agents file: {exc.strerror}"
            + from_working_dir(path)
        ) from None
    return parse_agent_profiles(path, text, config)

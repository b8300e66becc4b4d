"""Frozen values of the routing core: agents, live state, rules, requests and decisions.

Nothing here does I/O. Every datetime is timezone-aware: the constructors refuse naive ones,
so the policy never compares a naive time with an aware one in the middle of a decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

MIN_PROFICIENCY = 1
MAX_PROFICIENCY = 5


class AgentState(StrEnum):
    """Live state of an agent, as the live-state store reports it."""

    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RESERVED = "reserved"  # picked for a call, not yet ringing
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class OverflowReason(StrEnum):
    UNKNOWN_INTENT = "unknown_intent"  # no rule for the intent: fail closed to the fallback
    NO_SKILLED_AGENT = "no_skilled_agent"  # nobody on the roster has a required skill
    NO_AGENT_FITS = "no_agent_fits"  # skilled agents exist, none fits at this stage


def require_aware(moment: datetime, what: str) -> None:
    """Refuse a naive datetime: naive and aware values cannot be compared."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {moment.isoformat()}")


def language_key(language: str) -> str:
    """'en-US' and 'EN' both match 'en': the primary subtag, lower case."""
    return language.split("-", 1)[0].split("_", 1)[0].strip().lower()


# --------------------------------------------------------------------------- agents


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent's profile: changes when a supervisor edits it, not during a call."""

    agent_id: str
    name: str
    endpoint: str  # dial string, e.g. "PJSIP/agent-1001"
    skills: Mapping[str, int] = field(default_factory=dict, hash=False)  # skill -> 1..5
    languages: frozenset[str] = frozenset()  # normalised with ``language_key``
    team: str = ""
    max_concurrent: int = 1

    def __post_init__(self) -> None:
        if not self.agent_id or not self.endpoint:
            raise ValueError(f"agent {self.agent_id!r}: agent_id and endpoint must be set")
        for skill, level in self.skills.items():
            if isinstance(level, bool) or not MIN_PROFICIENCY <= level <= MAX_PROFICIENCY:
                raise ValueError(
                    f"agent {self.agent_id!r}: skill {skill!r} proficiency {level!r} "
                    f"is not between {MIN_PROFICIENCY} and {MAX_PROFICIENCY}"
                )
        if self.max_concurrent < 1:
            raise ValueError(f"agent {self.agent_id!r}: max_concurrent must be at least 1")
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))
        object.__setattr__(self, "languages", frozenset(map(language_key, self.languages)))


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """An agent's live state at one moment; ``state_since`` gives the idle time."""

    agent_id: str
    state: AgentState
    state_since: datetime
    interactions: int = 0  # interactions in progress (all channels)

    def __post_init__(self) -> None:
        require_aware(self.state_since, f"agent {self.agent_id!r} state_since")


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class SkillRequirement:
    skill: str
    min_proficiency: int


@dataclass(frozen=True, slots=True)
class RelaxationStage:
    """From ``after_s`` seconds of waiting: required levels are capped at ``min_proficiency``
    (never raised), and with ``any_language`` agents who do not speak the caller's language
    are accepted (speakers still rank first)."""

    after_s: float
    min_proficiency: int | None = None
    any_language: bool = False


BASE_STAGE = RelaxationStage(after_s=0.0)


@dataclass(frozen=True, slots=True)
class OverflowStage:
    """From ``after_s`` seconds of waiting, nobody fitting sends the call to ``target``
    ("queue:<name>" for an Asterisk queue, or "callback" for a callback offer)."""

    after_s: float
    target: str


@dataclass(frozen=True, slots=True)
class IntentRule:
    intent: str
    skills: tuple[SkillRequirement, ...]
    overflow: tuple[OverflowStage, ...]  # first stage starts at 0 s
    relaxation: tuple[RelaxationStage, ...] = ()  # sorted by after_s, each after_s > 0

    def __post_init__(self) -> None:
        names = [s.skill for s in self.skills]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"intent {self.intent!r}: skills must be non-empty and unique")
        if not self.overflow:
            raise ValueError(f"intent {self.intent!r}: needs at least one overflow target")
        times = [s.after_s for s in self.relaxation]
        if times != sorted(times):
            raise ValueError(f"intent {self.intent!r}: relaxation stages must be in time order")


@dataclass(frozen=True, slots=True)
class AffinityPolicy:
    window_days: float = 30.0  # the last agent counts if they helped within this window
    max_wait_s: float = 60.0  # ...and only while the caller has waited less than this


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    intents: Mapping[str, IntentRule]
    fallback_target: str = "queue:general"  # unknown intent: fail closed here
    affinity: AffinityPolicy = field(default_factory=AffinityPolicy)
    max_candidates: int = 5  # ranked candidates kept for the screen pop / timeline

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")


# --------------------------------------------------------------------------- request


@dataclass(frozen=True, slots=True)
class LastAgent:
    """The agent who last helped this customer (from the timeline), and when."""

    agent_id: str
    helped_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.helped_at, "last agent helped_at")


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    intent: str
    waiting_since: datetime  # when the caller started waiting for an agent
    language: str | None = None  # caller language ("en", "es"); None: no constraint
    last_agent: LastAgent | None = None
    exclude: frozenset[str] = frozenset()  # agents already tried for this call

    def __post_init__(self) -> None:
        require_aware(self.waiting_since, "waiting_since")


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class ScoreParts:
    """Why a candidate ranks where it does, compared in this field order."""

    speaks_language: bool  # True when the caller gave no language
    affinity: bool  # the last agent, inside the window and the wait limit
    proficiency: int  # sum over the required skills
    idle_s: float
    skills: tuple[tuple[str, int], ...]  # (skill, proficiency) per required skill


@dataclass(frozen=True, slots=True)
class Candidate:
    agent_id: str
    name: str
    endpoint: str
    team: str
    score: ScoreParts


@dataclass(frozen=True, slots=True)
class AgentChosen:
    intent: str
    agent_id: str
    endpoint: str
    score: ScoreParts
    stage: int  # 0: no relaxation; n: the n-th relaxation stage
    reasons: tuple[str, ...]
    candidates: tuple[Candidate, ...]  # ranked, best first; candidates[0] is the choice
    eligible: int  # agents that fitted, before the cut to the top few


@dataclass(frozen=True, slots=True)
class Overflow:
    intent: str
    target: str
    reason: OverflowReason
    stage: int
    reasons: tuple[str, ...]
    retry_after_s: float | None = None  # a later relaxation stage starts then; None: last


RoutingDecision = AgentChosen | Overflow

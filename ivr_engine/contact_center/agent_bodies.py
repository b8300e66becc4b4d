"""Request bodies of agent management (``POST/PUT/PATCH /v1/agents``) and their checks.

Shape and ranges (400) are the agents file's rules, in strict pydantic models: ids and SIP
endpoints as the desktop directory accepts them, proficiency 1..5, ``max_concurrent`` 1..50.
Rules that need the routing config or the stored agent (422): every skill must be required
by some intent, and an agent must keep a way to log in (a password or an API token).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from ivr_engine.contact_center.agent_record import AgentRecord
from ivr_engine.desktop.directory import AGENT_ID_PATTERN
from ivr_engine.domain.plain_text import plain_text
from ivr_engine.routing.models import language_key

MIN_PASSWORD = 8
SkillName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
Proficiency = Annotated[int, Field(ge=1, le=5)]
Language = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{1,8}){0,3}$")]
_NameText = Annotated[str, Field(min_length=1, max_length=120)]
Name = Annotated[_NameText, AfterValidator(plain_text)]  # no "\n", NUL, U+202E... (plain_text)
Endpoint = Annotated[str, Field(pattern=r"^[A-Za-z0-9_:\-/.@]{1,120}$")]
_TeamText = Annotated[str, Field(max_length=64)]
Team = Annotated[_TeamText, AfterValidator(plain_text)]
MaxConcurrent = Annotated[int, Field(ge=1, le=50)]
Password = Annotated[str, Field(min_length=MIN_PASSWORD, max_length=1024)]
TokenDigest = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
Skills = Annotated[dict[SkillName, Proficiency], Field(max_length=64)]
Languages = Annotated[list[Language], Field(max_length=32)]


class AgentProfileBody(BaseModel):
    """``PUT /v1/agents/{agent_id}``: the whole profile (credentials kept unless given)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    agent_id: Annotated[str, Field(pattern=AGENT_ID_PATTERN)] | None = None
    name: Name
    sip_endpoint: Endpoint
    skills: Skills = Field(default_factory=dict)
    languages: Languages = Field(default_factory=list)
    team: Team = ""
    max_concurrent: MaxConcurrent = 1
    password: Password | None = Field(None, description="stored as a scrypt hash only")
    token_sha256: TokenDigest | None = Field(None, description="SHA-256 hex of an API token")


class NewAgentBody(AgentProfileBody):
    """``POST /v1/agents``: a new agent; ``password`` or ``token_sha256`` is required."""

    agent_id: Annotated[str, Field(pattern=AGENT_ID_PATTERN)]


# Absent, never null (``patched_fields`` refuses it): ``None`` stays out of the JSON schema.
Unset = SkipJsonSchema[None]


def _plain_unless_unset(text: str | None) -> str | None:
    return None if text is None else plain_text(text)


# checked after the union, so an error names the key alone ("name: ..."), not a union arm
PatchName = Annotated[_NameText | Unset, AfterValidator(_plain_unless_unset)]
PatchTeam = Annotated[_TeamText | Unset, AfterValidator(_plain_unless_unset)]
NOT_NULL = ("name", "sip_endpoint", "skills", "languages", "team", "max_concurrent")


def _no_null_defaults(schema: dict[str, Any]) -> None:
    """A ``null`` default beside a type that takes no ``null`` would contradict it."""
    for name in NOT_NULL:
        schema["properties"][name].pop("default", None)


class AgentPatchBody(BaseModel):
    """``PATCH /v1/agents/{agent_id}``: only the fields given change; ``null`` clears
    ``password`` or ``token_sha256`` (one of them must remain)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, json_schema_extra=_no_null_defaults
    )

    name: PatchName = None
    sip_endpoint: Endpoint | Unset = None
    skills: Skills | Unset = None
    languages: Languages | Unset = None
    team: PatchTeam = None
    max_concurrent: MaxConcurrent | Unset = None
    password: Password | None = None
    token_sha256: TokenDigest | None = None


class AgentRuleError(ValueError):
    """A well-formed body the roster refuses (HTTP 422); ``field`` names the key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def patched_fields(body: AgentPatchBody) -> dict[str, object]:
    """The fields the PATCH sets; ``AgentRuleError`` for a ``null`` where none is allowed."""
    given = {name: getattr(body, name) for name in body.model_fields_set}
    for name in NOT_NULL:
        if name in given and given[name] is None:
            raise AgentRuleError(name, "may not be null (leave it out to keep it)")
    return given


def record_from_fields(
    agent_id: str,
    fields: dict[str, object],
    password_hash: str | None,
    base: AgentRecord | None,
    known_skills: set[str],
) -> AgentRecord:
    """Merge ``fields`` over ``base`` (None: a new agent) and check the roster rules.

    ``password_hash`` is the scrypt hash of ``fields["password"]`` when one was given."""
    profile_keys = NOT_NULL
    merged = {**_profile_of(base), **{k: v for k, v in fields.items() if k in profile_keys}}
    profile = AgentProfileBody.model_validate(merged)  # values already validated: re-typed
    unknown = sorted(set(profile.skills) - known_skills)
    if unknown and known_skills:
        raise AgentRuleError(
            "skills",
            f"{unknown} not required by any intent in the routing config "
            f"(known: {sorted(known_skills)})",
        )
    password = base.password_hash if base is not None else None
    if "password" in fields:
        password = password_hash
    token = base.token_sha256 if base is not None else None
    if "token_sha256" in fields:
        given = fields["token_sha256"]
        token = given.lower() if isinstance(given, str) else None
    if password is None and token is None:
        raise AgentRuleError("password", "an agent needs a password or a token_sha256 to log in")
    return AgentRecord(
        agent_id=agent_id,
        name=profile.name,
        sip_endpoint=profile.sip_endpoint,
        skills=profile.skills,
        languages=tuple(sorted({language_key(lang) for lang in profile.languages})),
        team=profile.team,
        max_concurrent=profile.max_concurrent,
        password_hash=password,
        token_sha256=token,
    )


def _profile_of(record: AgentRecord | None) -> dict[str, object]:
    return {} if record is None else record.profile()

"""Load ``config/routing.yaml`` into a frozen ``RoutingConfig``; every error names file and key.

Validated once, at start-up. Rules pydantic cannot express (skills from the catalogue,
increasing stage times, stages that only ever relax) are checked after it, with the same
``<file>: <key>: <problem>`` messages.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from ivr_engine.config_errors import key_path, load_mapping, plain_message, validation_problems
from ivr_engine.data_dirs import from_working_dir
from ivr_engine.domain.errors import ConfigError
from ivr_engine.routing.models import (
    MAX_PROFICIENCY,
    MIN_PROFICIENCY,
    AffinityPolicy,
    IntentRule,
    OverflowStage,
    RelaxationStage,
    RoutingConfig,
    SkillRequirement,
)

_KEY = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
_TARGET = Annotated[str, Field(pattern=r"^(queue:[A-Za-z0-9_\-]{1,80}|callback)$")]
_LEVEL = Annotated[int, Field(strict=True, ge=MIN_PROFICIENCY, le=MAX_PROFICIENCY)]
_SECONDS = Annotated[float, Field(ge=0, le=86400)]
_FIX_TARGET = "use 'queue:<name>' (an Asterisk queue) or 'callback'"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RelaxModel(_Strict):
    after_s: Annotated[float, Field(gt=0, le=86400)]
    min_proficiency: _LEVEL | None = None
    any_language: bool = False


class _OverflowModel(_Strict):
    after_s: _SECONDS = 0.0
    target: _TARGET


class _IntentModel(_Strict):
    skills: dict[_KEY, _LEVEL] = Field(min_length=1)
    overflow: tuple[_OverflowModel, ...] = Field(min_length=1)
    relaxation: tuple[_RelaxModel, ...] | None = None  # None: the default stages

    @field_validator("overflow", mode="before")
    @classmethod
    def _single_target(cls, value: object) -> object:
        """``overflow: queue:billing`` is short for ``overflow: [{target: queue:billing}]``."""
        return [{"target": value}] if isinstance(value, str) else value


class _AffinityModel(_Strict):
    window_days: Annotated[float, Field(ge=0, le=3650)] = 30.0
    max_wait_s: _SECONDS = 60.0


class _RoutingModel(_Strict):
    skills: tuple[_KEY, ...] = Field(min_length=1)
    fallback_target: _TARGET = "queue:general"
    max_candidates: int = Field(5, ge=1, le=50)
    affinity: _AffinityModel = _AffinityModel()
    relaxation: tuple[_RelaxModel, ...] = ()
    intents: dict[_KEY, _IntentModel] = Field(min_length=1)


def _stage_problems(key: str, stages: tuple[_RelaxModel, ...]) -> list[tuple[str, str]]:
    """Stages start later and later, and never tighten what an earlier stage relaxed."""
    problems: list[tuple[str, str]] = []
    for index in range(1, len(stages)):
        here, before = stages[index], stages[index - 1]
        where = f"{key}[{index}]"
        if here.after_s <= before.after_s:
            problems.append((f"{where}.after_s", f"must be greater than {before.after_s:g}"))
        if before.min_proficiency is not None and (
            here.min_proficiency is None or here.min_proficiency > before.min_proficiency
        ):
            problems.append(
                (
                    f"{where}.min_proficiency",
                    f"must be at most {before.min_proficiency} (stages only relax)",
                )
            )
        if before.any_language and not here.any_language:
            problems.append((f"{where}.any_language", "must stay true once relaxed"))
    return problems


def _overflow_problems(key: str, stages: tuple[_OverflowModel, ...]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if stages[0].after_s != 0:
        problems.append((f"{key}[0].after_s", "the first overflow target must start at 0"))
    for index in range(1, len(stages)):
        if stages[index].after_s <= stages[index - 1].after_s:
            problems.append(
                (f"{key}[{index}].after_s", f"must be greater than {stages[index - 1].after_s:g}")
            )
    return problems


def _check_consistency(model: _RoutingModel) -> list[tuple[str, str]]:
    problems = _stage_problems("relaxation", model.relaxation)
    known = set(model.skills)
    for name in sorted(set(model.skills)):
        if model.skills.count(name) > 1:
            problems.append(("skills", f"{name!r} is listed twice"))
    for intent, rule in model.intents.items():
        key = f"intents.{intent}"
        for skill in rule.skills:
            if skill not in known:
                problems.append(
                    (f"{key}.skills.{skill}", f"unknown skill (add it under skills: {skill!r})")
                )
        problems += _overflow_problems(f"{key}.overflow", rule.overflow)
        if rule.relaxation is not None:
            problems += _stage_problems(f"{key}.relaxation", rule.relaxation)
    return problems


def _to_domain(model: _RoutingModel) -> RoutingConfig:
    default_stages = tuple(RelaxationStage(**s.model_dump()) for s in model.relaxation)
    intents = {
        intent: IntentRule(
            intent=intent,
            skills=tuple(SkillRequirement(s, level) for s, level in rule.skills.items()),
            overflow=tuple(OverflowStage(o.after_s, o.target) for o in rule.overflow),
            relaxation=default_stages
            if rule.relaxation is None
            else tuple(RelaxationStage(**s.model_dump()) for s in rule.relaxation),
        )
        for intent, rule in model.intents.items()
    }
    return RoutingConfig(
        intents=MappingProxyType(intents),
        fallback_target=model.fallback_target,
        affinity=AffinityPolicy(**model.affinity.model_dump()),
        max_candidates=model.max_candidates,
    )


def _message(error: ErrorDetails) -> str:
    message = plain_message(error)
    if error["type"] == "string_pattern_mismatch" and "target" in key_path(error["loc"]):
        return f"{message} ({_FIX_TARGET})"
    return message


def parse_routing_config(path: Path, text: str) -> RoutingConfig:
    """Parse and validate one routing document; raise ``ConfigError`` naming file and key."""
    raw = load_mapping(path, text, "'skills:' and 'intents:'")
    try:
        model = _RoutingModel.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_problems(path, exc, _message)) from exc
    problems = _check_consistency(model)
    if problems:
        raise ConfigError("\n".join(f"{path}: {key}: {msg}" for key, msg in problems))
    return _to_domain(model)


def load_routing_config(path: Path) -> RoutingConfig:
    """Read and validate the routing configuration file (e.g. ``config/routing.yaml``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(
            f"routing_file: {path}: cannot read routing configuration: {reason}"
            + from_working_dir(Path(path))
        ) from exc
    return parse_routing_config(Path(path), text)


def check_intents_routed(
    config: RoutingConfig, intents: Collection[str], source: Path | str
) -> None:
    """Fail start-up when a menu intent has no routing rule (it would only reach the
    fallback target)."""
    missing = sorted(set(intents) - set(config.intents))
    if missing:
        raise ConfigError(
            f"{source}: intents: no routing rule for {', '.join(missing)} "
            "(add them under intents: in the routing configuration)"
        )

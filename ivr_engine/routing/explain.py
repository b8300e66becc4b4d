"""Human-readable reasons for routing decisions, for the screen pop and the timeline.

Every text is a deterministic function of its arguments (whole seconds and days, rounded
down), so the same decision always explains itself the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from ivr_engine.routing.models import RelaxationStage

_HOUR = 3600.0
_DAY = 86400.0

# which part of the ranking key separated the first two candidates (see policy._Entry)
FACTORS = ("language", "last-agent affinity", "proficiency", "idle time", "agent id")
IDLE_FACTOR = 3


def seconds(value: float) -> str:
    return f"{int(max(value, 0.0))} s"


def ago(age_s: float) -> str:
    """'just now' (< 1 hour), 'N hours ago' (< 1 day), else 'N days ago'."""
    age_s = max(age_s, 0.0)
    if age_s < _HOUR:
        return "just now"
    if age_s < _DAY:
        return _plural(int(age_s // _HOUR), "hour") + " ago"
    return _plural(int(age_s // _DAY), "day") + " ago"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def skill(name: str, level: int, minimum: int) -> str:
    return f"{name} proficiency {level} ≥ {minimum}"


def language(code: str, speaks: bool) -> str:
    return f"speaks {code}" if speaks else f"does not speak {code} (language relaxed)"


def stage(index: int, rule: RelaxationStage, waited_s: float) -> str:
    accepts = []
    if rule.min_proficiency is not None:
        accepts.append(f"proficiency ≥ {rule.min_proficiency}")
    if rule.any_language:
        accepts.append("any language")
    what = " and ".join(accepts) or "the configured levels"
    return f"waited {seconds(waited_s)}: stage {index} accepts {what}"


def next_stage(in_s: float, index: int) -> str:
    return f"stage {index} relaxes the rule in {seconds(in_s)}"


def affinity(age_s: float) -> str:
    return f"last helped this customer {ago(age_s)}"


def affinity_expired(age_s: float, window_days: float) -> str:
    return f"last agent helped {ago(age_s)}, outside the {window_days:g}-day affinity window"


def affinity_wait_over(waited_s: float, limit_s: float) -> str:
    return f"waited {seconds(waited_s)} ≥ {seconds(limit_s)}: last-agent affinity dropped"


def affinity_missed(agent_id: str, why: str) -> str:
    return f"last agent {agent_id} passed over: {why}"


def idle(idle_s: float, longest: bool) -> str:
    return f"idle {seconds(idle_s)}" + (" (longest)" if longest else "")


def ranking(eligible: int, factor: int | None) -> str:
    if factor is None:
        return "only eligible agent"
    return f"ranked first of {eligible} eligible agents (decided by {FACTORS[factor]})"


def requirement(levels: Sequence[tuple[str, int]], code: str | None, strict: bool) -> str:
    parts = [f"{name} ≥ {minimum}" for name, minimum in levels]
    if code is not None and strict:
        parts.append(f"speaks {code}")
    return ", ".join(parts)


def no_fit(needs: str) -> str:
    return f"no agent fits: {needs}"


def pool(skill_name: str, size: int, parts: Sequence[tuple[int, str]]) -> str:
    counted = ", ".join(f"{count} {label}" for count, label in parts if count)
    return f"of {size} agents with {skill_name}: {counted}"


def no_skilled(skill_name: str) -> str:
    return f"no agent on the roster has {skill_name}"


def overflow(target: str, after_s: float) -> str:
    when = "" if after_s == 0 else f" (after {seconds(after_s)})"
    return f"overflow to {target}{when}"


def unknown_intent(intent: str, target: str) -> tuple[str, ...]:
    return (f"no routing rule for intent {intent!r}", f"fail closed to {target}")

"""Routing values refuse bad input at construction; reason texts are exact and deterministic."""

from __future__ import annotations

import dataclasses

import pytest
from test_routing_helpers import NOW, agent, config, rule

from ivr_engine.routing import (
    Agent,
    AgentSnapshot,
    AgentState,
    IntentRule,
    LastAgent,
    OverflowStage,
    RelaxationStage,
    RoutingConfig,
    RoutingRequest,
    SkillRequirement,
    build_roster,
    explain,
)
from ivr_engine.routing.models import language_key

# --------------------------------------------------------------------------- agents


@pytest.mark.parametrize("level", [0, 6, -1, True])
def test_agent_refuses_proficiency_out_of_range(level: int) -> None:
    with pytest.raises(ValueError, match="'billing' proficiency"):
        agent("1", {"billing": level})


def test_agent_refuses_bad_identity_and_capacity() -> None:
    with pytest.raises(ValueError, match="agent_id and endpoint"):
        Agent("", "No one", "PJSIP/x")
    with pytest.raises(ValueError, match="agent_id and endpoint"):
        Agent("1", "No endpoint", "")
    with pytest.raises(ValueError, match="max_concurrent must be at least 1"):
        agent("1", max_concurrent=0)


def test_agent_skills_are_copied_and_read_only() -> None:
    skills = {"billing": 4}
    profile = agent("1", skills)
    skills["billing"] = 1
    assert profile.skills["billing"] == 4
    with pytest.raises(TypeError):
        profile.skills["billing"] = 5  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.team = "red"  # type: ignore[misc]


def test_agent_languages_are_normalised() -> None:
    assert agent("1", languages=["EN-gb", "es_419", " fr "]).languages == {"en", "es", "fr"}


@pytest.mark.parametrize(("raw", "key"), [("en", "en"), ("EN-US", "en"), ("pt_BR", "pt")])
def test_language_key(raw: str, key: str) -> None:
    assert language_key(raw) == key


def test_agents_with_equal_fields_are_equal_and_hashable() -> None:
    assert agent("1") == agent("1")
    assert hash(agent("1")) == hash(agent("1"))


def test_naive_datetimes_are_refused() -> None:
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(ValueError, match="agent '1' state_since must be timezone-aware"):
        AgentSnapshot("1", AgentState.AVAILABLE, naive)
    with pytest.raises(ValueError, match="waiting_since must be timezone-aware"):
        RoutingRequest("billing", naive)
    with pytest.raises(ValueError, match="helped_at must be timezone-aware"):
        LastAgent("1", naive)


def test_agent_states_are_the_live_state_vocabulary() -> None:
    assert [s.value for s in AgentState] == [
        "logged_out",
        "available",
        "reserved",
        "ringing",
        "on_call",
        "wrap_up",
        "paused",
    ]


# --------------------------------------------------------------------------- rules


def test_intent_rule_checks() -> None:
    overflow = (OverflowStage(0, "queue:billing"),)
    with pytest.raises(ValueError, match="non-empty and unique"):
        IntentRule("billing", (), overflow)
    twice = (SkillRequirement("billing", 4), SkillRequirement("billing", 2))
    with pytest.raises(ValueError, match="non-empty and unique"):
        IntentRule("billing", twice, overflow)
    with pytest.raises(ValueError, match="at least one overflow target"):
        IntentRule("billing", twice[:1], ())
    backwards = (RelaxationStage(60, 1), RelaxationStage(20, 2))
    with pytest.raises(ValueError, match="time order"):
        IntentRule("billing", twice[:1], overflow, backwards)


def test_config_needs_at_least_one_candidate() -> None:
    with pytest.raises(ValueError, match="max_candidates"):
        RoutingConfig(intents={"billing": rule("billing", {"billing": 4})}, max_candidates=0)
    assert config().max_candidates == 5


# --------------------------------------------------------------------------- roster


def test_roster_indexes_by_skill_in_agent_id_order() -> None:
    roster = build_roster([agent("b", {"billing": 2, "sales": 5}), agent("a", {"billing": 5})])
    assert [a.agent_id for a in roster.agents] == ["a", "b"]
    assert [(a.agent_id, level) for a, level in roster.pool("billing")] == [("a", 5), ("b", 2)]
    assert [a.agent_id for a, _ in roster.pool("sales")] == ["b"]
    assert roster.pool("moving") == ()
    assert roster.by_id["b"].skills["sales"] == 5


def test_roster_refuses_duplicate_agents() -> None:
    with pytest.raises(ValueError, match="agent '1' is on the roster twice"):
        build_roster([agent("1"), agent("1", {"sales": 3})])


# --------------------------------------------------------------------------- explain


@pytest.mark.parametrize(
    ("age", "text"),
    [
        (-5, "just now"),
        (0, "just now"),
        (3599, "just now"),
        (3600, "1 hour ago"),
        (86399, "23 hours ago"),
        (86400, "1 day ago"),
        (3 * 86400 + 7200, "3 days ago"),
    ],
)
def test_ago(age: float, text: str) -> None:
    assert explain.ago(age) == text


def test_seconds_are_whole_and_never_negative() -> None:
    assert explain.seconds(119.99) == "119 s"
    assert explain.seconds(-3) == "0 s"


@pytest.mark.parametrize(
    ("stage", "text"),
    [
        (RelaxationStage(20, 2), "waited 25 s: stage 1 accepts proficiency ≥ 2"),
        (RelaxationStage(20, None, True), "waited 25 s: stage 1 accepts any language"),
        (
            RelaxationStage(20, 1, True),
            "waited 25 s: stage 1 accepts proficiency ≥ 1 and any language",
        ),
        (RelaxationStage(20), "waited 25 s: stage 1 accepts the configured levels"),
    ],
)
def test_stage_texts(stage: RelaxationStage, text: str) -> None:
    assert explain.stage(1, stage, 25.4) == text


def test_reason_texts() -> None:
    assert explain.skill("billing", 5, 4) == "billing proficiency 5 ≥ 4"
    assert explain.affinity(3 * 86400) == "last helped this customer 3 days ago"
    assert explain.idle(120.7, True) == "idle 120 s (longest)"
    assert explain.idle(120.7, False) == "idle 120 s"
    assert explain.overflow("queue:billing", 0) == "overflow to queue:billing"
    assert explain.overflow("callback", 180) == "overflow to callback (after 180 s)"
    assert explain.requirement([("billing", 4)], "es", True) == "billing ≥ 4, speaks es"
    assert explain.requirement([("billing", 4)], "es", False) == "billing ≥ 4"
    assert explain.pool("billing", 3, [(2, "not available"), (0, "x"), (1, "already tried")]) == (
        "of 3 agents with billing: 2 not available, 1 already tried"
    )
    assert explain.affinity_expired(31 * 86400, 30.0) == (
        "last agent helped 31 days ago, outside the 30-day affinity window"
    )
    assert explain.affinity_expired(31 * 86400, 7.5).endswith("outside the 7.5-day affinity window")

"""Best-skilled routing: one scenario per rule of the policy, reasons checked word for word."""

from __future__ import annotations

import dataclasses
from datetime import timedelta, timezone

import pytest
from test_routing_helpers import NOW, agent, config, decide, request, rule, snap

from ivr_engine.routing import (
    AffinityPolicy,
    AgentChosen,
    AgentState,
    Overflow,
    OverflowReason,
    OverflowStage,
    RoutingDecision,
    RoutingRequest,
    build_roster,
    route_call,
)

NOT_AVAILABLE = [s for s in AgentState if s is not AgentState.AVAILABLE]


def chosen(decision: RoutingDecision) -> AgentChosen:
    assert isinstance(decision, AgentChosen), decision
    return decision


def overflowed(decision: RoutingDecision) -> Overflow:
    assert isinstance(decision, Overflow), decision
    return decision


# --------------------------------------------------------------------------- ranking


def test_best_proficiency_wins() -> None:
    agents = [agent("1001", {"billing": 4}), agent("1002", {"billing": 5})]
    decision = chosen(decide(agents, [snap("1001", idle_s=900), snap("1002", idle_s=10)]))
    assert (decision.agent_id, decision.endpoint) == ("1002", "PJSIP/agent-1002")
    assert decision.reasons == (
        "billing proficiency 5 ≥ 4",
        "idle 10 s",
        "ranked first of 2 eligible agents (decided by proficiency)",
    )
    assert decision.score.proficiency == 5 and decision.score.skills == (("billing", 5),)
    assert [c.agent_id for c in decision.candidates] == ["1002", "1001"]
    assert decision.stage == 0 and decision.eligible == 2 and decision.intent == "billing"


def test_longest_idle_breaks_a_proficiency_tie() -> None:
    agents = [agent("1001"), agent("1002"), agent("1003")]
    states = [snap("1001", idle_s=30), snap("1002", idle_s=120), snap("1003", idle_s=5)]
    decision = chosen(decide(agents, states))
    assert decision.agent_id == "1002"
    assert "idle 120 s (longest)" in decision.reasons
    assert decision.reasons[-1] == "ranked first of 3 eligible agents (decided by idle time)"
    assert [c.agent_id for c in decision.candidates] == ["1002", "1001", "1003"]
    assert decision.score.idle_s == 120.0


def test_agent_id_breaks_a_full_tie() -> None:
    decision = chosen(decide([agent("b"), agent("a")], [snap("b"), snap("a")]))
    assert decision.agent_id == "a"
    assert decision.reasons[-1] == "ranked first of 2 eligible agents (decided by agent id)"


def test_only_eligible_agent() -> None:
    decision = chosen(decide([agent("1001")], [snap("1001")]))
    assert decision.reasons[-1] == "only eligible agent"
    assert len(decision.candidates) == 1


def test_candidates_are_cut_to_max_candidates() -> None:
    agents = [agent(f"{n}", {"billing": 5}) for n in range(10)]
    states = [snap(f"{n}", idle_s=100 + n) for n in range(10)]
    decision = chosen(decide(agents, states, cfg=config(max_candidates=3)))
    assert [c.agent_id for c in decision.candidates] == ["9", "8", "7"]
    assert decision.eligible == 10
    one = chosen(decide(agents, states, cfg=config(max_candidates=1)))
    assert len(one.candidates) == 1
    assert one.reasons[-1] == "ranked first of 10 eligible agents (decided by idle time)"


def test_candidate_carries_the_profile() -> None:
    decision = chosen(decide([agent("1001", team="red")], [snap("1001")]))
    candidate = decision.candidates[0]
    assert (candidate.name, candidate.team, candidate.endpoint) == (
        "Agent 1001",
        "red",
        "PJSIP/agent-1001",
    )
    assert candidate.score == decision.score


# --------------------------------------------------------------------------- exclusions


@pytest.mark.parametrize("state", NOT_AVAILABLE)
def test_agents_not_available_are_skipped(state: AgentState) -> None:
    agents = [agent("1001", {"billing": 5}), agent("1002", {"billing": 4})]
    decision = chosen(decide(agents, [snap("1001", state), snap("1002")]))
    assert decision.agent_id == "1002" and decision.eligible == 1


def test_agent_without_live_state_is_not_available() -> None:
    decision = overflowed(decide([agent("1001")], []))
    assert "of 1 agents with billing: 1 not available" in decision.reasons


def test_max_concurrency() -> None:
    agents = [agent("1001", {"billing": 5}, max_concurrent=2), agent("1002", {"billing": 5})]
    full = decide(agents, [snap("1001", interactions=2), snap("1002", interactions=1)])
    assert overflowed(full).reasons[1] == "of 2 agents with billing: 2 at max concurrency"
    room = chosen(decide(agents, [snap("1001", interactions=1), snap("1002", interactions=1)]))
    assert room.agent_id == "1001"


def test_ring_no_answer_reroute_skips_tried_agents() -> None:
    agents = [agent("1001", {"billing": 5}), agent("1002", {"billing": 4})]
    states = [snap("1001"), snap("1002")]
    assert chosen(decide(agents, states, request(exclude={"1001"}))).agent_id == "1002"
    none_left = overflowed(decide(agents, states, request(exclude={"1001", "1002"})))
    assert none_left.reason is OverflowReason.NO_AGENT_FITS
    assert "of 2 agents with billing: 2 already tried" in none_left.reasons


def test_each_refused_agent_is_counted_once_at_its_first_failed_check() -> None:
    agents = [
        agent("a", {"billing": 5}),
        agent("b", {"billing": 5}),
        agent("c", {"billing": 5}),
        agent("d", {"billing": 2}),
        agent("e", {"billing": 5}, ["fr"]),
        agent("f", {"billing": 2}, ["fr"]),
    ]
    states = [
        snap("a", AgentState.PAUSED),
        snap("b", interactions=1),
        snap("c"),
        snap("d"),
        snap("e"),
        snap("f", AgentState.ON_CALL),
    ]
    decision = overflowed(decide(agents, states, request(language="en", exclude={"c"})))
    assert decision.reasons == (
        "no agent fits: billing ≥ 4, speaks en",
        "of 6 agents with billing: 2 not available, 1 at max concurrency, 1 already tried, "
        "1 below the level, 1 without the language",
        "stage 1 relaxes the rule in 20 s",
        "overflow to queue:billing",
    )
    assert decision.retry_after_s == 20.0 and decision.stage == 0


# --------------------------------------------------------------------------- relaxation


def test_first_stage_accepts_proficiency_two() -> None:
    agents = [agent("1001", {"billing": 3})]
    assert isinstance(decide(agents, [snap("1001")], request(waited_s=19.9)), Overflow)
    decision = chosen(decide(agents, [snap("1001")], request(waited_s=25)))
    assert decision.stage == 1
    assert decision.reasons[:2] == (
        "waited 25 s: stage 1 accepts proficiency ≥ 2",
        "billing proficiency 3 ≥ 2",
    )


def test_second_stage_accepts_any_agent_with_the_skill() -> None:
    agents = [agent("1001", {"billing": 1}), agent("1002", {"sales": 5})]
    states = [snap("1001"), snap("1002")]
    early = overflowed(decide(agents, states, request(waited_s=59)))
    assert early.stage == 1 and early.retry_after_s == pytest.approx(1.0)
    decision = chosen(decide(agents, states, request(waited_s=60)))
    assert decision.agent_id == "1001" and decision.stage == 2


def test_stage_boundary_is_inclusive() -> None:
    decision = overflowed(
        decide([agent("1001", {"billing": 1})], [snap("1001")], request(waited_s=20))
    )
    assert decision.stage == 1
    assert decision.reasons[0] == "waited 20 s: stage 1 accepts proficiency ≥ 2"


def test_relaxation_never_raises_a_low_requirement() -> None:
    cfg = config(rule("operator", {"general": 1}))
    decision = chosen(
        decide([agent("1", {"general": 1})], [snap("1")], request("operator", waited_s=30), cfg)
    )
    assert decision.stage == 1 and "general proficiency 1 ≥ 1" in decision.reasons


def test_retry_skips_stages_that_accept_nobody_new() -> None:
    cfg = config(rule("operator", {"general": 1}))
    nobody = overflowed(decide([agent("1", {"general": 3}, ["en"])], [], request("operator")))
    assert nobody.retry_after_s is None
    assert nobody.reasons == (
        "no agent fits: general ≥ 1",
        "of 1 agents with general: 1 not available",
        "overflow to queue:general",
    )
    spanish = overflowed(
        decide([agent("1", {"general": 3})], [snap("1")], request("operator", language="es"), cfg)
    )
    assert spanish.retry_after_s == 120.0
    assert "stage 3 relaxes the rule in 120 s" in spanish.reasons


def test_retry_is_none_after_the_last_stage() -> None:
    decision = overflowed(decide([agent("1001")], [], request(waited_s=500)))
    assert decision.retry_after_s is None and decision.stage == 3


def test_intent_without_relaxation_stays_strict() -> None:
    cfg = config(rule("billing", {"billing": 4}, relaxation=()))
    decision = overflowed(
        decide([agent("1", {"billing": 1})], [snap("1")], request(waited_s=999), cfg)
    )
    assert decision.stage == 0 and decision.retry_after_s is None


# --------------------------------------------------------------------------- language


def test_language_is_a_hard_filter_before_relaxation() -> None:
    agents = [agent("en1", {"billing": 5}, ["en"]), agent("es1", {"billing": 4}, ["es"])]
    decision = chosen(decide(agents, [snap("en1"), snap("es1")], request(language="es")))
    assert decision.agent_id == "es1" and decision.eligible == 1
    assert "speaks es" in decision.reasons and decision.score.speaks_language


def test_caller_language_is_normalised() -> None:
    agents = [agent("1", languages=["ES"])]
    assert chosen(decide(agents, [snap("1")], request(language="es-MX"))).agent_id == "1"
    assert chosen(decide(agents, [snap("1")], request(language="es_419"))).agent_id == "1"


def test_no_caller_language_means_no_filter() -> None:
    decision = chosen(decide([agent("1", languages=[])], [snap("1")], request(language="")))
    assert decision.score.speaks_language
    assert not any("speak" in reason for reason in decision.reasons)


def test_relaxed_language_still_prefers_speakers() -> None:
    agents = [agent("en1", {"billing": 5}, ["en"]), agent("es1", {"billing": 1}, ["es"])]
    states = [snap("en1"), snap("es1")]
    decision = chosen(decide(agents, states, request(language="es", waited_s=130)))
    assert decision.agent_id == "es1"
    assert decision.reasons[-1] == "ranked first of 2 eligible agents (decided by language)"
    only_english = chosen(decide(agents[:1], states[:1], request(language="es", waited_s=130)))
    assert only_english.reasons[:3] == (
        "waited 130 s: stage 3 accepts proficiency ≥ 1 and any language",
        "billing proficiency 5 ≥ 1",
        "does not speak es (language relaxed)",
    )
    assert not only_english.score.speaks_language


# --------------------------------------------------------------------------- affinity


def test_last_agent_is_preferred_over_better_proficiency() -> None:
    agents = [agent("1001", {"billing": 4}), agent("1002", {"billing": 5})]
    states = [snap("1001", idle_s=1), snap("1002", idle_s=999)]
    decision = chosen(decide(agents, states, request(last=("1001", 3.5))))
    assert decision.agent_id == "1001" and decision.score.affinity
    assert decision.reasons == (
        "billing proficiency 4 ≥ 4",
        "last helped this customer 3 days ago",
        "idle 1 s",
        "ranked first of 2 eligible agents (decided by last-agent affinity)",
    )
    assert not decision.candidates[1].score.affinity


def test_affinity_window_is_configurable() -> None:
    agents = [agent("1001", {"billing": 4}), agent("1002", {"billing": 5})]
    states = [snap("1001"), snap("1002")]
    old = chosen(decide(agents, states, request(last=("1001", 45))))
    assert old.agent_id == "1002"
    assert "last agent helped 45 days ago, outside the 30-day affinity window" in old.reasons
    wide = config(affinity=AffinityPolicy(window_days=60, max_wait_s=60))
    assert chosen(decide(agents, states, request(last=("1001", 45)), wide)).agent_id == "1001"


def test_affinity_ends_at_the_wait_limit() -> None:
    agents = [agent("1001", {"billing": 4}), agent("1002", {"billing": 5})]
    states = [snap("1001"), snap("1002")]
    under = chosen(decide(agents, states, request(last=("1001", 1), waited_s=59)))
    assert under.agent_id == "1001"
    over = chosen(decide(agents, states, request(last=("1001", 1), waited_s=60)))
    assert over.agent_id == "1002" and not over.score.affinity
    assert "waited 60 s ≥ 60 s: last-agent affinity dropped" in over.reasons


@pytest.mark.parametrize(
    ("last_agent", "why"),
    [
        ("busy", "last agent busy passed over: on_call"),
        ("full", "last agent full passed over: at max concurrency (2 of 2)"),
        ("tried", "last agent tried passed over: already tried for this call"),
        ("junior", "last agent junior passed over: billing proficiency 2 < 4"),
        ("sales", "last agent sales passed over: no billing skill"),
        ("french", "last agent french passed over: does not speak en"),
        ("nostate", "last agent nostate passed over: no live state"),
        ("gone", "last agent gone passed over: not on the roster"),
    ],
)
def test_unavailable_last_agent_is_explained(last_agent: str, why: str) -> None:
    agents = [
        agent("best", {"billing": 5}),
        agent("busy"),
        agent("full", max_concurrent=2),
        agent("tried"),
        agent("junior", {"billing": 2}),
        agent("sales", {"sales": 5, "general": 1}),
        agent("french", languages=["fr"]),
        agent("nostate"),
    ]
    states = [
        snap("best"),
        snap("busy", AgentState.ON_CALL),
        snap("full", interactions=2),
        snap("tried"),
        snap("junior"),
        snap("sales"),
        snap("french"),
    ]
    req = request(language="en", last=(last_agent, 2), exclude={"tried"})
    decision = chosen(decide(agents, states, req))
    assert decision.agent_id == "best"
    assert why in decision.reasons


def test_last_agent_who_does_not_speak_the_language_ranks_after_speakers() -> None:
    agents = [agent("last", {"billing": 5}, ["en"]), agent("es1", {"billing": 1}, ["es"])]
    req = request(language="es", waited_s=130, last=("last", 1))
    cfg = config(affinity=AffinityPolicy(window_days=30, max_wait_s=300))
    decision = chosen(decide(agents, [snap("last"), snap("es1")], req, cfg))
    assert decision.agent_id == "es1"
    assert "last agent last passed over: does not speak es" in decision.reasons
    assert decision.candidates[1].score.affinity


# --------------------------------------------------------------------------- several skills


def test_every_required_skill_must_fit_and_proficiencies_add_up() -> None:
    cfg = config(rule("cancel", {"retention": 3, "billing": 2}))
    agents = [
        agent("only-billing", {"billing": 5}),
        agent("both-low", {"retention": 3, "billing": 2}),
        agent("both-high", {"retention": 4, "billing": 5}),
        agent("too-low", {"retention": 2, "billing": 5}),
    ]
    states = [snap(a.agent_id) for a in agents]
    decision = chosen(decide(agents, states, request("cancel"), cfg))
    assert decision.agent_id == "both-high"
    assert decision.score.skills == (("retention", 4), ("billing", 5))
    assert decision.score.proficiency == 9
    assert decision.reasons[:2] == ("retention proficiency 4 ≥ 3", "billing proficiency 5 ≥ 2")
    assert [c.agent_id for c in decision.candidates] == ["both-high", "both-low"]


def test_multi_skill_overflow_counts_the_rarest_pool() -> None:
    cfg = config(rule("cancel", {"billing": 2, "retention": 3}))
    agents = [agent("a", {"billing": 5}), agent("b", {"billing": 5, "retention": 1})]
    decision = overflowed(decide(agents, [snap("a"), snap("b")], request("cancel"), cfg))
    assert decision.reasons[:2] == (
        "no agent fits: billing ≥ 2, retention ≥ 3",
        "of 1 agents with retention: 1 below the level",
    )


# --------------------------------------------------------------------------- overflow


def test_nobody_with_the_skill() -> None:
    decision = overflowed(decide([agent("1", {"sales": 5})], [snap("1")]))
    assert decision.reason is OverflowReason.NO_SKILLED_AGENT
    assert decision.retry_after_s is None
    assert decision.reasons == ("no agent on the roster has billing", "overflow to queue:billing")


def test_overflow_target_changes_as_the_caller_waits() -> None:
    at_239 = overflowed(decide([], [], request(waited_s=239)))
    assert at_239.target == "queue:billing"
    at_240 = overflowed(decide([], [], request(waited_s=240)))
    assert at_240.target == "callback"
    assert at_240.reasons[-1] == "overflow to callback (after 240 s)"
    assert at_240.reasons[0] == "waited 240 s: stage 3 accepts proficiency ≥ 1 and any language"


def test_unknown_intent_fails_closed_to_the_fallback() -> None:
    decision = overflowed(decide([agent("1")], [snap("1")], request("lottery")))
    assert decision.target == "queue:general"
    assert decision.reason is OverflowReason.UNKNOWN_INTENT
    assert decision.reasons == (
        "no routing rule for intent 'lottery'",
        "fail closed to queue:general",
    )


def test_overflow_with_a_single_target() -> None:
    cfg = config(rule("billing", {"billing": 4}, (OverflowStage(0, "queue:billing"),)))
    assert overflowed(decide([], [], request(waited_s=9999), cfg)).target == "queue:billing"


# --------------------------------------------------------------------------- time


def test_times_in_the_future_count_as_now() -> None:
    states = [snap("1", idle_s=-30), snap("2", idle_s=-5)]
    decision = chosen(decide([agent("1"), agent("2")], states, request(waited_s=-10)))
    assert decision.stage == 0
    assert decision.score.idle_s == 0.0
    assert decision.agent_id == "1"  # equal (clamped) idle: agent id decides
    future_help = chosen(decide([agent("1")], [snap("1")], request(last=("1", -1))))
    assert "last helped this customer just now" in future_help.reasons


def test_now_in_another_timezone_gives_the_same_decision() -> None:
    agents = [agent("1", {"billing": 5}), agent("2")]
    states = [snap("1", idle_s=5), snap("2", idle_s=500)]
    utc = decide(agents, states, request(waited_s=25))
    paris = NOW.astimezone(timezone(timedelta(hours=2)))
    assert decide(agents, states, request(waited_s=25), now=paris) == utc


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        decide([agent("1")], [snap("1")], now=NOW.replace(tzinfo=None))


def test_decisions_are_frozen() -> None:
    decision = chosen(decide([agent("1")], [snap("1")]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.agent_id = "2"  # type: ignore[misc]


def test_route_call_accepts_a_prebuilt_roster_and_plain_dict() -> None:
    roster = build_roster([agent("1"), agent("2", {"billing": 5})])
    states = {"1": snap("1"), "2": snap("2")}
    req = RoutingRequest("billing", NOW - timedelta(seconds=3), "en")
    first = route_call(req, roster, states, config(), NOW)
    again = route_call(req, roster, states, config(), NOW)
    assert first == again and chosen(first).agent_id == "2"

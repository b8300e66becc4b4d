"""Best-skilled agent routing: pure functions from roster + live state to an explainable
decision (an agent, or an overflow target).

No I/O and no clock reads: ``now`` is always a parameter. Build the ``Roster`` when agent
profiles change; call ``route_call`` per decision with a snapshot of live states.
"""

from ivr_engine.routing.config import (
    check_intents_routed,
    load_routing_config,
    parse_routing_config,
)
from ivr_engine.routing.models import (
    AffinityPolicy,
    Agent,
    AgentChosen,
    AgentSnapshot,
    AgentState,
    Candidate,
    IntentRule,
    LastAgent,
    Overflow,
    OverflowReason,
    OverflowStage,
    RelaxationStage,
    RoutingConfig,
    RoutingDecision,
    RoutingRequest,
    ScoreParts,
    SkillRequirement,
)
from ivr_engine.routing.policy import route_call
from ivr_engine.routing.roster import Roster, build_roster

__all__ = [
    "AffinityPolicy",
    "Agent",
    "AgentChosen",
    "AgentSnapshot",
    "AgentState",
    "Candidate",
    "IntentRule",
    "LastAgent",
    "Overflow",
    "OverflowReason",
    "OverflowStage",
    "RelaxationStage",
    "Roster",
    "RoutingConfig",
    "RoutingDecision",
    "RoutingRequest",
    "ScoreParts",
    "SkillRequirement",
    "build_roster",
    "check_intents_routed",
    "load_routing_config",
    "parse_routing_config",
    "route_call",
]

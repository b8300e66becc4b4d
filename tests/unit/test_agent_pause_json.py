"""``GET /v1/agents`` says why a paused agent is paused, only while that note still applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ivr_engine.agents.model import AgentSnapshot, AgentState
from ivr_engine.contact_center.agent_record import AgentRecord
from ivr_engine.contact_center.agents_api import agent_json
from ivr_engine.contact_center.device_state import PauseNote

SINCE = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RECORD = AgentRecord(
    agent_id="a1", name="Bea", sip_endpoint="PJSIP/agent-1", skills={"billing": 5},
    languages=("en",), team="billing", max_concurrent=1, password_hash=None,
    token_sha256=None,
)  # fmt: skip
NOTE = PauseNote("device_unreachable", "PJSIP/agent-1 UNAVAILABLE", SINCE.timestamp(), True)


def snapshot(state: AgentState, since: datetime = SINCE) -> AgentSnapshot:
    return AgentSnapshot("a1", state, since, None, (), 1)


def test_a_paused_agent_with_its_note_shows_the_reason() -> None:
    shown = agent_json(RECORD, snapshot(AgentState.PAUSED), NOTE)["pause"]
    assert shown == {
        "reason": "device_unreachable",
        "detail": "PJSIP/agent-1 UNAVAILABLE",
        "by_engine": True,
    }


def test_a_stale_or_missing_note_shows_nothing() -> None:
    later = SINCE + timedelta(minutes=5)  # paused again since, for another reason
    assert agent_json(RECORD, snapshot(AgentState.PAUSED, later), NOTE)["pause"] is None
    assert agent_json(RECORD, snapshot(AgentState.AVAILABLE), NOTE)["pause"] is None
    assert agent_json(RECORD, snapshot(AgentState.PAUSED), None)["pause"] is None
    assert agent_json(RECORD, None, NOTE)["pause"] is None

"""The pure rules mapping Asterisk device / queue-member state to agent state changes."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_engine.agents.model import TRANSITIONS, AgentState, ChangeCause
from ivr_engine.contact_center.device_state import (
    CALL_STATES,
    DEVICE_CONDITIONS,
    QUEUE_MEMBER_STATUS,
    DeviceCondition,
    DeviceSeen,
    DeviceView,
    PauseNote,
    QueueMemberLeft,
    QueuePauseSeen,
    Step,
    decide,
    observations_from_event,
    observe,
)

S = AgentState
C = DeviceCondition
SINCE = 1_700_000_000.25
AGENT_1 = frozenset({"pjsip/agent-1"})


def view(state: str = "", paused: Iterable[str] = (), pending: bool = False) -> DeviceView:
    condition = DEVICE_CONDITIONS.get(state, C.UNKNOWN)
    return DeviceView(condition, state, frozenset(paused), "", pending)


def engine_note(reason: str = "device_busy", since: float = SINCE) -> PauseNote:
    return PauseNote(reason, "phone INUSE", since, engine_made=True)


def agents_note(since: float = SINCE) -> PauseNote:
    return PauseNote("queue_paused", "lunch", since, engine_made=False)


# --- parsing: the events as Asterisk 22.10 sent them in the testbed -------------------------


def test_device_state_change_is_a_device_observation() -> None:
    event = {"Event": "DeviceStateChange", "Device": "PJSIP/agent-1", "State": "INUSE"}
    assert observations_from_event(event) == [DeviceSeen(AGENT_1, C.BUSY, "INUSE")]


def test_queue_member_pause_carries_status_and_pause() -> None:
    event = {
        "Event": "QueueMemberPause",
        "Queue": "billing",
        "MemberName": "PJSIP/agent-1",
        "Interface": "PJSIP/agent-1",
        "StateInterface": "PJSIP/agent-1",
        "Status": "1",
        "Paused": "1",
        "PausedReason": "lunch",
    }
    assert observations_from_event(event) == [
        DeviceSeen(AGENT_1, C.FREE, "NOT_INUSE"),
        QueuePauseSeen(AGENT_1, "billing", True, "lunch"),
    ]


def test_queue_status_list_member_uses_location() -> None:
    event = {
        "Event": "QueueMember",
        "Queue": "billing",
        "Name": "PJSIP/agent-1",
        "Location": "Local/1@agents",
        "StateInterface": "PJSIP/agent-1",
        "Status": "6",
        "Paused": "0",
    }
    both = frozenset({"local/1@agents", "pjsip/agent-1"})
    assert observations_from_event(event) == [
        DeviceSeen(AGENT_1, C.BUSY, "RINGING"),
        QueuePauseSeen(both, "billing", False, ""),
    ]


def test_queue_member_removed_ends_that_queues_pause() -> None:
    event = {"Event": "QueueMemberRemoved", "Queue": "billing", "Interface": "PJSIP/agent-1"}
    assert observations_from_event(event) == [QueueMemberLeft(AGENT_1, "billing")]


@pytest.mark.parametrize(
    "event",
    [
        {"Event": "Hangup", "Channel": "PJSIP/agent-1-00000001"},
        {"Event": "DeviceStateChange", "Device": "PJSIP/agent-1"},
        {"Event": "QueueMemberStatus", "Interface": "PJSIP/agent-1", "Status": "2"},
        {"Event": "QueueMemberStatus", "Queue": "q", "Status": "2"},
    ],
)
def test_events_without_what_is_needed_say_nothing(event: dict[str, str]) -> None:
    assert observations_from_event(event) == []


def test_every_queue_status_number_maps_to_a_device_state() -> None:
    for number, name in enumerate(QUEUE_MEMBER_STATUS):
        event = {
            "Event": "QueueMemberStatus",
            "Queue": "q",
            "Interface": "X/1",
            "Status": str(number),
        }
        assert observations_from_event(event)[0] == DeviceSeen(
            frozenset({"x/1"}), DEVICE_CONDITIONS[name], name
        )
    bad = {"Event": "QueueMemberStatus", "Queue": "q", "Interface": "X/1", "Status": "99"}
    assert observations_from_event(bad) == []


def test_pause_in_two_queues_lasts_until_both_are_unpaused() -> None:
    v = observe(DeviceView(), QueuePauseSeen(AGENT_1, "a", True, "lunch"))
    v = observe(v, QueuePauseSeen(AGENT_1, "b", True, ""))
    assert v.paused_in == {"a", "b"} and v.pause_reason == "lunch"
    v = observe(v, QueuePauseSeen(AGENT_1, "a", False))
    assert v.queue_paused
    assert not observe(v, QueueMemberLeft(AGENT_1, "b")).queue_paused


# --- device state ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"])
def test_a_busy_phone_holds_an_available_agent(state: str) -> None:
    decision = decide(S.AVAILABLE, SINCE, None, view("NOT_INUSE"), view(state))
    assert (decision.step, decision.reason) == (Step.HOLD, "device_busy")


@pytest.mark.parametrize("state", ["UNAVAILABLE", "INVALID"])
def test_an_unreachable_phone_holds_an_available_agent(state: str) -> None:
    decision = decide(S.AVAILABLE, SINCE, None, view("NOT_INUSE"), view(state))
    assert (decision.step, decision.reason) == (Step.HOLD, "device_unreachable")


def test_the_phone_free_again_resumes_the_engines_pause() -> None:
    decision = decide(S.PAUSED, SINCE, engine_note(), view("INUSE"), view("NOT_INUSE"))
    assert decision.step is Step.RESUME


def test_the_phone_free_again_never_lifts_the_agents_own_pause() -> None:
    assert decide(S.PAUSED, SINCE, None, view("INUSE"), view("NOT_INUSE")).step is Step.NOTHING
    mine = decide(S.PAUSED, SINCE, agents_note(), view("INUSE"), view("NOT_INUSE"))
    assert mine.step is Step.NOTHING


def test_a_note_from_an_earlier_pause_is_forgotten_not_obeyed() -> None:
    # The engine paused, the agent went available and paused again themselves.
    stale = engine_note(since=SINCE - 60)
    decision = decide(S.PAUSED, SINCE, stale, view("INUSE"), view("NOT_INUSE"))
    assert decision.step is Step.FORGET


def test_unreachable_then_busy_updates_the_engines_reason() -> None:
    note = engine_note("device_unreachable")
    decision = decide(S.PAUSED, SINCE, note, view("UNAVAILABLE"), view("INUSE"))
    assert (decision.step, decision.reason) == (Step.HOLD, "device_busy")
    assert decide(S.PAUSED, SINCE, engine_note(), view("INUSE"), view("BUSY")).step is Step.NOTHING


@pytest.mark.parametrize("state", sorted(CALL_STATES))
@pytest.mark.parametrize("device", ["RINGING", "INUSE", "NOT_INUSE", "UNAVAILABLE"])
def test_calls_routed_by_the_engine_are_left_alone(state: AgentState, device: str) -> None:
    assert decide(state, SINCE, None, view("NOT_INUSE"), view(device)).step is Step.NOTHING


def test_wrap_up_and_logged_out_are_not_held() -> None:
    for state in (S.WRAP_UP, S.LOGGED_OUT):
        assert decide(state, SINCE, None, view(), view("UNAVAILABLE")).step is Step.NOTHING


def test_unknown_says_nothing() -> None:
    assert decide(S.AVAILABLE, SINCE, None, view("INUSE"), view("UNKNOWN")).step is Step.NOTHING
    held = decide(S.PAUSED, SINCE, engine_note(), view("INUSE"), view("UNKNOWN"))
    assert held.step is Step.NOTHING


# --- queue pause ----------------------------------------------------------------------------


def test_a_queue_pause_pauses_an_available_or_wrapping_up_agent() -> None:
    for state in (S.AVAILABLE, S.WRAP_UP):
        decision = decide(state, SINCE, None, view("NOT_INUSE"), view("NOT_INUSE", {"billing"}))
        assert (decision.step, decision.reason) == (Step.PAUSE, "queue_paused")


def test_a_queue_pause_makes_the_engines_pause_the_agents_own() -> None:
    decision = decide(S.PAUSED, SINCE, engine_note(), view("INUSE"), view("INUSE", {"billing"}))
    assert decision.step is Step.PAUSE  # noted as the agent's: not lifted when the phone frees


def test_a_queue_unpause_resumes_a_paused_agent() -> None:
    decision = decide(S.PAUSED, SINCE, agents_note(), view("NOT_INUSE", {"q"}), view("NOT_INUSE"))
    assert decision.step is Step.RESUME


def test_a_queue_unpause_with_a_busy_phone_becomes_the_engines_hold() -> None:
    decision = decide(S.PAUSED, SINCE, agents_note(), view("INUSE", {"q"}), view("INUSE"))
    assert (decision.step, decision.reason) == (Step.HOLD, "device_busy")


def test_an_unpaused_member_without_a_change_never_lifts_a_desktop_pause() -> None:
    assert decide(S.PAUSED, SINCE, None, view("NOT_INUSE"), view("NOT_INUSE")).step is Step.NOTHING
    still = decide(S.AVAILABLE, SINCE, None, view("NOT_INUSE", {"q"}), view("NOT_INUSE", {"q"}))
    assert still.step is Step.NOTHING


def test_a_queue_pause_during_a_call_waits_for_available() -> None:
    during = decide(S.ON_CALL, SINCE, None, view("INUSE"), view("INUSE", {"q"}))
    assert during.step is Step.NOTHING and during.pending_queue_pause
    wrap = decide(
        S.WRAP_UP, SINCE, None, view("NOT_INUSE", {"q"}, True), view("NOT_INUSE", {"q"}, True)
    )
    assert wrap.step is Step.NOTHING and wrap.pending_queue_pause
    after = view("NOT_INUSE", {"q"}, pending=True)
    assert decide(S.AVAILABLE, SINCE, None, after, after).step is Step.PAUSE


def test_an_unpause_during_the_call_cancels_the_pending_pause() -> None:
    decision = decide(S.ON_CALL, SINCE, None, view("INUSE", {"q"}, True), view("INUSE"))
    assert not decision.pending_queue_pause


# --- properties -----------------------------------------------------------------------------

states = st.sampled_from(list(AgentState))
device_states = st.sampled_from([*DEVICE_CONDITIONS, ""])
queues = st.frozensets(st.sampled_from(["billing", "sales"]), max_size=2)
views = st.builds(view, device_states, queues, st.booleans())
notes = st.none() | st.builds(
    PauseNote,
    st.sampled_from(["device_busy", "device_unreachable", "queue_paused"]),
    st.just("x"),
    st.sampled_from([SINCE, SINCE - 5]),
    st.booleans(),
)


@given(states, notes, views, views)
def test_every_step_is_a_transition_the_store_allows(
    state: AgentState, note: PauseNote | None, before: DeviceView, after: DeviceView
) -> None:
    decision = decide(state, SINCE, note, before, after)
    target = {Step.HOLD: S.PAUSED, Step.PAUSE: S.PAUSED, Step.RESUME: S.AVAILABLE}.get(
        decision.step
    )
    if target is not None and target != state:
        assert ChangeCause.SET_STATE in TRANSITIONS[(state, target)]


@given(states, notes, views, views)
def test_calls_and_logged_out_agents_are_never_changed(
    state: AgentState, note: PauseNote | None, before: DeviceView, after: DeviceView
) -> None:
    decision = decide(state, SINCE, note, before, after)
    if state in CALL_STATES or state is S.LOGGED_OUT:
        assert decision.step in (Step.NOTHING, Step.FORGET)


@given(notes, views, views)
def test_only_the_engines_own_pause_is_resumed_by_the_phone(
    note: PauseNote | None, before: DeviceView, after: DeviceView
) -> None:
    decision = decide(S.PAUSED, SINCE, note, before, after)
    if decision.step is Step.RESUME:
        queue_unpause = before.queue_paused and not after.queue_paused
        engine_pause = note is not None and note.engine_made and note.since == SINCE
        assert queue_unpause or (engine_pause and after.condition is C.FREE)


@given(states, notes, views)
def test_a_recheck_of_a_settled_agent_changes_nothing(
    state: AgentState, note: PauseNote | None, current: DeviceView
) -> None:
    """Applying a decision and checking again with the same view leads nowhere new."""
    first = decide(state, SINCE, note, current, current)
    if first.step in (Step.HOLD, Step.PAUSE):
        settled = PauseNote(first.reason, first.detail, SINCE, first.step is Step.HOLD)
        now = DeviceView(current.condition, current.state, current.paused_in, "", False)
        assert decide(S.PAUSED, SINCE, settled, now, now).step is Step.NOTHING
    elif first.step is Step.RESUME:
        now = DeviceView(current.condition, current.state, current.paused_in, "", False)
        assert decide(S.AVAILABLE, SINCE + 1, None, now, now).step is Step.NOTHING

"""The pure pieces of the load across workers: the wire vocabulary between a worker and the
supervisor's ledger (``load_wire.py``), and the tracker ignoring a late "waiting" from
another worker for a call already answered or ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_engine.contact_center import load_wire as wire
from ivr_engine.contact_center.load_tracker import MAX_FINISHED, LoadTracker
from ivr_engine.contact_center.load_view import LoadView, WaitingCall
from ivr_engine.routing import Agent, build_roster, parse_routing_config

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
CONFIG = parse_routing_config(
    Path("routing.yaml"),
    "skills: [sales, billing]\nintents:\n"
    "  new_service: {skills: {sales: 3}, overflow: queue:sales}\n"
    "  billing: {skills: {billing: 4}, overflow: queue:billing}\n",
)
ROSTER = build_roster([Agent("a1", "Ann", "PJSIP/a1", {"sales": 3, "billing": 4})])


def tracker() -> LoadTracker:
    return LoadTracker.from_config(CONFIG, ROSTER)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_times_cross_the_wire_to_the_microsecond(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    assert wire.from_us(wire.to_us(aware)) == aware


def test_every_update_applied_on_the_other_side_is_the_call_it_was() -> None:
    here, there = tracker(), tracker()
    here.call_routed("c1", "billing", at(0), "a1")
    here.call_waiting("c2", "new_service", at(1))
    here.call_ringing("c2", "a1")
    here.call_missed("c2")
    here.call_routed("c3", "new_service", at(2), None)
    here.call_answered("c3", at=at(3))
    here.call_ended("c4", at=at(3))
    here.count_call("routed")
    here.count_route_decision("overflow")
    updates = [
        wire.routed("c1", "billing", at(0), "a1"),
        wire.waiting("c2", "new_service", at(1)),
        wire.ringing("c2", "a1"),
        wire.missed("c2"),
        wire.routed("c3", "new_service", at(2), None),
        wire.answered("c3", at(3)),
        wire.ended("c4", at(3)),
        wire.call_counted("routed"),
        wire.decision_counted("overflow"),
    ]
    message = wire.decode(wire.encode(["u", updates]))
    for update in message[1]:
        wire.apply_update(there, update)
    assert there.snapshot({}, at(10)) == here.snapshot({}, at(10))
    assert [c.call_id for c in there.calls()] == ["c1", "c2"]


@pytest.mark.parametrize(
    "update",
    [
        ["r", "c1", "billing", "12", None],  # a time as text
        ["r", "c1", "billing", 12],  # agent missing
        ["g", "c1", 7],
        ["e", "c1", 10**30],  # no such time
        ["o", "lost"],  # not an outcome
        ["k", "queue"],  # not a route kind
        ["z", "c1"],
        "r",
        None,
    ],
)
def test_anything_else_is_not_an_update(update: Any) -> None:
    with pytest.raises(wire.BadMessage):
        wire.apply_update(tracker(), update)


@pytest.mark.parametrize("line", [b"not json\n", b'{"u": 1}\n', b"[]\n", b"[1, 2]\n"])
def test_a_line_that_is_not_a_message_is_refused(line: bytes) -> None:
    with pytest.raises(wire.BadMessage):
        wire.decode(line)


def test_the_state_crosses_whole() -> None:
    state = wire.LoadState(
        calls=(WaitingCall("c1", "billing", at(0), "a1"), WaitingCall("c2", "x", at(1))),
        counters=tracker().counters(),
        workers={0: {"pops_lost": 2}, 1: {"updates_dropped": 5}},
    )
    message = wire.decode(wire.encode(wire.state_message(7, state)))
    assert message[:2] == ["s", 7]
    assert wire.parse_state(message[2]) == state


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"calls": [], "counters": {}},
        {"calls": [["c1", "billing", "soon", None]], "counters": {}, "workers": {}},
        {"calls": [["c1", "billing", 0, 5]], "counters": tracker().counters(), "workers": {}},
    ],
)
def test_a_malformed_state_is_refused(body: Any) -> None:
    with pytest.raises(wire.BadMessage):
        wire.parse_state(body)


# --------------------------------------------------------------------------- late updates


def test_a_late_waiting_for_a_call_that_ended_since_is_ignored() -> None:
    """Worker 0 applied the AMI hang-up before worker 1's routing update came in."""
    load = tracker()
    load.call_ended("c1", at=at(5))
    load.call_routed("c1", "billing", at(1), "a1")  # routed at 1 s, arrives after the end
    assert load.calls() == ()
    assert load.counters()["route_decisions"]["agent"] == 1  # the decision was made
    load.call_answered("c2", at=at(5))
    load.call_waiting("c2", "billing", at(2))
    assert load.calls() == ()


def test_a_waiting_that_started_after_the_end_is_a_new_wait() -> None:
    """The caller came back into the IVR (same channel, later): waited on again."""
    load = tracker()
    load.call_routed("c1", "billing", at(1), None)
    load.call_ended("c1", at=at(5))
    load.call_routed("c1", "billing", at(5), None)  # the same instant counts as new
    assert [c.since for c in load.calls()] == [at(5)]
    load.call_ended("c2")  # one process: no time, nothing remembered
    load.call_waiting("c2", "billing", at(4))
    assert [c.since for c in load.calls()] == [at(5), at(4)]


def test_remembered_ends_are_bounded() -> None:
    load = tracker()
    for n in range(MAX_FINISHED + 1):
        load.call_ended(f"c{n}", at=at(10))
    load.call_waiting("c0", "billing", at(1))  # the oldest end was forgotten
    load.call_waiting("c1", "billing", at(1))  # still remembered
    assert [c.call_id for c in load.calls()] == ["c0"]


def test_the_supervisors_tracker_needs_no_view() -> None:
    load = LoadTracker(LoadView.empty())
    load.call_routed("c1", "billing", at(0), None)
    assert len(load) == 1 and load.snapshot({}, at(1))["skills"][0]["skill"] == "(none)"

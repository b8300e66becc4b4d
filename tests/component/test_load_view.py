"""Real-time load: the pure ``LoadView``, the ``LoadTracker`` state, the Prometheus text and
the HTTP routes (``/v1/load``, ``/metrics``, the page) against the in-process agent store."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_engine.agents import (
    AgentSnapshot,
    AgentState,
    AgentStateUnavailable,
    InMemoryAgentStateStore,
)
from ivr_engine.api.errors import error_middleware
from ivr_engine.contact_center.load_tracker import LoadTracker, RouteKind
from ivr_engine.contact_center.load_view import (
    NO_SKILL,
    NO_TEAM,
    LoadSnapshot,
    LoadView,
    WaitingCall,
)
from ivr_engine.contact_center.metrics import (
    CONTENT_TYPE,
    PAGE_CSP,
    CountingSink,
    MetricFamily,
    escape_help,
    escape_label_value,
    format_family,
    format_value,
    load_routes,
    render_metrics,
)
from ivr_engine.domain.models import CallOutcome
from ivr_engine.flows.call_record import CallRecord, IncomingCall
from ivr_engine.routing import Agent, build_roster, parse_routing_config

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
STATES = [s.value for s in AgentState]
ZERO_STATES = dict.fromkeys(STATES, 0)
Client = TestClient[Any, Any]

ROUTING = """
skills: [sales, support, billing, retention]
intents:
  new_service: {skills: {sales: 3}, overflow: queue:sales}
  tech_support: {skills: {support: 3}, overflow: queue:support}
  billing: {skills: {billing: 4}, overflow: queue:billing}
  cancel: {skills: {retention: 4, billing: 2}, overflow: queue:retention}
"""
CONFIG = parse_routing_config(Path("routing.yaml"), ROUTING)
ROSTER = build_roster(
    [
        Agent("a1", "Ann", "PJSIP/a1", {"sales": 3, "billing": 4}, team="blue"),
        Agent("a2", "Bob", "PJSIP/a2", {"support": 5}, team="blue"),
        Agent("a3", "Cy", "PJSIP/a3", {"retention": 4, "billing": 2}, team="red"),
        Agent("a4", "Di", "PJSIP/a4", {"support": 1}),  # no team
    ]
)


def _tracker(**kw: Any) -> LoadTracker:
    return LoadTracker.from_config(CONFIG, ROSTER, **kw)


def _live(**states: AgentState) -> dict[str, AgentSnapshot]:
    return {
        agent_id: AgentSnapshot(agent_id, state, T0, None, (), 1)
        for agent_id, state in states.items()
    }


def _states(**counts: int) -> dict[str, int]:
    return {**ZERO_STATES, **counts}


def _skill(load: LoadSnapshot, skill: str) -> dict[str, Any]:
    return dict(next(row for row in load["skills"] if row["skill"] == skill))


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- LoadView


def test_the_view_knows_each_intents_skills_and_each_agents_team() -> None:
    view = LoadView.from_config(CONFIG, ROSTER)
    assert view.skills == ("billing", "retention", "sales", "support")
    assert view.skills_of("cancel") == ("billing", "retention")
    assert view.skills_of("no_such_intent") == (NO_SKILL,)
    assert view.agent_team["a4"] == NO_TEAM
    assert view.agent_skills["a3"] == frozenset({"retention", "billing"})


def test_an_idle_centre_lists_every_skill_state_and_team_at_zero() -> None:
    load = _tracker().snapshot({}, T0)
    assert load == {
        "at": "2025-03-10T12:00:00+00:00",
        "agent_state_available": True,
        "skills": [
            {"skill": s, "waiting": 0, "ringing": 0, "longest_wait_s": 0.0, "agents": ZERO_STATES}
            for s in ("billing", "retention", "sales", "support")
        ],
        "agents": ZERO_STATES,
        "teams": [
            {"team": NO_TEAM, "agents": ZERO_STATES},
            {"team": "blue", "agents": ZERO_STATES},
            {"team": "red", "agents": ZERO_STATES},
        ],
        "totals": {"waiting": 0, "ringing": 0, "longest_wait_s": 0.0, "agents": 0},
        "counters": {
            "calls": {"routed": 0, "abandoned": 0, "failed": 0, "continued": 0},
            "route_decisions": {"agent": 0, "overflow": 0},
            "forgotten_calls": 0,
        },
    }


def test_waiting_and_ringing_calls_count_per_skill_with_the_longest_wait() -> None:
    tracker = _tracker()
    tracker.call_waiting("c1", "billing", _at(0))
    tracker.call_waiting("c2", "billing", _at(30))
    tracker.call_waiting("c3", "cancel", _at(10))  # needs retention and billing
    tracker.call_waiting("c4", "tech_support", _at(50))
    assert tracker.call_ringing("c4", "a2")
    load = tracker.snapshot({}, _at(60))
    assert _skill(load, "billing") | {"agents": None} == {
        "skill": "billing",
        "waiting": 3,
        "ringing": 0,
        "longest_wait_s": 60.0,
        "agents": None,
    }
    assert (_skill(load, "retention")["waiting"], _skill(load, "retention")["longest_wait_s"]) == (
        1,
        50.0,
    )
    support = _skill(load, "support")
    assert (support["waiting"], support["ringing"], support["longest_wait_s"]) == (1, 1, 10.0)
    assert _skill(load, "sales")["waiting"] == 0
    # a call needing two skills is one call in the totals
    assert load["totals"] == {"waiting": 4, "ringing": 1, "longest_wait_s": 60.0, "agents": 0}


def test_a_call_for_an_intent_without_a_rule_counts_under_no_skill() -> None:
    tracker = _tracker()
    assert NO_SKILL not in [row["skill"] for row in tracker.snapshot({}, T0)["skills"]]
    tracker.call_waiting("c1", "mystery", _at(0))
    load = tracker.snapshot({}, _at(5))
    assert _skill(load, NO_SKILL)["waiting"] == 1
    assert _skill(load, NO_SKILL)["longest_wait_s"] == 5.0
    assert load["skills"][0]["skill"] == NO_SKILL  # sorted: "(" < "a"


def test_a_reroute_keeps_the_start_of_the_wait_and_stops_the_ringing() -> None:
    tracker = _tracker()
    tracker.call_routed("c1", "billing", _at(0), "a1")
    assert tracker.calls() == (WaitingCall("c1", "billing", _at(0), "a1"),)
    assert tracker.call_missed("c1")
    assert tracker.calls() == (WaitingCall("c1", "billing", _at(0), None),)
    tracker.call_routed("c1", "cancel", _at(25), None)  # reroute: nobody, overflow
    assert tracker.calls() == (WaitingCall("c1", "cancel", _at(0), None),)
    tracker.call_routed("c1", "cancel", _at(40), "a3")
    load = tracker.snapshot({}, _at(45))
    assert _skill(load, "retention") | {"agents": {}} == {
        "skill": "retention",
        "waiting": 1,
        "ringing": 1,
        "longest_wait_s": 45.0,
        "agents": {},
    }
    assert load["counters"]["route_decisions"] == {"agent": 2, "overflow": 1}


def test_answered_and_ended_calls_leave_and_unknown_calls_are_ignored() -> None:
    tracker = _tracker()
    tracker.call_routed("c1", "billing", _at(0), "a1")
    tracker.call_routed("c2", "billing", _at(1), None)
    assert not tracker.call_ringing("nope", "a1")
    assert not tracker.call_missed("nope")
    assert len(tracker) == 2
    assert tracker.call_answered("c1")
    assert not tracker.call_answered("c1")
    assert not tracker.call_ended("c1")  # the caller hangs up after talking to the agent
    assert tracker.call_ended("c2")
    assert not tracker.call_ringing("c2", "a1")  # an ended call does not come back
    assert len(tracker) == 0
    assert tracker.snapshot({}, _at(9))["totals"]["waiting"] == 0


def test_agents_are_counted_per_state_overall_per_skill_and_per_team() -> None:
    live = _live(
        a1=AgentState.AVAILABLE,
        a2=AgentState.ON_CALL,
        a3=AgentState.RINGING,
        a4=AgentState.LOGGED_OUT,
        ghost=AgentState.PAUSED,  # in the live store, not on the roster
    )
    load = _tracker().snapshot(live, T0)
    assert load["agents"] == _states(available=1, on_call=1, ringing=1, logged_out=1, paused=1)
    assert _skill(load, "billing")["agents"] == _states(available=1, ringing=1)
    assert _skill(load, "support")["agents"] == _states(on_call=1, logged_out=1)
    assert _skill(load, "sales")["agents"] == _states(available=1)
    assert load["teams"] == [
        {"team": NO_TEAM, "agents": _states(logged_out=1, paused=1)},
        {"team": "blue", "agents": _states(available=1, on_call=1)},
        {"team": "red", "agents": _states(ringing=1)},
    ]
    assert load["totals"]["agents"] == 5


def test_a_wait_that_starts_in_the_future_counts_as_zero() -> None:
    tracker = _tracker()
    tracker.call_waiting("c1", "billing", _at(10))  # another host's clock runs ahead
    assert tracker.snapshot({}, _at(0))["totals"]["longest_wait_s"] == 0.0


def test_naive_times_are_refused() -> None:
    tracker = _tracker()
    with pytest.raises(ValueError, match="timezone-aware"):
        tracker.call_waiting("c1", "billing", datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        tracker.snapshot({}, datetime(2025, 1, 1))


def test_calls_whose_end_was_never_seen_are_forgotten_when_stale() -> None:
    tracker = _tracker(stale_after_s=600)
    tracker.call_waiting("old", "billing", _at(0))
    tracker.call_waiting("new", "billing", _at(500))
    load = tracker.snapshot({}, _at(600))
    assert (load["totals"]["waiting"], load["counters"]["forgotten_calls"]) == (2, 0)
    load = tracker.snapshot({}, _at(601))
    assert [c.call_id for c in tracker.calls()] == ["new"]
    assert load["counters"]["forgotten_calls"] == 1
    assert load["totals"]["longest_wait_s"] == 101.0


def test_over_the_cap_the_oldest_call_is_forgotten() -> None:
    tracker = _tracker(max_calls=2)
    for n in range(3):
        tracker.call_waiting(f"c{n}", "billing", _at(n))
    tracker.call_waiting("c1", "billing", _at(9))  # known: no new entry, nothing dropped
    assert [c.call_id for c in tracker.calls()] == ["c1", "c2"]
    assert tracker.counters()["forgotten_calls"] == 1


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        _tracker(stale_after_s=0)
    with pytest.raises(ValueError):
        _tracker(max_calls=0)


def test_counters_take_enum_or_text_and_refuse_unknown_names() -> None:
    tracker = _tracker()
    tracker.count_call(CallOutcome.ROUTED)
    tracker.count_call("abandoned")
    tracker.count_call("routed")
    tracker.count_route_decision(RouteKind.OVERFLOW)
    tracker.count_route_decision("agent")
    with pytest.raises(ValueError):
        tracker.count_call("lost")
    with pytest.raises(ValueError):
        tracker.count_route_decision("queue")
    assert tracker.counters() == {
        "calls": {"routed": 2, "abandoned": 1, "failed": 0, "continued": 0},
        "route_decisions": {"agent": 1, "overflow": 1},
        "forgotten_calls": 0,
    }


def test_the_snapshot_is_plain_json() -> None:
    tracker = _tracker()
    tracker.call_routed("c1", "cancel", _at(0), "a3")
    load = tracker.snapshot(_live(a1=AgentState.AVAILABLE), _at(1.5))
    assert json.loads(json.dumps(load)) == load


# --------------------------------------------------------------------------- property

CALL_IDS = st.sampled_from(["c1", "c2", "c3", "c4"])
INTENTS = st.sampled_from(["new_service", "tech_support", "billing", "cancel", "mystery"])
OPS = st.one_of(
    st.tuples(st.just("wait"), CALL_IDS, INTENTS),
    st.tuples(st.just("ring"), CALL_IDS, st.sampled_from(["a1", "a2"])),
    st.tuples(st.just("routed"), CALL_IDS, INTENTS, st.sampled_from(["a1", None])),
    st.tuples(st.just("miss"), CALL_IDS),
    st.tuples(st.just("answer"), CALL_IDS),
    st.tuples(st.just("end"), CALL_IDS),
    st.tuples(st.just("tick"), st.floats(0, 120)),
)


@dataclass
class Model:
    """The obvious reference: call id -> [intent, since, ringing]."""

    calls: dict[str, list[Any]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    def apply(self, op: tuple[Any, ...], tracker: LoadTracker, now: datetime) -> None:
        kind, call_id = op[0], op[1]
        known = self.calls.get(call_id)
        if kind in ("wait", "routed"):
            since = known[1] if known else now
            self.calls[call_id] = [op[2], since, kind == "routed" and op[3] is not None]
            self.gone.discard(call_id)
            if kind == "wait":
                tracker.call_waiting(call_id, op[2], now)
            else:
                tracker.call_routed(call_id, op[2], now, op[3])
        elif kind in ("ring", "miss"):
            if known:
                known[2] = kind == "ring"
            changed = (
                tracker.call_ringing(call_id, op[2])
                if kind == "ring"
                else tracker.call_missed(call_id)
            )
            assert changed == (known is not None)
        else:
            self.calls.pop(call_id, None)
            self.gone.add(call_id)
            end = tracker.call_answered if kind == "answer" else tracker.call_ended
            assert end(call_id) == (known is not None)


def _skills_of(intent: str) -> tuple[str, ...]:
    return LoadView.from_config(CONFIG, ROSTER).skills_of(intent)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_counts_follow_the_calls_and_never_go_negative(ops: list[tuple[Any, ...]]) -> None:
    tracker, model, now = _tracker(), Model(), T0
    for op in ops:
        if op[0] == "tick":
            now += timedelta(seconds=op[1])
        else:
            model.apply(op, tracker, now)
        load = tracker.snapshot({}, now)
        assert load["totals"]["waiting"] == len(model.calls) >= 0
        assert {c.call_id for c in tracker.calls()} == set(model.calls)
        assert not model.gone & {c.call_id for c in tracker.calls()}  # ended calls vanish
        for row in load["skills"]:
            mine = [c for c in model.calls.values() if row["skill"] in _skills_of(c[0])]
            assert row["waiting"] == len(mine) >= 0
            assert 0 <= row["ringing"] == sum(1 for c in mine if c[2]) <= row["waiting"]
            waits = [(now - c[1]).total_seconds() for c in mine]
            assert row["longest_wait_s"] == max(waits, default=0.0) >= 0
        waits = [(now - c[1]).total_seconds() for c in model.calls.values()]
        assert load["totals"]["longest_wait_s"] == max(waits, default=0.0)


# --------------------------------------------------------------------------- exposition


def _unescape(value: str) -> str:
    out, chars = [], iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars)
            out.append({"n": "\n", "\\": "\\", '"': '"'}[nxt])
        else:
            out.append(ch)
    return "".join(out)


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)')


def parse_exposition(text: str) -> dict[str, dict[str, Any]]:
    """A strict little parser of the 0.0.4 text format: HELP, then TYPE, then samples."""
    assert text.endswith("\n")
    families: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            assert name not in families, f"{name} twice"
            families[name] = {"help": help_text, "type": None, "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert name == current and families[name]["type"] is None
            assert kind in ("gauge", "counter")
            families[name]["type"] = kind
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, f"not a sample line: {line!r}"
            assert match[1] == current and families[match[1]]["type"] is not None
            labels: dict[str, str] = {}
            rest = match[2] or ""
            while rest:
                pair = _PAIR.match(rest)
                assert pair, f"bad labels in {line!r}"
                labels[pair[1]] = _unescape(pair[2])
                rest = rest[pair.end() :]
            families[match[1]]["samples"].append((labels, float(match[3])))
    return families


def test_values_are_written_as_prometheus_reads_them() -> None:
    assert [format_value(v) for v in (0, 3, 2.5, -1.0, 1e300)] == ["0", "3", "2.5", "-1", "1e+300"]
    assert format_value(float("inf")) == "+Inf"
    assert format_value(float("-inf")) == "-Inf"
    assert format_value(float("nan")) == "NaN"
    assert format_value(0.1) == "0.1"


def test_label_values_and_help_text_are_escaped_per_the_spec() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert escape_help('say "hi"\\\n') == 'say "hi"\\\\\\n'
    family = MetricFamily(
        "x_total", "counter", "two\nlines", [({"team": 'Q"\\\n', "state": "on_call"}, 1)]
    )
    assert format_family(family) == (
        "# HELP x_total two\\nlines\n"
        "# TYPE x_total counter\n"
        'x_total{team="Q\\"\\\\\\n",state="on_call"} 1\n'
    )


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="metric name"):
        format_family(MetricFamily("9lives", "gauge", "h", []))
    for label in ("bad-label", "__reserved"):
        with pytest.raises(ValueError, match="label name"):
            format_family(MetricFamily("ok", "gauge", "h", [({label: "v"}, 1)]))


def test_the_scrape_text_exactly() -> None:
    view = LoadView(
        skills=("billing",),
        skills_by_intent={"billing": ("billing",)},
        agent_skills={"a1": frozenset({"billing"})},
        agent_team={"a1": "blue"},
    )
    tracker = LoadTracker(view)
    tracker.call_routed("c1", "billing", _at(0), None)
    tracker.count_call("routed")
    load = tracker.snapshot(_live(a1=AgentState.AVAILABLE), _at(12.5))
    agents = "".join(f'ivr_agents{{state="{s}"}} {int(s == "available")}\n' for s in STATES)
    team = "".join(
        f'ivr_team_agents{{team="blue",state="{s}"}} {int(s == "available")}\n' for s in STATES
    )
    assert render_metrics(load) == (
        "# HELP ivr_calls_waiting Calls waiting for an agent with this skill "
        "(in the overflow queue or ringing).\n"
        "# TYPE ivr_calls_waiting gauge\n"
        'ivr_calls_waiting{skill="billing"} 1\n'
        "# HELP ivr_calls_ringing Calls ringing an agent, by skill.\n"
        "# TYPE ivr_calls_ringing gauge\n"
        'ivr_calls_ringing{skill="billing"} 0\n'
        "# HELP ivr_longest_wait_seconds Longest current wait of a call needing this skill "
        "(0 when nobody waits).\n"
        "# TYPE ivr_longest_wait_seconds gauge\n"
        'ivr_longest_wait_seconds{skill="billing"} 12.5\n'
        "# HELP ivr_agents Agents per live state.\n"
        "# TYPE ivr_agents gauge\n" + agents + "# HELP ivr_team_agents Agents per team and live "
        "state.\n"
        "# TYPE ivr_team_agents gauge\n" + team + "# HELP ivr_agent_state_up 1 when the live "
        "agent state could be read for this scrape, else 0.\n"
        "# TYPE ivr_agent_state_up gauge\n"
        "ivr_agent_state_up 1\n"
        "# HELP ivr_calls_total Calls that left the IVR, by outcome.\n"
        "# TYPE ivr_calls_total counter\n"
        'ivr_calls_total{outcome="routed"} 1\n'
        'ivr_calls_total{outcome="abandoned"} 0\n'
        'ivr_calls_total{outcome="failed"} 0\n'
        'ivr_calls_total{outcome="continued"} 0\n'
        "# HELP ivr_route_decisions_total Routing decisions (reroutes included): an agent, "
        "or the overflow target.\n"
        "# TYPE ivr_route_decisions_total counter\n"
        'ivr_route_decisions_total{kind="agent"} 0\n'
        'ivr_route_decisions_total{kind="overflow"} 1\n'
        "# HELP ivr_load_calls_forgotten_total Waiting calls dropped because their end was "
        "never seen (stale, or over the cap).\n"
        "# TYPE ivr_load_calls_forgotten_total counter\n"
        "ivr_load_calls_forgotten_total 0\n"
    )


def test_a_scrape_with_hostile_team_names_parses_back_to_the_snapshot() -> None:
    hostile = 'night "shift" \\ west\nline two'
    roster = build_roster([Agent("a1", "Ann", "PJSIP/a1", {"billing": 4}, team=hostile)])
    tracker = LoadTracker.from_config(CONFIG, roster)
    tracker.call_routed("c1", "cancel", _at(0), "a1")
    tracker.call_routed("c2", "billing", _at(20), None)
    tracker.count_call("failed")
    load = tracker.snapshot(_live(a1=AgentState.RINGING), _at(30.25))
    families = parse_exposition(render_metrics(load))
    assert families["ivr_calls_total"]["type"] == "counter"
    assert families["ivr_agents"]["type"] == "gauge"
    waiting = {s[0]["skill"]: s[1] for s in families["ivr_calls_waiting"]["samples"]}
    assert waiting == {row["skill"]: row["waiting"] for row in load["skills"]}
    assert waiting["billing"] == 2
    longest = {s[0]["skill"]: s[1] for s in families["ivr_longest_wait_seconds"]["samples"]}
    assert longest["billing"] == 30.25
    assert longest["retention"] == 30.25
    teams = {(s[0]["team"], s[0]["state"]): s[1] for s in families["ivr_team_agents"]["samples"]}
    assert teams[(hostile, "ringing")] == 1
    calls = {s[0]["outcome"]: s[1] for s in families["ivr_calls_total"]["samples"]}
    assert calls == {"routed": 0, "abandoned": 0, "failed": 1, "continued": 0}
    decisions = families["ivr_route_decisions_total"]["samples"]
    assert decisions == [({"kind": "agent"}, 1), ({"kind": "overflow"}, 1)]


class _Sink:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def submit(self, record: CallRecord) -> None:
        self.records.append(record)


def test_the_counting_sink_counts_outcomes_and_ends_calls_that_were_not_routed() -> None:
    tracker, inner = _tracker(), _Sink()
    sink = CountingSink(inner, tracker)
    for call_id, outcome in (("c1", CallOutcome.ROUTED), ("c2", CallOutcome.ABANDONED)):
        tracker.call_routed(call_id, "billing", T0, "a1")
        call = IncomingCall(call_id, "+15550100", "PJSIP/x", "main", T0)
        sink.submit(CallRecord(call=call, outcome=outcome))
    assert [r.call.call_id for r in inner.records] == ["c1", "c2"]
    assert [c.call_id for c in tracker.calls()] == ["c1"]
    assert tracker.counters()["calls"] == {
        "routed": 1,
        "abandoned": 1,
        "failed": 0,
        "continued": 0,
    }


# --------------------------------------------------------------------------- HTTP


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class _BrokenAgents:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    async def snapshot(self, *, now: datetime | None = None) -> Mapping[str, AgentSnapshot]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        raise AgentStateUnavailable("redis down")


async def _client(agents: Any, tracker: LoadTracker, clock: _Clock, **kw: Any) -> Client:
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(load_routes(tracker, agents, clock, **kw))
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def served() -> AsyncIterator[tuple[Client, LoadTracker, _Clock, InMemoryAgentStateStore]]:
    clock = _Clock()
    agents = InMemoryAgentStateStore(clock=clock)
    for agent in ROSTER.agents:
        await agents.register_agent(agent.agent_id, now=T0)
    await agents.set_state("a1", AgentState.AVAILABLE, now=T0)
    await agents.set_state("a2", AgentState.PAUSED, now=T0)
    tracker = _tracker()
    client = await _client(agents, tracker, clock)
    try:
        yield client, tracker, clock, agents
    finally:
        await client.close()
        await agents.aclose()


async def test_get_load_answers_the_live_figures(served: Any) -> None:
    client, tracker, clock, agents = served
    tracker.call_routed("c1", "billing", T0, None)
    clock.now = _at(42)
    resp = await client.get("/v1/load")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    load = await resp.json()
    live = await agents.snapshot(now=clock.now)
    assert load == json.loads(json.dumps(tracker.snapshot(live, clock.now)))
    assert load["agents"] == _states(available=1, paused=1, logged_out=2)
    assert _skill(load, "billing")["longest_wait_s"] == 42.0
    assert load["at"] == "2025-03-10T12:00:42+00:00"


async def test_the_scrape_is_prometheus_text(served: Any) -> None:
    client, tracker, clock, _agents = served
    tracker.call_routed("c1", "tech_support", T0, "a2")
    clock.now = _at(7)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    families = parse_exposition(await resp.text())
    assert ({"skill": "support"}, 1.0) in families["ivr_calls_ringing"]["samples"]
    assert ({"skill": "support"}, 7.0) in families["ivr_longest_wait_seconds"]["samples"]
    assert ({"state": "paused"}, 1.0) in families["ivr_agents"]["samples"]
    assert families["ivr_agent_state_up"]["samples"] == [({}, 1.0)]


@pytest.mark.parametrize("delay_s", [0.0, 1.0], ids=["down", "slow"])
async def test_without_the_agent_state_calls_are_still_shown(delay_s: float) -> None:
    tracker, clock = _tracker(), _Clock()
    tracker.call_routed("c1", "billing", T0, None)
    client = await _client(_BrokenAgents(delay_s), tracker, clock, store_timeout_s=0.05)
    try:
        load = await (await client.get("/v1/load")).json()
        assert load["agent_state_available"] is False
        assert load["agents"] == ZERO_STATES
        assert load["totals"]["waiting"] == 1
        families = parse_exposition(await (await client.get("/metrics")).text())
        assert families["ivr_agent_state_up"]["samples"] == [({}, 0.0)]
    finally:
        await client.close()


async def test_the_page_and_its_script_are_served_with_a_strict_policy(served: Any) -> None:
    client = served[0]
    for path, content_type, marker in (
        ("/v1/load.html", "text/html", 'src="load.js"'),
        ("/v1/load.js", "text/javascript", 'fetch("load"'),
    ):
        resp = await client.get(path)
        assert resp.status == 200
        assert resp.content_type == content_type
        assert resp.headers["Content-Security-Policy"] == PAGE_CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert marker in await resp.text()
    body = await (await client.get("/v1/load.js")).text()
    assert "innerHTML" not in body.replace("never innerHTML", "")
    assert (await client.get("/v1/load.css")).status == 404


async def test_the_prefix_and_metrics_path_can_be_chosen() -> None:
    agents = InMemoryAgentStateStore()
    client = await _client(agents, _tracker(), _Clock(), prefix="/ops", metrics_path="/ops/metrics")
    try:
        assert (await client.get("/ops/load")).status == 200
        assert (await client.get("/ops/load.html")).status == 200
        assert (await client.get("/ops/metrics")).status == 200
        assert (await client.get("/v1/load")).status == 404
    finally:
        await client.close()

"""What an engine worker and the supervisor's load ledger say to each other: pure, no I/O.

One message per line, each a JSON array (orjson never writes a raw newline), on a Unix
stream socket the supervisor sets up per worker (``ivr_engine/workers/load_ledger.py``).

worker → supervisor:

* ``["u", [UPDATE, ...]]``: the load updates of one event-loop tick, in order;
* ``["c", {NAME: N, ...}]``: this worker process's own counters (absolute, since it started:
  ``pops_lost``, ``updates_dropped``);
* ``["q", ID, NOW_US]``: worker 0 asks for the load state at ``NOW_US``.

supervisor → worker: ``["s", ID, {"calls": [...], "counters": {...}, "workers": {...}}]``.

An UPDATE is one ``LoadTracker`` call: ``["r", CALL, INTENT, SINCE_US, AGENT|null]`` routed,
``["w", CALL, INTENT, SINCE_US]`` waiting, ``["g", CALL, AGENT]`` ringing, ``["m", CALL]``
missed, ``["a", CALL, AT_US]`` answered, ``["e", CALL, AT_US]`` ended, ``["o", OUTCOME]`` a
call counted, ``["k", KIND]`` a route decision counted. Times are integer microseconds since
the Unix epoch (UTC): exact, so the ledger computes the same waits one process would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from ivr_engine.contact_center.load_json import CountersJson
from ivr_engine.contact_center.load_tracker import LoadTracker, RouteKind
from ivr_engine.contact_center.load_view import WaitingCall
from ivr_engine.domain.models import CallOutcome

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
MAX_LINE_BYTES: Final = 64 * 1024 * 1024  # a state reply with 50,000 waiting calls fits

Update = list[str | int | None]
WorkerCounters = dict[int, dict[str, int]]  # worker index -> counter name -> value


_OUTCOMES: Final = frozenset(o.value for o in CallOutcome)
_KINDS: Final = frozenset(k.value for k in RouteKind)


class BadMessage(ValueError):
    """A line that is not one of the messages above (a bug or a version skew)."""


def to_us(moment: datetime) -> int:
    return (moment - EPOCH) // _US


def from_us(micros: int) -> datetime:
    try:
        return EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise BadMessage(f"time out of range: {micros}") from None


def encode(message: list[Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


def decode(line: bytes) -> list[Any]:
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise BadMessage(f"not a message: {line[:80]!r}")
    return message


# --------------------------------------------------------------------------- updates


def routed(call_id: str, intent: str, since: datetime, agent_id: str | None) -> Update:
    return ["r", call_id, intent, to_us(since), agent_id]


def waiting(call_id: str, intent: str, since: datetime) -> Update:
    return ["w", call_id, intent, to_us(since)]


def ringing(call_id: str, agent_id: str) -> Update:
    return ["g", call_id, agent_id]


def missed(call_id: str) -> Update:
    return ["m", call_id]


def answered(call_id: str, at: datetime) -> Update:
    return ["a", call_id, to_us(at)]


def ended(call_id: str, at: datetime) -> Update:
    return ["e", call_id, to_us(at)]


def call_counted(outcome: CallOutcome | str) -> Update:
    return ["o", CallOutcome(outcome).value]


def decision_counted(kind: RouteKind | str) -> Update:
    return ["k", RouteKind(kind).value]


def apply_update(tracker: LoadTracker, update: object) -> None:
    """One update, as the worker's own tracker would have applied it; ``BadMessage`` if it
    is not one."""
    match update:
        case ["r", str(call_id), str(intent), int(since), (str() | None) as agent_id]:
            tracker.call_routed(call_id, intent, from_us(since), agent_id)
        case ["w", str(call_id), str(intent), int(since)]:
            tracker.call_waiting(call_id, intent, from_us(since))
        case ["g", str(call_id), str(agent_id)]:
            tracker.call_ringing(call_id, agent_id)
        case ["m", str(call_id)]:
            tracker.call_missed(call_id)
        case ["a", str(call_id), int(at)]:
            tracker.call_answered(call_id, at=from_us(at))
        case ["e", str(call_id), int(at)]:
            tracker.call_ended(call_id, at=from_us(at))
        case ["o", str(outcome)] if outcome in _OUTCOMES:
            tracker.count_call(outcome)
        case ["k", str(kind)] if kind in _KINDS:
            tracker.count_route_decision(kind)
        case _:
            raise BadMessage(f"not a load update: {str(update)[:80]}")


# --------------------------------------------------------------------------- state reply


@dataclass(frozen=True, slots=True)
class LoadState:
    """The engine's load state as the ledger holds it: what worker 0 aggregates."""

    calls: tuple[WaitingCall, ...]
    counters: CountersJson
    workers: WorkerCounters


def state_message(request_id: int, state: LoadState) -> list[Any]:
    calls = [[c.call_id, c.intent, to_us(c.since), c.agent_id] for c in state.calls]
    workers = {str(index): counters for index, counters in state.workers.items()}
    body = {"calls": calls, "counters": state.counters, "workers": workers}
    return ["s", request_id, body]


def parse_state(body: object) -> LoadState:
    """The ``["s", ID, BODY]`` message's body; ``BadMessage`` if malformed."""
    if not isinstance(body, Mapping):
        raise BadMessage("state: not an object")
    try:
        calls = tuple(
            WaitingCall(str(call_id), str(intent), from_us(int(since)), _agent(agent))
            for call_id, intent, since, agent in body["calls"]
        )
        counters: CountersJson = {
            "calls": {str(k): int(v) for k, v in body["counters"]["calls"].items()},
            "route_decisions": {
                str(k): int(v) for k, v in body["counters"]["route_decisions"].items()
            },
            "forgotten_calls": int(body["counters"]["forgotten_calls"]),
        }
        workers = {
            int(index): {str(name): int(n) for name, n in named.items()}
            for index, named in body["workers"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadMessage(f"state: {exc!r}") from None
    return LoadState(calls, counters, workers)


def _agent(agent_id: object) -> str | None:
    if agent_id is None or isinstance(agent_id, str):
        return agent_id
    raise TypeError(f"agent id {agent_id!r}")

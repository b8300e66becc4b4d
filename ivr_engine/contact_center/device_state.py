"""What Asterisk's device and queue-member state means for an agent's state (pure, no I/O).

Inputs, read from AMI events by ``observations_from_event``:

* ``DeviceStateChange`` (``Device``, ``State``): the phone behind an agent's endpoint.
* ``QueueMemberStatus`` / ``QueueMemberAdded`` / ``QueueMemberPause`` / ``QueueMember`` (the
  ``QueueStatus`` list): ``Status`` (a device state number) and ``Paused`` / ``PausedReason``
  of the member in one ``Queue``; ``QueueMemberRemoved`` ends that queue's pause.

A member matches an agent when its ``Interface`` (``Location`` in the list) or its
``StateInterface`` is the agent's endpoint. Each agent has a ``DeviceView``; ``decide``
compares the view before and after an observation with the agent's state and the
``PauseNote`` that explains its current pause, and returns one ``Step``:

* The phone UNAVAILABLE/INVALID (unregistered, unreachable) or in use (INUSE, BUSY, RINGING,
  RINGINUSE, ONHOLD: a call the engine did not route) while the agent is available: the
  engine pauses them (HOLD, an engine-made note). Paused, not logged out: the agent keeps
  their session and their place (``idle_since``), and the engine can give back exactly what
  it took. When the phone is NOT_INUSE again, RESUME, only if that note still explains the
  pause (the agent has not changed state since): a pause the agent chose is never lifted.
* A queue pause made in Asterisk (QueuePause, a feature code, an app) pauses the agent
  (PAUSE, the agent's own note with ``PausedReason``); during a call it waits for the agent's
  next ``available``. A queue unpause resumes them, or turns the pause into an engine HOLD
  while the phone is still unusable. Only changes count: an unpaused member is Asterisk's
  default, so it never lifts a pause made on the desktop.
* Agents reserved, ringing or on a call are the call tracker's: their own device events
  (RINGING, INUSE, NOT_INUSE) change nothing. Logged-out agents are never touched. UNKNOWN
  says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from ivr_engine.agents.model import AgentState

S = AgentState


class DeviceCondition(StrEnum):
    FREE = "free"
    BUSY = "busy"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


_C = DeviceCondition
DEVICE_CONDITIONS: dict[str, DeviceCondition] = {
    "NOT_INUSE": _C.FREE,
    "INUSE": _C.BUSY,
    "BUSY": _C.BUSY,
    "RINGING": _C.BUSY,
    "RINGINUSE": _C.BUSY,
    "ONHOLD": _C.BUSY,
    "UNAVAILABLE": _C.UNREACHABLE,
    "INVALID": _C.UNREACHABLE,
    "UNKNOWN": _C.UNKNOWN,
}
#: ``Status`` of queue-member events: Asterisk's ``enum ast_device_state`` by number.
QUEUE_MEMBER_STATUS: tuple[str, ...] = (
    "UNKNOWN",
    "NOT_INUSE",
    "INUSE",
    "BUSY",
    "INVALID",
    "UNAVAILABLE",
    "RINGING",
    "RINGINUSE",
    "ONHOLD",
)
CALL_STATES = frozenset({S.RESERVED, S.RINGING, S.ON_CALL})
HOLD_REASONS = {_C.UNREACHABLE: "device_unreachable", _C.BUSY: "device_busy"}
QUEUE_PAUSED = "queue_paused"


class Headers(Protocol):
    def get(self, key: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    devices: frozenset[str]
    condition: DeviceCondition
    state: str  # as Asterisk named it: INUSE, UNAVAILABLE ...


@dataclass(frozen=True, slots=True)
class QueuePauseSeen:
    devices: frozenset[str]
    queue: str
    paused: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class QueueMemberLeft:
    devices: frozenset[str]
    queue: str


Observation = DeviceSeen | QueuePauseSeen | QueueMemberLeft
QUEUE_MEMBER_EVENTS = frozenset(
    {"queuememberstatus", "queuememberadded", "queuememberpause", "queuemember"}
)
SUBSCRIBED_EVENTS = (
    "DeviceStateChange",
    "QueueMemberStatus",
    "QueueMemberAdded",
    "QueueMemberRemoved",
    "QueueMemberPause",
    "FullyBooted",
)


def device_key(device: str) -> str:
    """Endpoints and AMI device names compared case-insensitively (``PJSIP/agent-1``)."""
    return device.strip().casefold()


def device_state_name(status: str) -> str | None:
    """A queue member's numeric ``Status`` → the device state name; None if not a number."""
    if status.isascii() and status.isdigit() and int(status) < len(QUEUE_MEMBER_STATUS):
        return QUEUE_MEMBER_STATUS[int(status)]
    return None


def _seen(devices: frozenset[str], state: str) -> DeviceSeen:
    return DeviceSeen(devices, DEVICE_CONDITIONS.get(state, _C.UNKNOWN), state)


def observations_from_event(event: Headers) -> list[Observation]:
    """The observations one AMI event carries (none for events about something else)."""
    name = (event.get("Event") or "").casefold()
    if name == "devicestatechange":
        device, state = event.get("Device") or "", (event.get("State") or "").upper()
        return [_seen(frozenset({device_key(device)}), state)] if device and state else []
    if name not in QUEUE_MEMBER_EVENTS and name != "queuememberremoved":
        return []
    interfaces = (event.get("Interface"), event.get("Location"), event.get("StateInterface"))
    devices = frozenset(device_key(d) for d in interfaces if d)
    queue = event.get("Queue") or ""
    if not devices or not queue:
        return []
    found: list[Observation] = []
    status = device_state_name(event.get("Status") or "")
    if status is not None:
        watched = event.get("StateInterface")
        found.append(_seen(frozenset({device_key(watched)}) if watched else devices, status))
    if name == "queuememberremoved":
        found.append(QueueMemberLeft(devices, queue))
    elif (paused := event.get("Paused")) in ("0", "1"):
        reason = event.get("PausedReason") or ""
        found.append(QueuePauseSeen(devices, queue, paused == "1", reason))
    return found


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the engine knows of one agent's phone and queue memberships."""

    condition: DeviceCondition = _C.UNKNOWN
    state: str = ""
    paused_in: frozenset[str] = frozenset()  # queues where the member is paused
    pause_reason: str = ""
    pending_queue_pause: bool = False  # paused in Asterisk during a call: apply after it

    @property
    def queue_paused(self) -> bool:
        return bool(self.paused_in)


def observe(view: DeviceView, seen: Observation) -> DeviceView:
    if isinstance(seen, DeviceSeen):
        return replace(view, condition=seen.condition, state=seen.state)
    if isinstance(seen, QueueMemberLeft):
        return replace(view, paused_in=view.paused_in - {seen.queue})
    if seen.paused:
        reason = seen.reason or view.pause_reason
        return replace(view, paused_in=view.paused_in | {seen.queue}, pause_reason=reason)
    return replace(view, paused_in=view.paused_in - {seen.queue})


@dataclass(frozen=True, slots=True)
class PauseNote:
    """Why an agent is paused, kept beside the agent state store.

    ``engine_made``: the engine paused them and gives the pause back when the cause ends.
    ``since``: the agent's ``since`` (epoch seconds) in the pause it explains; once the agent
    changes state the note explains nothing any more.
    """

    reason: str  # device_unreachable, device_busy, queue_paused
    detail: str
    since: float
    engine_made: bool

    def explains(self, state: AgentState, since: float) -> bool:
        return state is S.PAUSED and abs(since - self.since) < 0.001


class Step(StrEnum):
    NOTHING = "nothing"
    HOLD = "hold"  # pause (if available) with an engine-made note
    PAUSE = "pause"  # pause with the agent's own note (a pause made in Asterisk)
    RESUME = "resume"  # back to available, note dropped
    FORGET = "forget"  # the note explains nothing any more: drop it


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    reason: str  # the note's reason for HOLD/PAUSE
    detail: str  # for people: the log and the note
    pending_queue_pause: bool = False


def _nothing(detail: str, pending: bool = False) -> Decision:
    return Decision(Step.NOTHING, "", detail, pending)


def _hold(view: DeviceView) -> Decision:
    reason = HOLD_REASONS[view.condition]
    return Decision(Step.HOLD, reason, f"phone {view.state}: not routable until NOT_INUSE")


def _queue_pause(view: DeviceView) -> Decision:
    why = f" ({view.pause_reason})" if view.pause_reason else ""
    queues = ", ".join(sorted(view.paused_in))
    return Decision(Step.PAUSE, QUEUE_PAUSED, f"paused in Asterisk queue {queues}{why}")


def decide(
    state: AgentState,
    since: float,
    note: PauseNote | None,
    before: DeviceView,
    after: DeviceView,
) -> Decision:
    """The step for one agent after an observation (``before`` is ``after`` on a re-check)."""
    if note is not None and not note.explains(state, since):
        decision = decide(state, since, None, before, after)
        return (
            decision if decision.step is not Step.NOTHING else replace(decision, step=Step.FORGET)
        )
    paused_now = after.queue_paused and not before.queue_paused
    unpaused_now = before.queue_paused and not after.queue_paused
    if state in CALL_STATES:
        pending = after.queue_paused and (after.pending_queue_pause or paused_now)
        return _nothing("on a call routed by the engine: the call tracker's", pending)
    if state is S.LOGGED_OUT:
        return _nothing("logged out: not touched")
    blocked = after.condition in HOLD_REASONS
    if unpaused_now:
        if state is S.WRAP_UP:
            return _nothing("unpaused in Asterisk during wrap-up")
        if blocked:
            return _hold(after)
        if state is S.PAUSED:
            return Decision(Step.RESUME, "", "unpaused in Asterisk queue")
        return _nothing("unpaused in Asterisk: already available")
    if paused_now or (after.pending_queue_pause and state in (S.AVAILABLE, S.PAUSED)):
        return _queue_pause(after)
    held_for = note.reason if note is not None and note.engine_made else None
    if blocked and (state is S.AVAILABLE or held_for not in (None, HOLD_REASONS[after.condition])):
        return _hold(after)
    if held_for is not None and after.condition is _C.FREE:
        return Decision(Step.RESUME, "", "phone NOT_INUSE again: the engine's pause ends")
    pending = after.pending_queue_pause and state is S.WRAP_UP
    return _nothing(f"{state} with phone {after.state or 'unknown'}: no change", pending)

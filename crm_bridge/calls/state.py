"""What the normaliser remembers between AMI events: one ``CallState`` per live call.

``BridgeState`` holds the live calls (by call id, plus the Linkedids they are known by),
a bounded set of recently ended call ids (events that straggle in after a call's
``Hangup`` are ignored, and a resync never re-adopts a call that just ended), the
normaliser's configuration, and which calls changed since the last ``take_changes()``: the
reader persists exactly those, in the same outbox transaction as the events they produced,
so after a crash the restored state matches the events already committed.
"""

from __future__ import annotations

import fnmatch
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from ivr_engine.domain.models import CountryCodeWithoutPlus

__all__ = ["BridgeState", "CallState", "NormaliserConfig", "StateChanges"]

MAX_ENDED_REMEMBERED = 20_000


@dataclass(frozen=True, slots=True)
class NormaliserConfig:
    """``source`` names the Asterisk (it is part of every event id: give each Asterisk
    its own). ``inbound_contexts``: globs of the context a caller channel is created in
    (``Newchannel``); ``adopt_contexts``: globs of the contexts a live inbound call may be
    in when a resync finds a call the bridge did not see start (``CoreShowChannels`` gives
    the current context only). ``default_region`` reads caller IDs without a country code,
    ``country_code_without_plus`` those with it but without ``+`` (``normalize_phone``)."""

    source: str = "asterisk"
    inbound_contexts: tuple[str, ...] = ("from-trunk",)
    adopt_contexts: tuple[str, ...] = ("from-trunk", "ivr-*")
    default_region: str = "US"
    country_code_without_plus: CountryCodeWithoutPlus = "auto"

    def __post_init__(self) -> None:
        if not self.source or any(c in self.source for c in ": \r\n"):
            raise ValueError(f"source must be non-empty, without ':' or spaces: {self.source!r}")

    def is_inbound_context(self, context: str) -> bool:
        return any(fnmatch.fnmatchcase(context, glob) for glob in self.inbound_contexts)

    def is_adoptable_context(self, context: str) -> bool:
        return any(fnmatch.fnmatchcase(context, glob) for glob in self.adopt_contexts)


@dataclass(slots=True)
class CallState:
    call_id: str  # caller channel Uniqueid (= its Linkedid when the call started)
    channel: str
    caller: str | None  # E.164
    started_at: datetime
    last_event_at: datetime
    answered_at: datetime | None = None  # the caller channel went Up (the IVR answered)
    intent: str | None = None
    recovered: bool = False  # adopted by a resync: start time approximate
    seq: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # events emitted, by kind
    aliases: list[str] = field(default_factory=list)  # other Linkedids of this call
    agent_id: str | None = None  # from the last IvrAgentDial
    ivr_dial_pending: bool = False  # IvrAgentDial seen, its DialBegin not yet
    transfer_at: datetime | None = None
    ringing: list[str] = field(default_factory=list)  # destination Uniqueids being dialled
    agents: dict[str, datetime] = field(default_factory=dict)  # connected leg -> since
    first_agent_at: datetime | None = None
    talk_ms: int = 0  # closed agent connections
    hold_since: datetime | None = None
    hold_ms: int = 0
    bridges: dict[str, dict[str, str]] = field(default_factory=dict)  # bridge -> {uid: name}

    def to_json(self) -> str:
        """Every field, datetimes in ISO 8601: the text ``json.dumps(asdict(self))`` gives,
        written by orjson (``asdict`` deep-copies: ~30x the CPU, once per changed call and
        group commit)."""
        return orjson.dumps(self).decode()

    @classmethod
    def from_json(cls, text: str) -> CallState:
        raw: dict[str, Any] = json.loads(text)
        for key in ("started_at", "last_event_at", "answered_at", "transfer_at"):
            raw[key] = _decode(raw.get(key))
        raw["first_agent_at"] = _decode(raw.get("first_agent_at"))
        raw["hold_since"] = _decode(raw.get("hold_since"))
        raw["agents"] = {k: datetime.fromisoformat(v) for k, v in raw["agents"].items()}
        return cls(**raw)

    def next_ordinal(self, kind: str) -> int:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.seq += 1
        return self.counts[kind]


def _decode(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class StateChanges:
    """Calls to save (new or changed) and call ids to forget, since the last take."""

    saved: tuple[CallState, ...]
    removed: tuple[str, ...]


@dataclass(slots=True)
class BridgeState:
    config: NormaliserConfig = field(default_factory=NormaliserConfig)
    calls: dict[str, CallState] = field(default_factory=dict)
    by_linkedid: dict[str, str] = field(default_factory=dict)
    ended: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _dirty: set[str] = field(default_factory=set)
    _removed: set[str] = field(default_factory=set)

    @classmethod
    def restore(cls, config: NormaliserConfig, calls: list[CallState]) -> BridgeState:
        state = cls(config)
        for call in calls:
            state.calls[call.call_id] = call
            for linkedid in (call.call_id, *call.aliases):
                state.by_linkedid[linkedid] = call.call_id
        return state

    def find(self, uniqueid: str, linkedid: str) -> CallState | None:
        """The live call this channel belongs to (its own id, else its Linkedid)."""
        call_id = self.by_linkedid.get(uniqueid) or self.by_linkedid.get(linkedid)
        return None if call_id is None else self.calls.get(call_id)

    def add(self, call: CallState) -> None:
        self.calls[call.call_id] = call
        self.by_linkedid[call.call_id] = call.call_id
        self.touch(call)

    def alias(self, call: CallState, linkedid: str) -> None:
        if linkedid and linkedid not in self.by_linkedid:
            self.by_linkedid[linkedid] = call.call_id
            call.aliases.append(linkedid)
            self.touch(call)

    def touch(self, call: CallState) -> None:
        self._dirty.add(call.call_id)

    def remove(self, call: CallState) -> None:
        self.calls.pop(call.call_id, None)
        for linkedid in (call.call_id, *call.aliases):
            self.by_linkedid.pop(linkedid, None)
        self._dirty.discard(call.call_id)
        self._removed.add(call.call_id)
        self.ended[call.call_id] = None
        while len(self.ended) > MAX_ENDED_REMEMBERED:
            self.ended.popitem(last=False)

    def has_ended(self, call_id: str) -> bool:
        return call_id in self.ended

    def take_changes(self) -> StateChanges:
        changes = StateChanges(
            tuple(self.calls[c] for c in sorted(self._dirty) if c in self.calls),
            tuple(sorted(self._removed)),
        )
        self._dirty.clear()
        self._removed.clear()
        return changes

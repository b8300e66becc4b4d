"""Small Protocols the flows and the API depend on. Adapters implement them.

The per-call path needs only ``CallerLookup`` (one round trip) and ``TimelineWriter``;
the HTTP API and admin paths use ``TimelineStore``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol, runtime_checkable

from ivr_engine.domain.models import CallerHistory, KnownField


@dataclass(frozen=True, slots=True)
class LookupResult:
    """Result of identifying a caller by one identity (phone, account number, ...)."""

    history: CallerHistory | None  # None: no customer, or ambiguous
    ambiguous: bool = False  # the identity belongs to more than one (unmerged) customer


@dataclass(frozen=True, slots=True)
class NewTimelineEvent:
    """An event to append; ``event_id`` is the client-supplied idempotency key."""

    event_id: str
    customer_id: str
    occurred_at: datetime
    channel: str
    event_type: str
    intent: str | None = None
    case_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


class StoredCallEvent(NamedTuple):
    """A stored event as a replay is compared on: all but its (maybe merged) customer."""

    customer_id: str
    occurred_at: datetime  # aware
    channel: str
    event_type: str
    intent: str | None
    case_id: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CustomerWrite:
    """One finished call's writes for a customer already known (the fast write path)."""

    customer_id: str
    events: Sequence[NewTimelineEvent]
    fields: Sequence[KnownField]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int  # store-assigned, increasing; used for paging
    event_id: str
    customer_id: str
    occurred_at: datetime
    recorded_at: datetime
    channel: str
    event_type: str
    intent: str | None
    case_id: str | None
    data: Mapping[str, Any]
    # The known fields ``POST /v1/events`` saved with it ({} for none); None for events of
    # other writers and for API events stored before migration 0005.
    saved_fields: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    kind: str  # phone | email | chat | messenger | account
    value: str  # normalised (E.164 for phone, lower-case e-mail)


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    display_name: str | None
    identities: tuple[Identity, ...]
    known_fields: Mapping[str, KnownField]
    created_at: datetime
    updated_at: datetime
    merged_into: str | None = None


@dataclass(frozen=True, slots=True)
class TimelinePage:
    events: tuple[StoredEvent, ...]  # newest first
    next_before: int | None  # pass as ``before_seq`` for the next (older) page


class CallerLookup(Protocol):
    """The hot path: identity → customer → recent history + known fields, one round trip."""

    async def lookup(self, kind: str, value: str, *, max_events: int) -> LookupResult: ...


class TimelineWriter(Protocol):
    async def append_events(self, events: Sequence[NewTimelineEvent]) -> int:
        """Insert events; an ``event_id`` already stored is skipped. Returns rows inserted."""
        ...

    async def save_known_fields(self, customer_id: str, fields: Sequence[KnownField]) -> None:
        """Upsert by (customer, field name); newer ``updated_at`` wins."""
        ...

    async def create_customer_for_identity(self, identity: Identity) -> str:
        """A first-time caller: a new customer owning this identity. Returns its id."""
        ...


class TimelineStore(TimelineWriter, Protocol):
    """Administrative and API operations (SQLAlchemy Core; not on the per-call path)."""

    async def create_customer(
        self,
        display_name: str | None,
        identities: Sequence[Identity],
        fields: Sequence[KnownField] = (),
    ) -> Customer: ...

    async def get_customer(self, customer_id: str) -> Customer | None: ...

    async def update_customer(self, customer_id: str, display_name: str | None) -> Customer: ...

    async def add_identity(self, customer_id: str, identity: Identity) -> Customer: ...

    async def find_customers(self, identity: Identity) -> list[Customer]: ...

    async def merge_customers(self, source_id: str, target_id: str, reason: str) -> Customer:
        """Move identities, events and fields from source to target; audited on the timeline."""
        ...

    async def timeline(
        self, customer_id: str, *, limit: int = 50, before_seq: int | None = None
    ) -> TimelinePage: ...

    async def recent_events(
        self, customer_id: str, *, limit: int = 50, without_types: Collection[str] = ()
    ) -> tuple[StoredEvent, ...]:
        """Newest first by ``occurred_at`` (then ``seq``): the per-call lookup's order."""
        ...

    async def put_known_field(self, customer_id: str, field: KnownField) -> KnownField:
        """Save one field as an explicit correction: it replaces the stored value even if
        that is stamped later. Returns the field as stored."""
        ...

    async def append_event_for_identity(
        self,
        identity: Identity,
        event_for: Callable[[str], NewTimelineEvent],
        fields: Sequence[KnownField] | None = None,
    ) -> tuple[str, bool] | None:
        """Append ``event_for(customer_id)`` (with ``fields``, as ``append_event_with_fields``;
        None: as ``append_events``) for the one owner of ``identity``, or for a new customer
        owning it: customer, identity, event and fields in one transaction, or nothing.
        Returns (customer_id, whether this call created it); None: the ``event_id`` is taken
        (nothing was written)."""
        ...

    async def append_event_with_fields(
        self, event: NewTimelineEvent, fields: Sequence[KnownField]
    ) -> bool:
        """Insert the event and, only if it was inserted, the known fields on its (surviving)
        customer, atomically. False: the ``event_id`` is taken (nothing was written)."""
        ...


MAX_CASE_EVENTS: Final = 10_000  # the newest events of a case that membership/openness read


@dataclass(frozen=True, slots=True)
class CaseEventHead:
    """Enough of one event of a case to tell whose case it is and whether it is open."""

    seq: int
    customer_id: str
    occurred_at: datetime
    channel: str
    event_type: str


@dataclass(frozen=True, slots=True)
class ConversationPage:
    events: tuple[StoredEvent, ...]  # oldest first (by seq)
    next_after: int | None  # pass as ``after_seq`` for the next (newer) page


@runtime_checkable
class ConversationReader(Protocol):
    """Reads of one case across customers and channels (the ``case_id`` index)."""

    async def conversation(
        self, case_id: str, *, limit: int, after_seq: int | None
    ) -> ConversationPage: ...

    async def case_heads(self, case_id: str) -> tuple[CaseEventHead, ...]:
        """The newest ``MAX_CASE_EVENTS`` events of the case, light; empty: no such case."""
        ...

    async def find_event(self, event_id: str) -> StoredEvent | None: ...


@runtime_checkable
class EventAppender(Protocol):
    """Appends that say exactly which events they inserted (for after-commit observers)."""

    async def append_new_events(
        self, events: Sequence[NewTimelineEvent]
    ) -> tuple[StoredEvent, ...]:
        """Insert, skipping stored ``event_id``s; returns the rows this call inserted, once
        committed (a replay, or a concurrent twin that got there first, returns nothing)."""
        ...


class DigitsResult(Protocol):
    """What a caller keyed in response to a prompt sequence."""

    @property
    def digits(self) -> str: ...

    @property
    def timed_out(self) -> bool: ...


class HeardSpeech(Protocol):
    """What a recogniser made of one recording: the option's intent it accepted (None: none),
    the configured phrase that matched, and its open transcript."""

    @property
    def intent(self) -> str | None: ...

    @property
    def phrase(self) -> str | None: ...

    @property
    def transcript(self) -> str: ...


class SpeechRecognizer(Protocol):
    async def recognise(self, menu: str, wav_path: Path, *, timeout_s: float = 3.0) -> HeardSpeech:
        """Never raises for a bad file, an unknown menu or a timeout: intent None."""
        ...


class CallChannel(Protocol):
    """The few things a call flow does with a live call (AGI and ESL adapters implement it).

    Every method raises ``CallerHungUp`` once the caller has gone.
    """

    async def read_digits(
        self, prompts: Sequence[str], timeout_ms: int, max_digits: int, *, sensitive: bool = False
    ) -> DigitsResult:
        """Play the prompts in order and collect up to ``max_digits`` keys. ``sensitive``:
        the digits are not left in a channel variable after the read."""
        ...

    async def record_utterance(self, path: str, max_ms: int, silence_s: int) -> str | None:
        """Record what the caller says into ``path`` + ``.wav`` (a path as the switch sees
        it), up to ``max_ms``, ended by ``silence_s`` of silence or by a key, which is returned
        (None otherwise). ``RecordingFailed`` when the switch could not record."""
        ...

    async def set_variable(self, name: str, value: str) -> None: ...

    def keep_outcome(self) -> None:
        """From now on the call's outcome is decided and must stand (the caller was texted a
        link): a stop whose grace ends before the call does, or a failure, does not tell the
        switch ``IVR_OUTCOME=failed`` (the caller would get the SMS and the fallback menu)."""
        ...

    async def set_variables(self, values: Mapping[str, str]) -> None:
        """Several channel variables, in as few commands as the switch allows."""
        ...

"""The screen pop: what the agent sees when the phone rings. Pure: no I/O, no clock.

``build_screen_pop`` turns the ring (what the IVR and routing learnt about the call), the
customer and their recent timeline events (any channel) into one JSON-able dict. A field
named in ``FieldMasking`` is shown as ``MASK`` unless the caller is verified: caller ID can
be spoofed, so it may steer routing but never reveal sensitive data. The pop names the
sensitive fields the caller answered right (``verified_by``); such a field is listed with
source ``verified``, its value under the same masking rule as any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from typing_extensions import TypedDict

from ivr_engine.domain.models import KnownField, Menu
from ivr_engine.flows.call_record import CallRecord
from ivr_engine.ports import Customer, StoredEvent

MASK = "****"
MAX_TEXT = 200  # longest text taken from the ring into the pop (ids, reasons, details)
MAX_STEPS = 50
MAX_REASONS = 20


@dataclass(frozen=True, slots=True)
class Ring:
    """One call ringing at one agent, as the routing code hands it to ``DesktopHub.pop``."""

    call_id: str  # the switch's id (shown to the agent)
    customer_id: str | None = None  # None: caller not identified
    intent: str | None = None
    caller_id: str | None = None
    target: str | None = None  # where routing sent it, e.g. "queue:billing"
    path: Sequence[Mapping[str, Any]] = ()  # the IVR steps, as ``CallRecord.path``
    entered: Mapping[str, str] = field(default_factory=dict)  # keyed in during this call
    prefilled: Mapping[str, str] = field(default_factory=dict)  # known from earlier contacts
    menu_reasons: Sequence[str] = ()  # why the menu was ordered as it was
    routing_reasons: Sequence[str] = ()  # why this agent was chosen
    verified: bool = False  # the caller proved who they are (caller ID alone is not proof)
    verified_by: Mapping[str, str] = field(default_factory=dict)  # field that matched -> value
    rang_at: datetime | None = None
    call_key: str | None = None  # the call's timeline key (``IncomingCall.call_key``)


#: The field an identity of this kind is entered as in the IVR (``IvrFlow``).
IDENTITY_FIELDS: Mapping[str, str] = {"account": "account_number"}


@dataclass(frozen=True, slots=True)
class FieldMasking:
    """Which field values are hidden from an agent while the caller is not verified.

    ``declared``: when given, a field not declared in any menu is masked too (fail closed).
    """

    sensitive: frozenset[str] = frozenset()
    declared: frozenset[str] | None = None

    def masks(self, name: str, *, verified: bool) -> bool:
        if verified:
            return False
        return name in self.sensitive or (self.declared is not None and name not in self.declared)

    def masks_identity(self, kind: str, *, verified: bool) -> bool:
        """An identity of the customer record whose kind is sensitive, or which is entered
        as a field (``account`` → ``account_number``): masked like that field, so also when
        that field is not declared (fail closed)."""
        if verified:
            return False
        entered_as = IDENTITY_FIELDS.get(kind)
        return kind in self.sensitive or (
            entered_as is not None and self.masks(entered_as, verified=False)
        )


def masking_from_menus(menus: Iterable[Menu]) -> FieldMasking:
    """Sensitive in any menu (``fields: {postcode: {sensitive: true}}``) → masked everywhere."""
    menus = list(menus)
    specs = [spec for menu in menus for spec in menu.fields.values()]
    return FieldMasking(
        sensitive=frozenset(spec.name for spec in specs if spec.sensitive),
        declared=frozenset(spec.name for spec in specs),
    )


def intent_labels_from_menus(menus: Iterable[Menu]) -> dict[str, str]:
    return {option.intent: option.label for menu in menus for option in menu.options}


def ring_from_call(
    record: CallRecord,
    *,
    known_fields: Mapping[str, KnownField] = {},
    routing_reasons: Sequence[str] = (),
    verified: bool = False,
    rang_at: datetime | None = None,
) -> Ring:
    """The ring for a call the IVR handled; prefilled values, and those of the fields that
    verified the caller (keyed in, matched, not saved again), come from ``known_fields``."""
    return Ring(
        call_id=record.call.call_id,
        customer_id=record.customer_id,
        intent=record.intent,
        caller_id=record.phone or record.call.caller_id,
        target=record.target,
        path=tuple(record.path),
        entered=dict(record.entered),
        prefilled={n: known_fields[n].value for n in record.prefilled if n in known_fields},
        menu_reasons=tuple(record.decision.reasons) if record.decision else (),
        routing_reasons=tuple(routing_reasons),
        verified=verified,
        verified_by={
            n: known_fields[n].value if n in known_fields else "" for n in record.verified_by
        },
        rang_at=rang_at,
        call_key=record.call.call_key,
    )


# --------------------------------------------------------------------------- JSON shapes


class IdentityJson(TypedDict):
    kind: str
    value: str


class PopCustomerJson(TypedDict):
    customer_id: str
    name: str | None
    identities: list[IdentityJson]


class PopFieldJson(TypedDict):
    name: str
    value: str  # ``MASK`` when masked
    masked: bool
    source: Literal["entered", "prefilled", "verified"]  # verified: keyed in, matched the record


class PopStepJson(TypedDict):
    step: str
    details: dict[str, str]


class PopContactJson(TypedDict):
    occurred_at: str
    channel: str
    event_type: str
    intent: str | None
    intent_label: str | None
    case_id: str | None
    outcome: str | None


class ScreenPopJson(TypedDict):
    call_id: str
    rang_at: str | None
    caller_id: str | None
    verified: bool
    verified_by: list[str]  # the sensitive fields the caller answered right, e.g. ["postcode"]
    intent: str | None
    intent_label: str | None
    target: str | None
    customer: PopCustomerJson | None
    path: list[PopStepJson]
    fields: list[PopFieldJson]
    recent_contacts: list[PopContactJson]
    history_available: bool  # False: the timeline could not be read (the pop went anyway)
    menu_reasons: list[str]
    routing_reasons: list[str]


# --------------------------------------------------------------------------- builders


def iso_time(moment: datetime) -> str:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _opt(text: str | None) -> str | None:
    return None if text is None else _clip(text)


def _detail(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return _clip(", ".join(_detail(item) for item in value))
    return _clip("" if value is None else str(value))


def _step(step: Mapping[str, Any]) -> PopStepJson:
    details = {_clip(str(k)): _detail(v) for k, v in step.items() if k != "step"}
    return {"step": _clip(str(step.get("step", "?"))), "details": details}


def _fields(ring: Ring, masking: FieldMasking) -> list[PopFieldJson]:
    values: dict[str, tuple[str, Literal["entered", "prefilled", "verified"]]] = {}
    values.update((name, (value, "prefilled")) for name, value in ring.prefilled.items())
    values.update((name, (value, "entered")) for name, value in ring.entered.items())
    values.update((name, (value, "verified")) for name, value in ring.verified_by.items() if value)
    out: list[PopFieldJson] = []
    for name, (value, source) in sorted(values.items()):
        masked = masking.masks(name, verified=ring.verified)
        out.append(
            {
                "name": _clip(name),
                "value": MASK if masked else _clip(value),
                "masked": masked,
                "source": source,
            }
        )
    return out


def _customer(customer: Customer, masking: FieldMasking, verified: bool) -> PopCustomerJson:
    identities: list[IdentityJson] = [
        {
            "kind": i.kind,
            "value": MASK if masking.masks_identity(i.kind, verified=verified) else i.value,
        }
        for i in customer.identities
    ]
    return {
        "customer_id": customer.customer_id,
        "name": _opt(customer.display_name),
        "identities": identities,
    }


def _contact(event: StoredEvent, labels: Mapping[str, str]) -> PopContactJson:
    outcome = event.data.get("outcome")
    return {
        "occurred_at": iso_time(event.occurred_at),
        "channel": event.channel,
        "event_type": event.event_type,
        "intent": event.intent,
        "intent_label": labels.get(event.intent) if event.intent else None,
        "case_id": event.case_id,
        "outcome": _clip(outcome) if isinstance(outcome, str) else None,
    }


def _is_this_call(event: StoredEvent, ring: Ring) -> bool:
    """An event the ringing call wrote (``voice:<call key>:...``); by the switch's id only
    for a ring without a key (another switch's call may share that id)."""
    return event.event_id.startswith(f"voice:{ring.call_key or ring.call_id}:")


def build_screen_pop(
    ring: Ring,
    customer: Customer | None,
    events: Sequence[StoredEvent],
    *,
    masking: FieldMasking,
    intent_labels: Mapping[str, str] = {},
    max_contacts: int = 10,
    history_available: bool = True,
) -> ScreenPopJson:
    """The pop for ``ring``; the newest ``max_contacts`` of ``events`` (any channel, the
    ringing call itself left out) become the recent contacts."""
    newest_first = sorted(events, key=lambda e: e.occurred_at, reverse=True)
    contacts = [e for e in newest_first if not _is_this_call(e, ring)][:max_contacts]
    return {
        "call_id": _clip(ring.call_id),
        "rang_at": None if ring.rang_at is None else iso_time(ring.rang_at),
        "caller_id": _opt(ring.caller_id),
        "verified": ring.verified,
        "verified_by": [_clip(name) for name in ring.verified_by] if ring.verified else [],
        "intent": _opt(ring.intent),
        "intent_label": intent_labels.get(ring.intent) if ring.intent else None,
        "target": _opt(ring.target),
        "customer": None if customer is None else _customer(customer, masking, ring.verified),
        "path": [_step(step) for step in ring.path[:MAX_STEPS]],
        "fields": _fields(ring, masking),
        "recent_contacts": [_contact(event, intent_labels) for event in contacts],
        "history_available": history_available,
        "menu_reasons": [_clip(r) for r in ring.menu_reasons[:MAX_REASONS]],
        "routing_reasons": [_clip(r) for r in ring.routing_reasons[:MAX_REASONS]],
    }

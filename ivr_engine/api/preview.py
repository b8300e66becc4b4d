"""``GET /v1/menu-preview``: what the engine would offer a caller right now, and why.

Same decision path as a call: identify by phone through ``CallerLookup`` (one round trip)
or by customer id through the store, then ``decide_menu``. A timeline failure fails open
to the static menu, exactly like the phone flow; an ambiguous caller ID gets the static
menu too. Sensitive prefilled values are masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from aiohttp import web
from typing_extensions import TypedDict

from ivr_engine.api.errors import ApiError
from ivr_engine.api.keys import CLOCK, LOOKUP, MENUS, STORE
from ivr_engine.api.outage_log import record_outage
from ivr_engine.api.schemas import PreviewQuery, parse_query
from ivr_engine.api.serialize import timestamp
from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.domain.models import (
    CallerHistory,
    FieldSpec,
    HistoryEvent,
    IntentScore,
    KnownField,
    Menu,
    MenuDecision,
    PresentedOption,
)
from ivr_engine.personalize import decide_menu, plan_fields, static_menu
from ivr_engine.personalize.contacts import CALL_FOLLOW_UP_EVENT_TYPES
from ivr_engine.ports import CallerLookup, LookupResult, TimelineStore

routes = web.RouteTableDef()

MASK = "****"


class PrefilledJson(TypedDict):
    name: str
    value: str
    masked: bool
    source_channel: str
    verified: bool


class FieldPlanJson(TypedDict):
    prefilled: list[PrefilledJson]
    to_ask: list[str]
    reasons: list[str]


class EntryJson(TypedDict):
    digit: str
    intent: str
    label: str
    pinned: bool
    target: str
    field_plan: FieldPlanJson


class ShortcutJson(TypedDict):
    intent: str
    yes_digit: str
    no_digit: str
    reason: str


class ScoreJson(TypedDict):
    intent: str
    score: float
    contacts: int
    total_contacts: int
    latest_at: str | None
    open_case: bool
    reason: str


class PreviewJson(TypedDict):
    menu: str
    customer_id: str | None
    personalised: bool
    ambiguous: bool
    entries: list[EntryJson]
    shortcut: ShortcutJson | None
    reasons: list[str]
    ranking: list[ScoreJson]


@routes.get("/v1/menu-preview")
async def menu_preview(request: web.Request) -> web.Response:
    query = parse_query(request, PreviewQuery)
    menu = request.app[MENUS].get(query.menu)
    if menu is None:
        raise ApiError(404, "menu_not_found", f"no menu named {query.menu!r}")
    try:
        if query.phone is not None:
            result = await _by_phone(request.app[LOOKUP], menu, query.phone)
        else:
            assert query.customer_id is not None
            result = await _by_customer(request.app[STORE], menu, query.customer_id)
    except TimelineUnavailable as exc:
        record_outage(request, "menu preview (static menu)", exc)
        decision = static_menu(menu, "timeline unavailable")
        return web.json_response(preview_json(menu, decision, None, ambiguous=False))
    decision = decide_menu(menu, result.history, request.app[CLOCK]())
    if result.ambiguous:
        decision = static_menu(menu, "caller ID is shared by several customers")
    return web.json_response(preview_json(menu, decision, result.history, result.ambiguous))


async def _by_phone(lookup: CallerLookup, menu: Menu, phone: str) -> LookupResult:
    return await lookup.lookup("phone", phone, max_events=menu.ranking.max_events)


async def _by_customer(store: TimelineStore, menu: Menu, customer_id: str) -> LookupResult:
    """The history ``CallerLookup`` would return, built from the store (merges followed)."""
    customer = await store.get_customer(customer_id)
    if customer is not None and customer.merged_into is not None:
        customer = await store.get_customer(customer.merged_into)
    if customer is None:
        raise ApiError(404, "customer_not_found", "customer not found")
    recent = await store.recent_events(
        customer.customer_id,
        limit=menu.ranking.max_events,
        without_types=CALL_FOLLOW_UP_EVENT_TYPES,  # as the per-call lookup's window
    )
    events = [
        HistoryEvent(e.occurred_at, e.channel, e.event_type, e.intent, e.case_id) for e in recent
    ]
    history = CallerHistory(
        customer_id=customer.customer_id,
        display_name=customer.display_name,
        events=tuple(events),
        known_fields=dict(customer.known_fields),
    )
    return LookupResult(history=history)


def preview_json(
    menu: Menu, decision: MenuDecision, history: CallerHistory | None, ambiguous: bool
) -> PreviewJson:
    known = history.known_fields if history is not None else {}
    return {
        "menu": menu.name,
        "customer_id": history.customer_id if history is not None else None,
        "personalised": decision.personalised,
        "ambiguous": ambiguous,
        "entries": [_entry(menu, entry, known) for entry in decision.entries],
        "shortcut": None
        if decision.shortcut is None
        else {
            "intent": decision.shortcut.intent,
            "yes_digit": decision.shortcut.yes_digit,
            "no_digit": decision.shortcut.no_digit,
            "reason": decision.shortcut.reason,
        },
        "reasons": list(decision.reasons),
        "ranking": [_score(s) for s in decision.ranking],
    }


def _entry(menu: Menu, entry: PresentedOption, known: Mapping[str, KnownField]) -> EntryJson:
    option = entry.option
    plan = plan_fields(option, menu.fields, known, caller_verified=False)
    return {
        "digit": entry.digit,
        "intent": option.intent,
        "label": option.label,
        "pinned": option.pinned,
        "target": option.target,
        "field_plan": {
            "prefilled": [
                _prefilled(field, menu.fields.get(name))
                for name, field in sorted(plan.prefilled.items())
            ],
            "to_ask": [spec.name for spec in plan.to_ask],
            "reasons": list(plan.reasons),
        },
    }


def _prefilled(field: KnownField, spec: FieldSpec | None) -> PrefilledJson:
    masked = spec is None or spec.sensitive  # unknown specs are treated as sensitive
    return {
        "name": field.name,
        "value": MASK if masked else field.value,
        "masked": masked,
        "source_channel": field.source_channel,
        "verified": field.verified,
    }


def _score(score: IntentScore) -> ScoreJson:
    latest: datetime | None = score.latest_at
    return {
        "intent": score.intent,
        "score": round(score.score, 4),
        "contacts": score.contacts,
        "total_contacts": score.total_contacts,
        "latest_at": timestamp(latest) if latest is not None else None,
        "open_case": score.open_case,
        "reason": score.reason,
    }

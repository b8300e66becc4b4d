"""Shared builders for the personalisation tests (no tests here)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ivr_engine.domain.models import (
    CallerHistory,
    DigitPolicy,
    FieldSpec,
    HistoryEvent,
    IntentScore,
    KnownField,
    Menu,
    MenuOption,
    RankingPolicy,
    ShortcutPolicy,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
INTENTS = ("new_service", "tech_support", "moving", "outage", "cancel", "billing", "operator")
_DEFAULT_DIGITS = ("1", "2", "3", "4", "5", "6", "0")


def _option(intent: str, digit: str) -> MenuOption:
    slug = intent.replace("_", "-")
    pinned = intent == "operator"
    return MenuOption(
        intent=intent,
        label=intent.replace("_", " ").title(),
        prompt=f"ivr-engine/label-{slug}",
        digit=digit,
        pinned=pinned,
        required_fields=("account_number",) if intent == "billing" else (),
        target=f"queue:{intent}",
        shortcut_prompt=None if pinned else f"ivr-engine/shortcut-topic-{slug}",
    )


FIELDS = {
    "account_number": FieldSpec("account_number", "ivr-engine/enter-account-number", 6, 10),
    "postcode": FieldSpec("postcode", "ivr-engine/enter-postcode", 4, 8, sensitive=True),
}


def sample_menu(
    policy: DigitPolicy = DigitPolicy.POSITIONAL,
    *,
    ranking: RankingPolicy | None = None,
    shortcut: ShortcutPolicy | None = None,
) -> Menu:
    """The 7-option sample: 1 new_service .. 6 billing, 0 operator (pinned)."""
    return Menu(
        name="main",
        options=tuple(_option(i, d) for i, d in zip(INTENTS, _DEFAULT_DIGITS, strict=True)),
        digit_policy=policy,
        ranking=ranking or RankingPolicy(),
        shortcut=shortcut or ShortcutPolicy(),
        fields=dict(FIELDS),
    )


def with_option(menu: Menu, intent: str, **changes: Any) -> Menu:
    options = tuple(replace(o, **changes) if o.intent == intent else o for o in menu.options)
    return replace(menu, options=options)


def ev(
    days_ago: float,
    intent: str | None = None,
    *,
    channel: str = "voice",
    event_type: str = "call.ivr",
    case_id: str | None = None,
) -> HistoryEvent:
    return HistoryEvent(NOW - timedelta(days=days_ago), channel, event_type, intent, case_id)


def history(*events: HistoryEvent, **known: KnownField) -> CallerHistory:
    ordered = tuple(sorted(events, key=lambda e: e.occurred_at, reverse=True))
    return CallerHistory("cust-1", "Ada", ordered, dict(known))


def score(
    intent: str, value: float, contacts: int = 3, *, total: int = 10, open_case: bool = False
) -> IntentScore:
    return IntentScore(intent, value, contacts, total, NOW, open_case, f"{intent}: test")


def five_of_six_billing() -> tuple[HistoryEvent, ...]:
    """The returning billing caller: 5 billing contacts of the last 6, latest 2 days ago."""
    return (
        ev(2, "billing"),
        ev(9, "billing", channel="chat", event_type="chat.conversation"),
        ev(15, "tech_support"),
        ev(20, "billing"),
        ev(33, "billing", channel="chat", event_type="chat.conversation"),
        ev(41, "billing"),
    )

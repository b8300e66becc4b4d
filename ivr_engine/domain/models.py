"""Frozen dataclasses that flow through the call pipeline.

call → identify → history → decide → collect → route → events → timeline.
Nothing here does I/O; adapters build these from the wire and the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

Channel = Literal["voice", "chat", "email", "sms", "messenger", "web"]
CHANNELS: frozenset[str] = frozenset({"voice", "chat", "email", "sms", "messenger", "web"})
IdentityKind = Literal["phone", "email", "chat", "messenger", "account"]
IDENTITY_KINDS: frozenset[str] = frozenset({"phone", "email", "chat", "messenger", "account"})
# The known field that is an account number: the IVR identifies a caller by the value keyed
# in for it, and a customer whose field is saved owns the ``account`` identity of that value.
ACCOUNT_FIELD = "account_number"
ACCOUNT_IDENTITY = "account"
# Digits starting with the default region's country code, without "+" or "00"
# (``4915112345678`` in DE): how they are read (``identity.normalize_phone``).
CountryCodeWithoutPlus = Literal["auto", "always", "never"]


class DigitPolicy(StrEnum):
    """How digits are assigned when the menu is reordered."""

    POSITIONAL = "positional"  # the best option becomes key 1
    STABLE = "stable"  # digits never change; only the announcement order does


class CallOutcome(StrEnum):
    ROUTED = "routed"
    ABANDONED = "abandoned"
    FAILED = "failed"
    CONTINUED = "continued"  # the caller chose to continue by SMS (a link was sent)


class IdentifiedBy(StrEnum):
    CALLER_ID = "caller_id"  # can be spoofed: steers routing, never unlocks sensitive data
    ACCOUNT_NUMBER = "account_number"
    UNKNOWN = "unknown"


# --------------------------------------------------------------------------- history


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One past contact or case change on the shared timeline, any channel."""

    occurred_at: datetime  # timezone-aware (UTC)
    channel: str
    event_type: str  # e.g. "call.ended", "chat.message", "case.opened", "case.closed"
    intent: str | None = None
    case_id: str | None = None


@dataclass(frozen=True, slots=True)
class KnownField:
    """A value the customer entered (or an agent recorded) once, in any channel."""

    name: str
    value: str
    source_channel: str
    updated_at: datetime
    verified: bool = False


@dataclass(frozen=True, slots=True)
class CallerHistory:
    """What the timeline knows about one customer, newest events first."""

    customer_id: str
    display_name: str | None
    events: tuple[HistoryEvent, ...] = ()
    known_fields: Mapping[str, KnownField] = field(default_factory=dict)


# --------------------------------------------------------------------------- menu config


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A field an intent needs before routing (e.g. the account number)."""

    name: str
    prompt: str
    min_digits: int = 1
    max_digits: int = 16
    sensitive: bool = False
    timeout_ms: int = 6000
    attempts: int = 2

    def accepts(self, value: str) -> bool:
        """A value the IVR itself could have collected: digits 0-9, min..max long."""
        return (
            value.isascii()
            and value.isdecimal()
            and (self.min_digits <= len(value) <= self.max_digits)
        )

    @property
    def length_rule(self) -> str:
        """``"4 to 8"`` / ``"exactly 8"`` (digits), for messages."""
        if self.min_digits == self.max_digits:
            return f"exactly {self.min_digits}"
        return f"{self.min_digits} to {self.max_digits}"


@dataclass(frozen=True, slots=True)
class MenuOption:
    intent: str
    label: str
    prompt: str  # prompt id of the label, e.g. "ivr-engine/label-billing"
    digit: str  # default digit ("1".."9", "0", "*", "#")
    pinned: bool = False  # keeps its digit in every order (e.g. operator on 0)
    required_fields: tuple[str, ...] = ()
    target: str = ""  # routing target handed to the dialplan, e.g. "queue:billing"
    shortcut_prompt: str | None = None  # "your bill", for "calling about your bill again?"
    phrases: tuple[str, ...] = ()  # what a caller may say for it ("my bill"), speech menus only


@dataclass(frozen=True, slots=True)
class ShortcutPolicy:
    enabled: bool = True
    min_share: float = 0.6  # top intent's share of the weighted score
    min_contacts: int = 3  # contacts with that intent in the window
    yes_digit: str = "1"
    no_digit: str = "2"


@dataclass(frozen=True, slots=True)
class RankingPolicy:
    half_life_days: float = 30.0
    max_events: int = 50
    max_age_days: float = 365.0
    open_case_boost: bool = True  # intents with an open case rank first
    min_contacts: int = 2  # contacts with an intent before it moves up (an open case: always)
    open_case_max_age_days: float = 14.0  # a case quiet for longer counts as closed


@dataclass(frozen=True, slots=True)
class MenuPrompts:
    welcome: str = "ivr-engine/welcome"
    for_word: str = "ivr-engine/for"
    press_word: str = "ivr-engine/press"
    digit_prefix: str = "digits/"
    invalid: str = "ivr-engine/invalid-option"
    no_input: str = "ivr-engine/no-input"
    shortcut_intro: str = "ivr-engine/shortcut-calling-about"
    shortcut_again: str = "ivr-engine/shortcut-again"
    continue_intro: str = "ivr-engine/continue-open-case"
    continue_question: str = "ivr-engine/continue-question"
    continue_sms_offer: str = "ivr-engine/continue-sms-offer"
    continue_sms_sent: str = "ivr-engine/continue-sms-sent"
    thank_you: str = "ivr-engine/thank-you"
    transfer: str = "ivr-engine/transfer"
    no_match: str = "ivr-engine/no-match"  # a sensitive answer that is not the known value


@dataclass(frozen=True, slots=True)
class SpeechPolicy:
    """ "Say or press": after the menu's prompts (and ``prompt``, "or tell me what you are
    calling about") a caller who pressed nothing within ``key_wait_ms`` is recorded for up to
    ``listen_ms`` (ended by ``silence_s`` of silence or a key) and the recording is matched
    against the options' ``phrases``. Nothing recognised is the menu's no-input path."""

    enabled: bool = False
    prompt: str = "ivr-engine/say-or-press"
    key_wait_ms: int = 700
    listen_ms: int = 5000
    silence_s: int = 2


@dataclass(frozen=True, slots=True)
class Menu:
    name: str
    options: tuple[MenuOption, ...]  # in default order
    digit_policy: DigitPolicy = DigitPolicy.POSITIONAL
    ranking: RankingPolicy = field(default_factory=RankingPolicy)
    shortcut: ShortcutPolicy = field(default_factory=ShortcutPolicy)
    prompts: MenuPrompts = field(default_factory=MenuPrompts)
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    input_timeout_ms: int = 5000
    attempts: int = 3
    fallback_intent: str = "operator"  # where a caller goes after too many bad tries
    speech: SpeechPolicy = field(default_factory=SpeechPolicy)
    verification_attempts: int = 2  # answers to a known sensitive field before: unverified

    def option(self, intent: str) -> MenuOption | None:
        return next((o for o in self.options if o.intent == intent), None)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class IntentScore:
    intent: str
    score: float  # recency-weighted count
    contacts: int  # contacts with this intent in the window
    total_contacts: int  # contacts with any intent in the window
    latest_at: datetime | None
    open_case: bool
    reason: str  # "billing: 5 of last 6 contacts, latest 2 days ago"
    case_id: str | None = None  # the open case, if any
    case_channel: str | None = None  # the channel of the case's newest activity


@dataclass(frozen=True, slots=True)
class PresentedOption:
    digit: str
    option: MenuOption


@dataclass(frozen=True, slots=True)
class ShortcutOffer:
    intent: str
    prompt: str  # the topic prompt ("your bill")
    yes_digit: str
    no_digit: str
    reason: str
    # Set when the caller has an open case last active on another channel (chat, e-mail,
    # ...): the offer is "continue where you left off", and yes joins that case.
    continue_case: str | None = None


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """For one intent: which required fields are already known and which must be asked."""

    intent: str
    prefilled: Mapping[str, KnownField]
    to_ask: tuple[FieldSpec, ...]
    reasons: tuple[str, ...]
    # prefilled names whose values may be read back / shown (a sensitive field is prefilled
    # only when the caller is verified: caller ID can be spoofed, an account number guessed)
    readable: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MenuDecision:
    menu_name: str
    personalised: bool
    entries: tuple[PresentedOption, ...]  # in announcement order
    ranking: tuple[IntentScore, ...]
    shortcut: ShortcutOffer | None
    reasons: tuple[str, ...]

    def intent_for_digit(self, digit: str) -> str | None:
        return next((e.option.intent for e in self.entries if e.digit == digit), None)

"""Webhook subscriptions: an in-memory registry, loadable from YAML, validated at start-up.

.. code-block:: yaml

    subscriptions:
      - id: acme-crm
        url: https://crm.example.com/hooks/seed
        secret_env: ACME_WEBHOOK_SECRET     # or secret: "...", at least 16 characters
        events: [call.ivr, call.ended]      # exact types, "call.*" (a family) or "*"
      - id: sms-gateway
        url: https://sms.example.com/hooks/seed
        secret_env: SMS_WEBHOOK_SECRET
        events: [message.outbound]
        continuation_links: true            # gets continue-by-SMS links (never with "*")

URLs must be https; plain http is accepted only for localhost and 127.0.0.1 (tests, a local
relay). Credentials in the URL are refused: the secret is for that. Every error names the
file, the key and the fix, like the engine's other configuration.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from ivr_engine.config_errors import TOP, load_document, plain_message, validation_problems
from ivr_engine.domain.errors import ConfigError

__all__ = [
    "LOCAL_HOSTS",
    "Subscription",
    "SubscriptionRegistry",
    "check_webhook_url",
    "load_subscriptions",
    "parse_subscriptions",
]

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})
MIN_SECRET_CHARS = 16
_WORD = r"[a-z][a-z0-9_]{0,39}"
_PATTERN = rf"^(\*|{_WORD}(\.{_WORD}){{0,3}}\.\*|{_WORD}(\.{_WORD}){{1,3}})$"
_SUB_ID = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
_HINTS = {
    "id": "use 1-64 of [a-z0-9_-], starting with a letter or digit",
    "events": "use an event type like 'call.ended', a family like 'call.*', or '*'",
    "secret_env": "use an environment variable name like ACME_WEBHOOK_SECRET",
}


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    url: str
    secret: str = field(repr=False)
    events: frozenset[str]
    # deliveries of continue-by-SMS events carry the working link (a bearer credential);
    # every other subscription gets them with the link elided (``omni.continue_by_sms``)
    continuation_links: bool = False

    def matches(self, event_type: str) -> bool:
        """``*`` matches all; ``call.*`` matches ``call.ivr`` and ``call.ended``; else exact."""
        return any(
            pattern == "*"
            or pattern == event_type
            or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
            for pattern in self.events
        )


def check_webhook_url(url: str) -> str:
    """Return ``url`` if it may receive webhooks; raise ``ValueError`` saying why not."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:  # urllib's words may quote a piece of the URL (of a password in it)
        raise ValueError(
            "not a valid URL (a port that is not a number from 0 to 65535, or an unbalanced "
            "'[' or ']')"
        ) from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an absolute https:// URL")
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        raise ValueError("must use https (plain http only for localhost or 127.0.0.1)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials (use the subscription's secret)")
    if parts.fragment:
        raise ValueError("must not contain a #fragment")
    return url


class _SubscriptionModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=_SUB_ID)]
    url: Annotated[str, Field(max_length=2000)]
    secret: Annotated[str, Field(min_length=MIN_SECRET_CHARS, max_length=512)] | None = None
    secret_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    events: tuple[Annotated[str, Field(pattern=_PATTERN)], ...] = Field(min_length=1)
    continuation_links: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_webhook_url(value)

    @model_validator(mode="after")
    def _one_secret(self) -> _SubscriptionModel:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of 'secret' and 'secret_env'")
        if self.continuation_links and "*" in self.events:
            raise ValueError(
                "continuation_links: not with events '*' (links are bearer credentials: "
                "subscribe the SMS gateway to message.outbound by name)"
            )
        return self


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subscriptions: tuple[_SubscriptionModel, ...] = ()


class SubscriptionRegistry:
    """Subscriptions by id; refuses duplicate ids. Matching keeps registration order."""

    def __init__(self, subscriptions: Iterable[Subscription] = ()) -> None:
        self._by_id: dict[str, Subscription] = {}
        for subscription in subscriptions:
            self.add(subscription)

    def add(self, subscription: Subscription) -> None:
        if subscription.subscription_id in self._by_id:
            raise ValueError(f"subscription {subscription.subscription_id!r} already exists")
        check_webhook_url(subscription.url)
        self._by_id[subscription.subscription_id] = subscription

    def remove(self, subscription_id: str) -> None:
        self._by_id.pop(subscription_id, None)

    def get(self, subscription_id: str) -> Subscription | None:
        return self._by_id.get(subscription_id)

    def matching(self, event_type: str) -> list[Subscription]:
        return [s for s in self._by_id.values() if s.matches(event_type)]

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)


def _message(error: ErrorDetails) -> str:
    if error["type"] != "string_pattern_mismatch":
        return plain_message(error)
    names = [part for part in error["loc"] if isinstance(part, str)]
    return f"{error['input']!r} is not valid ({_HINTS.get(names[-1], 'see docs/webhooks.md')})"


def _to_registry(
    source: str, model: _FileModel, environ: Mapping[str, str]
) -> SubscriptionRegistry:
    problems: list[str] = []
    subscriptions: list[Subscription] = []
    for index, sub in enumerate(model.subscriptions):
        where = f"{source}: subscriptions[{index}]"
        if sub.id in {s.subscription_id for s in subscriptions}:
            problems.append(f"{where}.id: {sub.id!r} is used twice (ids must be unique)")
        secret = sub.secret
        if sub.secret_env is not None:
            secret = environ.get(sub.secret_env, "")
            if len(secret) < MIN_SECRET_CHARS:
                problems.append(
                    f"{where}.secret_env: environment variable {sub.secret_env} is unset or "
                    f"shorter than {MIN_SECRET_CHARS} characters"
                )
        subscriptions.append(
            Subscription(
                sub.id, sub.url, secret or "", frozenset(sub.events), sub.continuation_links
            )
        )
    if problems:
        raise ConfigError("\n".join(problems))
    return SubscriptionRegistry(subscriptions)


def parse_subscriptions(
    source: str, text: str, environ: Mapping[str, str] | None = None
) -> SubscriptionRegistry:
    """Parse one YAML document; raise ``ConfigError`` naming ``source``, the key and the fix."""
    raw = load_document(source, text)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {TOP}: expected a mapping with 'subscriptions:'")
    try:
        model = _FileModel.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, exc, _message)) from exc
    return _to_registry(source, model, os.environ if environ is None else environ)


def load_subscriptions(
    path: Path | str, environ: Mapping[str, str] | None = None
) -> SubscriptionRegistry:
    """Read and validate a subscriptions file (e.g. ``config/webhooks.yaml``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read webhook subscriptions: {exc}") from exc
    return parse_subscriptions(str(path), text, environ)

"""Builds continue-by-SMS from settings (``continuation_secret`` set → on)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from crm_bridge.continuation import ContinuationTokens
from crm_bridge.continuation_claims import fields_in_clear
from crm_bridge.continuation_used_tokens import InMemoryUsedTokenStore, RedisUsedTokenStore
from crm_bridge.continuation_wire import Keyring, SigningKey
from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import Menu
from ivr_engine.omni.continue_by_sms import SmsContinuer
from ivr_engine.ports import TimelineStore
from ivr_engine.settings import Settings


@dataclass
class Continuation:
    tokens: ContinuationTokens
    continuer: SmsContinuer
    redis: RedisUsedTokenStore | None = None

    def use_menus(self, menus: Mapping[str, Menu]) -> None:
        self.continuer.use_clear_fields(clear_fields_of(menus))

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def open_continuation(
    settings: Settings,
    menus: Mapping[str, Menu],
    store: TimelineStore,
    clock: Callable[[], datetime],
) -> Continuation | None:
    if settings.continuation_secret is None:
        return None
    keyring = Keyring(continuation_key(settings.continuation_secret))
    redis = (
        RedisUsedTokenStore.from_url(settings.continuation_redis_url)
        if settings.continuation_redis_url
        else None
    )
    used = redis if redis is not None else InMemoryUsedTokenStore()
    tokens = ContinuationTokens(keyring, used)
    continuer = SmsContinuer(
        tokens,
        store,
        public_url=settings.public_url,
        clear_fields=clear_fields_of(menus),
        clock=clock,
    )
    return Continuation(tokens, continuer, redis)


def continuation_key(secret_hex: str) -> SigningKey:
    """The signing key of ``continuation_secret``; ``ConfigError`` saying what is wrong."""
    try:
        secret = bytes.fromhex(secret_hex)
    except ValueError:
        raise ConfigError("continuation_secret: use hex (e.g. `openssl rand -hex 32`)") from None
    try:
        return SigningKey("k1", secret)
    except ValueError as exc:
        raise ConfigError(f"continuation_secret: {exc}") from None


def clear_fields_of(menus: Mapping[str, Menu]) -> frozenset[str]:
    """The fields whose values may travel in clear: declared by some menu and sensitive in
    none (the desktop's rule: sensitive in any menu means sensitive everywhere)."""
    sensitive = {n for m in menus.values() for n, spec in m.fields.items() if spec.sensitive}
    return frozenset().union(*(fields_in_clear(m.fields) for m in menus.values())) - sensitive

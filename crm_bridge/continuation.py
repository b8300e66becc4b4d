"""Continuation tokens: carry a caller from the IVR to another channel without asking again.

A token is short-lived (15 minutes by default), single-use and signed. It says which case and
customer it continues, on which channel, and what the caller already gave the IVR (intent and
a few fields): see ``continuation_claims``. Its compact, URL-safe format (it fits in an SMS or
e-mail link) and the rotating keyring that signs it are in ``continuation_wire``.

Sensitive values never go in a token. The payload is signed, not encrypted: anyone holding
the link can base64-decode it, and links end up in SMS stores, mail archives, browser
history, proxy logs and ``Referer`` headers. A sensitive field therefore travels by *name*
only ("the caller already gave the postcode"); the continuing channel reads the value from
the timeline once the customer has authenticated there. Callers list the names whose values
may travel in clear; every other collected field is treated as sensitive (fail closed).

Single use is enforced at ``redeem``: the first redeem of a token id wins; a second one raises
``TokenAlreadyUsed``. The durable record is the caller's ``first_use`` (the engine appends the
idempotent timeline event ``continuation:{jti}``: "not inserted" means used, in any process
and after any restart), then the ``UsedTokenStore`` (``continuation_used_tokens``: memory or
Redis). ``inspect`` verifies without consuming (e.g. to show a page).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Mapping

from crm_bridge.continuation_claims import MAX_TTL_S, Continuation
from crm_bridge.continuation_errors import (
    InvalidContinuation,
    TokenAlreadyUsed,
    UsedTokenStoreUnavailable,
)
from crm_bridge.continuation_used_tokens import UsedTokenStore
from crm_bridge.continuation_wire import Keyring, decode_token, encode_token
from ivr_engine.domain.models import Channel

__all__ = ["DEFAULT_TTL_S", "MAX_TTL_S", "ContinuationTokens", "FirstUse"]

DEFAULT_TTL_S = 900
log = logging.getLogger(__name__)
# Records a redeem durably and atomically: True the first time for a token id, then False.
FirstUse = Callable[[Continuation], Awaitable[bool]]


class ContinuationTokens:
    """Issue, inspect and redeem continuation tokens."""

    def __init__(
        self,
        keyring: Keyring,
        used: UsedTokenStore,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidContinuation(f"ttl_s must be 1..{MAX_TTL_S} seconds, got {ttl_s}")
        self._keyring, self._used, self._ttl_s, self._clock = keyring, used, ttl_s, clock

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def issue(
        self,
        *,
        case_id: str,
        customer_id: str,
        channel: Channel,
        intent: str | None = None,
        collected: Mapping[str, str] | None = None,
        clear: Collection[str] = (),
    ) -> str:
        """A token for ``collected``: values of names in ``clear`` go in, others by name only."""
        collected = collected or {}
        now = int(self._clock())
        claims = Continuation(
            token_id=secrets.token_urlsafe(16),
            case_id=case_id,
            customer_id=customer_id,
            channel=channel,
            intent=intent,
            fields={n: v for n, v in collected.items() if n in clear},
            sensitive_fields=frozenset(n for n in collected if n not in clear),
            issued_at=now,
            expires_at=now + self._ttl_s,
            key_id=self._keyring.current.key_id,
        )
        return encode_token(claims, self._keyring.current)

    def inspect(self, token: str) -> Continuation:
        """Verify without consuming (raises the ``ContinuationError`` subclass that applies)."""
        return decode_token(token, self._keyring, self._clock())

    async def redeem(self, token: str, first_use: FirstUse | None = None) -> Continuation:
        """Verify and consume: the second redeem of the same token raises ``TokenAlreadyUsed``.

        ``first_use`` (checked first) is the durable record of the redeem: False, the token
        was used before. A ``first_use`` that raises consumes nothing. Once ``first_use``
        has recorded the redeem, the used-token store being unreachable is logged, not
        raised: the redeem is done, and failing it would burn the link (the retry would
        find the record). Without ``first_use`` it raises ``UsedTokenStoreUnavailable``."""
        now = self._clock()
        claims = decode_token(token, self._keyring, now)
        if first_use is not None and not await first_use(claims):
            raise TokenAlreadyUsed(claims.token_id)
        try:
            fresh = await self._used.mark_used(claims.token_id, claims.expires_at - now)
        except UsedTokenStoreUnavailable as exc:
            if first_use is None:
                raise
            log.warning("continuation redeemed; the used-token store was not told: %s", exc)
            return claims
        if not fresh:
            raise TokenAlreadyUsed(claims.token_id)
        return claims

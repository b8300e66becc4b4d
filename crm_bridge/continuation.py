"""Continuation tokens: carry a caller from the IVR to another channel without asking again.

A token is short-lived (15 minutes by default), single-use and signed. It says which case and
customer it continues, on which channel, and what the caller already gave the IVR (intent and
a few fields). The format is compact and URL-safe, so it fits in an SMS or e-mail link::

    c1.<kid>.<base64url(payload JSON)>.<base64url(HMAC-SHA256(key[kid], "c1.<kid>.<payload>"))>

``kid`` names the signing key: tokens are signed with the keyring's current key and verified
with any key still in the ring, so keys rotate without breaking tokens in flight. The
signature covers the version and the key id too. Base64 must be canonical (no padding, no
stray bits), so every change of any character is rejected.

Sensitive values never go in a token. The payload is signed, not encrypted: anyone holding
the link can base64-decode it, and links end up in SMS stores, mail archives, browser
history, proxy logs and ``Referer`` headers. A sensitive field therefore travels by *name*
only ("the caller already gave the postcode"); the continuing channel reads the value from
the timeline once the customer has authenticated there. Callers list the names whose values
may travel in clear; every other collected field is treated as sensitive (fail closed).

Single use is enforced at ``redeem`` through a ``UsedTokenStore``: the first redeem of a
token id wins (Redis ``SET NX`` with a TTL of the token's remaining lifetime); a second one
raises ``TokenAlreadyUsed``. ``inspect`` verifies without consuming (e.g. to show a page).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import heapq
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.domain.models import CHANNELS, Channel, FieldSpec
from ivr_engine.redis_client import open_redis

__all__ = [
    "DEFAULT_TTL_S",
    "Continuation",
    "ContinuationError",
    "ContinuationTokens",
    "ExpiredToken",
    "InMemoryUsedTokenStore",
    "InvalidContinuation",
    "Keyring",
    "MalformedToken",
    "RedisUsedTokenStore",
    "SigningKey",
    "TamperedToken",
    "TokenAlreadyUsed",
    "UnknownSigningKey",
    "UsedTokenStore",
    "UsedTokenStoreUnavailable",
    "decode_token",
    "encode_token",
    "fields_in_clear",
]

VERSION = "c1"
DEFAULT_TTL_S = 900
MAX_TTL_S = 3600
MAX_TOKEN_CHARS = 2048
MAX_FIELDS = 10
MAX_ID_CHARS = 64
MAX_VALUE_CHARS = 64
MIN_SECRET_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
_B64 = re.compile(r"[A-Za-z0-9_-]+")
_FAILURES = (RedisError, OSError, TimeoutError)
_T = TypeVar("_T")


# --------------------------------------------------------------------------- errors


class ContinuationError(IvrEngineError):
    """Base class: the token cannot be issued, verified or redeemed."""


class InvalidContinuation(ContinuationError, ValueError):
    """``issue`` was given something a token may not carry (bad id, too many fields...)."""


class MalformedToken(ContinuationError, ValueError):
    """Not a continuation token at all: wrong shape, encoding, version or size."""


class UnknownSigningKey(ContinuationError):
    """Signed with a key id this keyring does not hold (retired long ago, or forged)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"continuation token signed with unknown key id {key_id!r}")
        self.key_id = key_id


class TamperedToken(ContinuationError):
    """The signature does not match: the token was changed or signed with another secret."""


class ExpiredToken(ContinuationError):
    """The token is past its expiry time."""

    def __init__(self, expired_at: int) -> None:
        super().__init__(f"continuation token expired at {expired_at} (unix seconds)")
        self.expired_at = expired_at


class TokenAlreadyUsed(ContinuationError):
    """The token was redeemed before; tokens are single-use."""

    def __init__(self, token_id: str) -> None:
        super().__init__(f"continuation token {token_id!r} has already been redeemed")
        self.token_id = token_id


class UsedTokenStoreUnavailable(ContinuationError):
    """The used-token store could not answer; the token is not redeemed (fail closed)."""


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KEY_ID.fullmatch(self.key_id):
            raise InvalidContinuation(f"key id {self.key_id!r}: use 1-16 of [A-Za-z0-9_-]")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise InvalidContinuation(
                f"key {self.key_id!r}: secret must be at least {MIN_SECRET_BYTES} random bytes"
            )


class Keyring:
    """Sign with ``current``; verify with ``current`` or any of ``previous``."""

    def __init__(self, current: SigningKey, previous: Sequence[SigningKey] = ()) -> None:
        self.current = current
        self._keys: dict[str, SigningKey] = {}
        for key in (current, *previous):
            if key.key_id in self._keys:
                raise InvalidContinuation(f"key id {key.key_id!r} appears twice in the keyring")
            self._keys[key.key_id] = key

    def get(self, key_id: str) -> SigningKey | None:
        return self._keys.get(key_id)


# --------------------------------------------------------------------------- payload


@dataclass(frozen=True, slots=True)
class Continuation:
    """What a verified token says."""

    token_id: str
    case_id: str
    customer_id: str
    channel: Channel
    intent: str | None
    fields: Mapping[str, str]  # values that may travel in clear
    sensitive_fields: frozenset[str]  # names only: the caller gave them, look them up
    issued_at: int
    expires_at: int
    key_id: str


def fields_in_clear(specs: Mapping[str, FieldSpec]) -> frozenset[str]:
    """The names of the menu's fields whose values may go in a token (not ``sensitive``)."""
    return frozenset(name for name, spec in specs.items() if not spec.sensitive)


def _check_claims(c: Continuation) -> None:
    problems = [
        f"{name} {value!r}: use 1-{MAX_ID_CHARS} of [A-Za-z0-9_.:@-]"
        for name, value in (("case_id", c.case_id), ("customer_id", c.customer_id))
        if not _ID.fullmatch(value)
    ]
    if c.channel not in CHANNELS:
        problems.append(f"channel {c.channel!r}: use one of {sorted(CHANNELS)}")
    if c.intent is not None and not _NAME.fullmatch(c.intent):
        problems.append(f"intent {c.intent!r}: use [a-z][a-z0-9_]{{0,39}}")
    names = [*c.fields, *c.sensitive_fields]
    if len(names) > MAX_FIELDS:
        problems.append(f"{len(names)} fields: at most {MAX_FIELDS}")
    problems += [f"field name {n!r}: use [a-z][a-z0-9_]{{0,39}}" for n in names if not _ok(n)]
    problems += [
        f"field {name!r}: value must be a UTF-8 string of at most {MAX_VALUE_CHARS} characters"
        for name, value in c.fields.items()
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS or not _utf8(value)
    ]
    if problems:
        raise InvalidContinuation("cannot issue continuation token: " + "; ".join(problems))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _ok(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def _claims_json(c: Continuation) -> bytes:
    doc = {
        "jti": c.token_id,
        "iat": c.issued_at,
        "exp": c.expires_at,
        "case": c.case_id,
        "cust": c.customer_id,
        "ch": c.channel,
        "int": c.intent,
        "f": dict(sorted(c.fields.items())),
        "s": sorted(c.sensitive_fields),
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _claims_from_json(raw: bytes, key_id: str) -> Continuation:
    try:
        doc = json.loads(raw)
        claims = Continuation(
            token_id=_typed(doc["jti"], str),
            case_id=_typed(doc["case"], str),
            customer_id=_typed(doc["cust"], str),
            channel=cast(Channel, _typed(doc["ch"], str)),
            intent=None if doc["int"] is None else _typed(doc["int"], str),
            fields=dict(_typed(doc["f"], dict)),
            sensitive_fields=frozenset(_typed(doc["s"], list)),
            issued_at=_typed(doc["iat"], int),
            expires_at=_typed(doc["exp"], int),
            key_id=key_id,
        )
        _check_claims(claims)
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedToken(f"continuation token payload is invalid: {exc}") from exc
    return claims


def _typed(value: object, kind: type[_T]) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- wire format


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Strict base64url: alphabet only, no padding, and canonical (re-encodes identically)."""
    if not _B64.fullmatch(text):
        raise MalformedToken(f"continuation token {what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedToken(f"continuation token {what} is not base64url") from exc
    if _b64encode(raw) != text:
        raise MalformedToken(f"continuation token {what} is not canonical base64url")
    return raw


def _mac(key: SigningKey, signed: str) -> bytes:
    return hmac.new(key.secret, signed.encode("ascii"), hashlib.sha256).digest()


def encode_token(claims: Continuation, key: SigningKey) -> str:
    """Sign ``claims`` with ``key`` (pure; ``claims.key_id`` is ignored)."""
    _check_claims(claims)
    signed = f"{VERSION}.{key.key_id}.{_b64encode(_claims_json(claims))}"
    token = f"{signed}.{_b64encode(_mac(key, signed))}"
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidContinuation(f"token would be {len(token)} characters (limit 2048)")
    return token


def decode_token(token: str, keyring: Keyring, now: float) -> Continuation:
    """Verify shape, key, signature and expiry, in that order (pure; does not consume)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise MalformedToken(f"continuation token must be a string of <= {MAX_TOKEN_CHARS}")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        raise MalformedToken(f"not a continuation token (expected '{VERSION}.kid.payload.sig')")
    _, key_id, payload, signature = parts
    if not _KEY_ID.fullmatch(key_id) or not _B64.fullmatch(payload):
        raise MalformedToken("continuation token key id or payload is not base64url")
    key = keyring.get(key_id)
    if key is None:
        raise UnknownSigningKey(key_id)
    mac = _b64decode(signature, "signature")
    if not hmac.compare_digest(mac, _mac(key, f"{VERSION}.{key_id}.{payload}")):
        raise TamperedToken("continuation token signature does not match")
    claims = _claims_from_json(_b64decode(payload, "payload"), key_id)
    if now >= claims.expires_at:
        raise ExpiredToken(claims.expires_at)
    return claims


# --------------------------------------------------------------------------- used tokens


class UsedTokenStore(Protocol):
    async def mark_used(self, token_id: str, ttl_s: float) -> bool:
        """Record ``token_id`` as used for ``ttl_s``; False if it already was (atomic)."""
        ...


class InMemoryUsedTokenStore:
    """One process only (tests, single-node demo); forgets used ids once they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._used: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []

    async def mark_used(self, token_id: str, ttl_s: float) -> bool:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            expiry, old = heapq.heappop(self._expiries)
            if self._used.get(old) == expiry:
                del self._used[old]
        if token_id in self._used:
            return False
        self._used[token_id] = now + ttl_s
        heapq.heappush(self._expiries, (now + ttl_s, token_id))
        return True


class RedisUsedTokenStore:
    """``SET <prefix><token id> 1 NX PX <remaining lifetime>``: shared by every process."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "ivr:continuation:used:",
        timeout_s: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        self._client, self._prefix = client, prefix
        self._timeout_s, self._owns_client = timeout_s, owns_client

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "ivr:continuation:used:", timeout_s: float = 1.0
    ) -> RedisUsedTokenStore:
        client = open_redis(url, connect_timeout_s=timeout_s, decode_responses=False)
        return cls(client, prefix=prefix, timeout_s=timeout_s, owns_client=True)

    async def mark_used(self, token_id: str, ttl_s: float) -> bool:
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        try:
            async with asyncio.timeout(self._timeout_s):
                created: Any = await self._client.set(
                    self._prefix + token_id, b"1", nx=True, px=ttl_ms
                )
        except _FAILURES as exc:
            raise UsedTokenStoreUnavailable(f"used-token store (Redis) failed: {exc!r}") from exc
        return bool(created)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


# --------------------------------------------------------------------------- service


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

    async def redeem(self, token: str) -> Continuation:
        """Verify and consume: the second redeem of the same token raises ``TokenAlreadyUsed``."""
        now = self._clock()
        claims = decode_token(token, self._keyring, now)
        if not await self._used.mark_used(claims.token_id, claims.expires_at - now):
            raise TokenAlreadyUsed(claims.token_id)
        return claims

"""The wire format of continuation tokens and the keys that sign them (pure).

The format is compact and URL-safe, so it fits in an SMS or e-mail link::

    c1.<kid>.<base64url(payload JSON)>.<base64url(HMAC-SHA256(key[kid], "c1.<kid>.<payload>"))>

``kid`` names the signing key: tokens are signed with the keyring's current key and verified
with any key still in the ring, so keys rotate without breaking tokens in flight. The
signature covers the version and the key id too. Base64 must be canonical (no padding, no
stray bits), so every change of any character is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from crm_bridge.continuation_claims import (
    Continuation,
    check_claims,
    claims_from_json,
    claims_json,
)
from crm_bridge.continuation_errors import (
    ExpiredToken,
    InvalidContinuation,
    MalformedToken,
    TamperedToken,
    UnknownSigningKey,
)

__all__ = [
    "MAX_CLOCK_SKEW_S",
    "MAX_TOKEN_CHARS",
    "MIN_SECRET_BYTES",
    "VERSION",
    "Keyring",
    "SigningKey",
    "decode_token",
    "encode_token",
    "sign_unsigned",
    "unsigned_part",
]

VERSION = "c1"
MAX_TOKEN_CHARS = 2048
MIN_SECRET_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_B64 = re.compile(r"[A-Za-z0-9_-]+")
MAX_CLOCK_SKEW_S = 60  # a token issued further in the future than this is refused


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
    check_claims(claims)
    signed = f"{VERSION}.{key.key_id}.{_b64encode(claims_json(claims))}"
    token = f"{signed}.{_b64encode(_mac(key, signed))}"
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidContinuation(f"token would be {len(token)} characters (limit 2048)")
    return token


def unsigned_part(token: str) -> str:
    """``c1.<kid>.<payload>``: the token without its signature. Not a credential (only a
    holder of the key can sign it), so it may be stored where the token may not."""
    return token.rpartition(".")[0]


def sign_unsigned(unsigned: str, keyring: Keyring) -> str:
    """The token again from ``unsigned_part(token)`` (HMAC is deterministic); raises
    ``MalformedToken`` or ``UnknownSigningKey`` for text that is no unsigned token."""
    parts = unsigned.split(".")
    if len(parts) != 3 or parts[0] != VERSION or not _B64.fullmatch(parts[2]):
        raise MalformedToken(f"not an unsigned continuation token ('{VERSION}.kid.payload')")
    key = keyring.get(parts[1])
    if key is None:
        raise UnknownSigningKey(parts[1])
    return f"{unsigned}.{_b64encode(_mac(key, unsigned))}"


def decode_token(token: str, keyring: Keyring, now: float) -> Continuation:
    """Verify shape, key, signature, claims and expiry, in that order (pure; does not
    consume). The claims' lifetime is checked here too (``exp - iat`` at most ``MAX_TTL_S``,
    ``iat`` not ahead of ``now`` by more than ``MAX_CLOCK_SKEW_S``): a validly signed token
    that would live longer was not issued by ``ContinuationTokens``."""
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
    claims = claims_from_json(_b64decode(payload, "payload"), key_id)
    if claims.issued_at > now + MAX_CLOCK_SKEW_S:
        raise MalformedToken("continuation token is issued in the future")
    if now >= claims.expires_at:
        raise ExpiredToken(claims.expires_at)
    return claims

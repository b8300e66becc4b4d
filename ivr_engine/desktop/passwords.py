"""Agent credentials: scrypt password hashes (per-agent salt) and SHA-256 API-token digests.

A stored password hash reads ``scrypt$N$r$p$<salt, base64>$<key, base64>``; make one with
``python -m ivr_engine.desktop hash-password``. Comparisons are constant-time
(``hmac.compare_digest``). scrypt is CPU-bound (tens of milliseconds): call
``verify_password`` off the event loop (``asyncio.to_thread``).

API tokens are long random strings, so a plain SHA-256 digest is enough to store them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import cache

SCHEME = "scrypt"
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
KEY_BYTES = 32
SALT_BYTES = 16
_MAX_N = 2**20  # a hash from a config file must not be able to eat the host's memory
_MAX_R = 32
_MAX_P = 16


@dataclass(frozen=True, slots=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def encode(self) -> str:
        salt, key = _b64(self.salt), _b64(self.key)
        return f"{SCHEME}${self.n}${self.r}${self.p}${salt}${key}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    maxmem = 256 * n * r + 1024 * 1024  # scrypt needs 128·n·r bytes, and a little more
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem
    )


def hash_password(
    password: str,
    *,
    salt: bytes | None = None,
    n: int = DEFAULT_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
) -> PasswordHash:
    """A new hash with a random salt (pass ``salt`` only in tests)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    return PasswordHash(n, r, p, salt, _derive(password, salt, n, r, p, KEY_BYTES))


def parse_password_hash(text: str) -> PasswordHash:
    """``scrypt$N$r$p$salt$key`` → ``PasswordHash``; ``ValueError`` says what is wrong."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError("expected scrypt$N$r$p$<salt>$<key> (make one with hash-password)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"unreadable scrypt hash: {exc}") from None
    if n < 2 or n > _MAX_N or n & (n - 1):
        raise ValueError(f"scrypt N must be a power of two between 2 and {_MAX_N}")
    if not (1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        raise ValueError(f"scrypt r must be 1..{_MAX_R} and p 1..{_MAX_P}")
    if len(salt) < 8 or not 16 <= len(key) <= 64:
        raise ValueError("scrypt salt must be >= 8 bytes and the key 16..64 bytes")
    return PasswordHash(n, r, p, salt, key)


def verify_password(password: str, stored: PasswordHash) -> bool:
    candidate = _derive(password, stored.salt, stored.n, stored.r, stored.p, len(stored.key))
    return hmac.compare_digest(candidate, stored.key)


@cache
def dummy_hash() -> PasswordHash:
    """Checked for unknown agents, so that they take as long to refuse as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_token_digest(text: str) -> bytes:
    """A SHA-256 digest as 64 hex digits (``sha256sum`` of the token)."""
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        raise ValueError("expected 64 hex digits (the SHA-256 of the token)") from None
    if len(digest) != 32:
        raise ValueError("expected 64 hex digits (the SHA-256 of the token)")
    return digest


def new_api_token() -> tuple[str, str]:
    """A fresh token and the hex digest to put in the agent directory."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token).hex()

"""The errors of continuation tokens: one ``ContinuationError`` subclass per way it fails."""

from __future__ import annotations

from ivr_engine.domain.errors import IvrEngineError

__all__ = [
    "ContinuationError",
    "ExpiredToken",
    "InvalidContinuation",
    "MalformedToken",
    "TamperedToken",
    "TokenAlreadyUsed",
    "UnknownSigningKey",
    "UsedTokenStoreUnavailable",
]


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

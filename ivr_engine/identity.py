"""Normalising identities so every channel finds the same customer.

Phone numbers become E.164 (``+15551230001``) with the ``phonenumbers`` library; a caller ID
without a country code is read in the configured default region. E-mail addresses are
lower-cased; chat and messenger handles are trimmed; account numbers are decimal digits
(other scripts' digits become ASCII). Pure functions, no I/O.
"""

from __future__ import annotations

import contextlib
import unicodedata
from functools import lru_cache

import phonenumbers

from ivr_engine.domain.models import IDENTITY_KINDS
from ivr_engine.domain.plain_text import control_character_message, first_control_character

_MAX_IDENTITY_LENGTH = 320
_MAX_E164_LENGTH = 16  # "+" and at most 15 digits (ITU-T E.164)
# Caller IDs normalised lately (a returning caller's number is parsed once, not per call:
# phonenumbers costs ~0.1 ms of CPU per number); ~1 MB at most.
CALLER_ID_CACHE_SIZE = 8192
_MAX_CACHED_CALLER_ID = 64  # longer input is not a phone number anyway: not worth a slot


class InvalidIdentity(ValueError):
    """The value cannot be a valid identity of that kind."""


def normalize_phone(raw: str, default_region: str = "US") -> str:
    """Return ``raw`` in E.164 or raise ``InvalidIdentity``.

    Accepts what caller-ID and people produce: ``+1 (555) 123-0001``, ``5551230001``,
    ``00441632960961`` (international prefix), ``tel:+1555...``.
    """
    text = raw.strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    if not text or len(text) > 40:
        raise InvalidIdentity(f"not a phone number: {raw!r}")
    try:
        number = _parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number: {raw!r} ({exc})") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(f"not a possible phone number: {raw!r}")
    e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) > _MAX_E164_LENGTH:  # "possible" national-only ranges (JP, DE) can be longer
        raise InvalidIdentity(f"longer than E.164 allows (15 digits): {raw!r}")
    return e164


def _parse(text: str, default_region: str) -> phonenumbers.PhoneNumber:
    """The number as dialled in ``default_region``. Its own international prefix first (011
    in the US, 0011 in Australia, 00700 in Korea: phonenumbers knows each region's), so
    ``0011 44 1632 960961`` from Sydney is +44 and not read as ``+11...``; only then is a
    leading ``00`` taken as the international prefix most of the world dials (a US caller
    ID ``0044...``)."""
    if not text.startswith("00"):
        return phonenumbers.parse(text, default_region)
    with contextlib.suppress(phonenumbers.NumberParseException):
        number = phonenumbers.parse(text, default_region, keep_raw_input=True)
        if number.country_code_source == phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_IDD:
            return number
    return phonenumbers.parse("+" + text[2:], default_region)


def normalize_caller_id(raw: str | None, default_region: str = "US") -> str | None:
    """Caller ID from the switch: ``None`` when absent, withheld or not a number."""
    if raw is None:
        return None
    if len(raw) > _MAX_CACHED_CALLER_ID:
        return _caller_id(raw, default_region)
    return _cached_caller_id(raw, default_region)


def _caller_id(raw: str, default_region: str) -> str | None:
    if raw.strip().lower() in {"", "unknown", "anonymous", "restricted"}:
        return None
    try:
        return normalize_phone(raw, default_region)
    except InvalidIdentity:
        return None


_cached_caller_id = lru_cache(maxsize=CALLER_ID_CACHE_SIZE)(_caller_id)


def normalize_identity(kind: str, value: str, default_region: str = "US") -> str:
    """Normalise any identity kind; raises ``InvalidIdentity`` with a precise reason."""
    if kind not in IDENTITY_KINDS:
        raise InvalidIdentity(
            f"unknown identity kind {kind!r}; use one of {sorted(IDENTITY_KINDS)}"
        )
    if kind == "phone":
        return normalize_phone(value, default_region)
    text = value.strip()
    if not text or len(text) > _MAX_IDENTITY_LENGTH:
        raise InvalidIdentity(f"invalid {kind} identity: {value!r}")
    if (char := first_control_character(text)) is not None:  # shown to agents: as names
        raise InvalidIdentity(f"invalid {kind} identity: {control_character_message(char)}")
    if kind == "email":
        local, sep, domain = text.rpartition("@")
        if not sep or not local or "." not in domain:
            raise InvalidIdentity(f"not an e-mail address: {value!r}")
        lowered = text.lower()  # can grow ("İ" is two characters lower-cased)
        if len(lowered) > _MAX_IDENTITY_LENGTH:
            raise InvalidIdentity(f"invalid {kind} identity: {value!r}")
        return lowered
    if kind == "account":
        return _account_number(text, value)
    return text


def _account_number(text: str, raw: str) -> str:
    """Decimal digits of any script, stored as ASCII (what a caller keys in finds them);
    superscripts and circled digits (``"²".isdigit()`` is True) are not digits here."""
    if not text.isdecimal():
        raise InvalidIdentity(f"account numbers are digits only: {raw!r}")
    return text if text.isascii() else "".join(str(unicodedata.decimal(c)) for c in text)

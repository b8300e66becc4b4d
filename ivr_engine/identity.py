"""Normalising identities so every channel finds the same customer.

Phone numbers become E.164 (``+15551230001``) with the ``phonenumbers`` library; a caller ID
without a country code is read in the configured default region, and one that carries the
country code without ``+`` or ``00`` (``4915112345678`` in DE) as international
(``normalize_phone``). E-mail addresses are
lower-cased; chat and messenger handles are trimmed; account numbers are decimal digits
(other scripts' digits become ASCII). Pure functions, no I/O.
"""

from __future__ import annotations

import contextlib
import unicodedata
from functools import lru_cache

import phonenumbers

from ivr_engine.domain.models import IDENTITY_KINDS, CountryCodeWithoutPlus
from ivr_engine.domain.plain_text import control_character_message, first_control_character

_MAX_IDENTITY_LENGTH = 320
_MAX_E164_LENGTH = 16  # "+" and at most 15 digits (ITU-T E.164)
# Caller IDs normalised lately (a returning caller's number is parsed once, not per call:
# phonenumbers costs ~0.1 ms of CPU per number); ~1 MB at most.
CALLER_ID_CACHE_SIZE = 8192
_MAX_CACHED_CALLER_ID = 64  # longer input is not a phone number anyway: not worth a slot
# What may stand between the digits of a number typed without "+" ("49 151 1234-5678").
_SEPARATORS = frozenset(" \t\u00a0-\u2010\u2011./()")


class InvalidIdentity(ValueError):
    """The value cannot be a valid identity of that kind."""


def normalize_phone(
    raw: str,
    default_region: str = "US",
    country_code_without_plus: CountryCodeWithoutPlus = "auto",
) -> str:
    """Return ``raw`` in E.164 or raise ``InvalidIdentity``.

    Accepts what caller-ID and people produce: ``+1 (555) 123-0001``, ``5551230001``,
    ``00441632960961`` (international prefix), ``tel:+1555...``, and E.164 without its
    ``+`` (``4915112345678``: many SIP trunks deliver that).

    Digits that start with ``default_region``'s country code and have no ``+`` or ``00`` are
    either a national number or an international one without the plus; phonenumbers alone
    reads them as national unless that reading is invalid, and many wrong readings are valid
    (``4915112345678`` in DE as ``+49 4915112345678``). ``country_code_without_plus`` decides:

    * ``auto``: in a region with a national (trunk) prefix that is not the start of its
      country code (DE, GB, FR, JP, ... ``0``; RU ``8``), a number in national format carries
      that prefix, so digits starting with the country code and *not* with the prefix are
      international: read as ``+digits`` when that is a valid number. In a region without
      such a prefix (IT keeps its ``0`` in the number; SG has none; in the US and Canada
      ``1`` is both) both readings can be genuine (``3906123456`` in IT is also the mobile
      390 612 3456): the national reading, as phonenumbers gives it.
    * ``always``: digits starting with the country code are ``+digits`` when valid, in
      every region (a trunk known to send IT numbers as ``39...``).
    * ``never``: phonenumbers' national reading alone (before this rule; for a trunk that
      sends national numbers without their trunk prefix, ``4921...`` for Emden ``04921...``).
    """
    text = raw.strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    if not text or len(text) > 40:
        raise InvalidIdentity(f"not a phone number: {raw!r}")
    try:
        number = _parse(text, default_region, country_code_without_plus)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number: {raw!r} ({exc})") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(f"not a possible phone number: {raw!r}")
    e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) > _MAX_E164_LENGTH:  # "possible" national-only ranges (JP, DE) can be longer
        raise InvalidIdentity(f"longer than E.164 allows (15 digits): {raw!r}")
    return e164


def _parse(
    text: str, default_region: str, without_plus: CountryCodeWithoutPlus
) -> phonenumbers.PhoneNumber:
    """The number as dialled in ``default_region``. Digits with the region's country code
    and no ``+`` first (``normalize_phone``). Then its own international prefix (011
    in the US, 0011 in Australia, 00700 in Korea: phonenumbers knows each region's), so
    ``0011 44 1632 960961`` from Sydney is +44 and not read as ``+11...``; only then is a
    leading ``00`` taken as the international prefix most of the world dials (a US caller
    ID ``0044...``)."""
    if (number := _international_without_plus(text, default_region, without_plus)) is not None:
        return number
    if not text.startswith("00"):
        return phonenumbers.parse(text, default_region)
    with contextlib.suppress(phonenumbers.NumberParseException):
        number = phonenumbers.parse(text, default_region, keep_raw_input=True)
        if number.country_code_source == phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_IDD:
            return number
    return phonenumbers.parse("+" + text[2:], default_region)


def _international_without_plus(
    text: str, region: str, without_plus: CountryCodeWithoutPlus
) -> phonenumbers.PhoneNumber | None:
    """``+digits`` when ``without_plus`` reads ``text`` so and that is a valid number."""
    if without_plus == "never" or not all(c.isdecimal() or c in _SEPARATORS for c in text):
        return None
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    if metadata is None:
        return None
    digits = phonenumbers.normalize_digits_only(text)
    if not digits.startswith(str(metadata.country_code)):
        return None
    if without_plus == "auto" and not _lacks_the_national_prefix(metadata, digits):
        return None
    with contextlib.suppress(phonenumbers.NumberParseException):
        number = phonenumbers.parse("+" + digits)
        if phonenumbers.is_valid_number(number):
            return number
    return None


def _lacks_the_national_prefix(metadata: phonenumbers.PhoneMetadata, digits: str) -> bool:
    """The region has a national prefix and ``digits`` do not start with it: in national
    format they would, so they are not national. False in a region without one, and where
    the country code starts with it (US/CA ``1``): there the digits can be either."""
    prefix = metadata.national_prefix
    return prefix is not None and prefix != "" and not digits.startswith(prefix)


def normalize_caller_id(
    raw: str | None,
    default_region: str = "US",
    country_code_without_plus: CountryCodeWithoutPlus = "auto",
) -> str | None:
    """Caller ID from the switch: ``None`` when absent, withheld or not a number. Read as
    ``normalize_phone`` reads it (so the cache is keyed on all three arguments)."""
    if raw is None:
        return None
    if len(raw) > _MAX_CACHED_CALLER_ID:
        return _caller_id(raw, default_region, country_code_without_plus)
    return _cached_caller_id(raw, default_region, country_code_without_plus)


def _caller_id(
    raw: str, default_region: str, without_plus: CountryCodeWithoutPlus = "auto"
) -> str | None:
    if raw.strip().lower() in {"", "unknown", "anonymous", "restricted"}:
        return None
    try:
        return normalize_phone(raw, default_region, without_plus)
    except InvalidIdentity:
        return None


_cached_caller_id = lru_cache(maxsize=CALLER_ID_CACHE_SIZE)(_caller_id)


def normalize_identity(
    kind: str,
    value: str,
    default_region: str = "US",
    country_code_without_plus: CountryCodeWithoutPlus = "auto",
) -> str:
    """Normalise any identity kind; raises ``InvalidIdentity`` with a precise reason (phone
    numbers are read as caller IDs are: ``normalize_phone``)."""
    if kind not in IDENTITY_KINDS:
        raise InvalidIdentity(
            f"unknown identity kind {kind!r}; use one of {sorted(IDENTITY_KINDS)}"
        )
    if kind == "phone":
        return normalize_phone(value, default_region, country_code_without_plus)
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

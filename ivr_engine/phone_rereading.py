"""Re-reading phone identities stored under the earlier international-prefix rule.

Until commit 2fa2187 a number starting with ``00`` became ``+`` and the rest
(``00700 44 1632 960961`` from Korea: ``+700441632960961``). The current rule reads the
default region's own international prefix first (``00700``, then ``+44...``). So a value
stored then differs from today's only in regions whose prefix is longer than ``00`` (KR,
AU, BR, HK, SG, TH, TW...), for input that started with such a prefix.

The raw input is not stored. What the old rule could have stored ``+D`` from: ``00D``
and, since phonenumbers drops a national prefix written after a country code,
``00 CC NP N``: ``0011 297 521 2345`` (Aruba) from Australia was ``+12975212345``, the
``1`` of ``0011`` taken as +1 and the next ``1`` dropped as the US trunk prefix; today it is
``+2975212345``. Reading those candidates with today's rule gives the *re-readings*.

But ``+D`` is also exactly what a caller ID ``+D`` gives under both rules, so a stored value
alone never proves it wrong. It is corrected only when it is not a valid number (per
phonenumbers' metadata) and exactly one re-reading is; a stored value that is valid, or
with several valid re-readings, is ambiguous: reported, never changed. Pure, no I/O.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from ivr_engine.identity import InvalidIdentity, normalize_phone

OLD_RULE_PREFIX = "00"


@dataclass(frozen=True, slots=True)
class Rereading:
    """A stored value the old rule may have produced from input read differently today."""

    stored: str
    readings: tuple[str, ...]  # today's valid readings of the old rule's possible inputs
    corrected: str | None  # the one correction, or None: ambiguous
    reason: str


def reread_phone(stored: str, region: str) -> Rereading | None:
    """``None`` when today's rule reads every input the old rule could have turned into
    ``stored`` (in ``region``) the same way, or only as invalid numbers."""
    readings = tuple(
        sorted({r for r in _current_readings(stored, region) if r != stored and _valid(r)})
    )
    if not readings:
        return None
    if _valid(stored):
        return Rereading(stored, readings, None, "the stored value is a valid number too")
    if len(readings) > 1:
        return Rereading(stored, readings, None, "several valid readings")
    return Rereading(stored, readings, readings[0], "stored value invalid, one valid reading")


def old_rule_inputs(stored: str) -> tuple[str, ...]:
    """Input (digits only) that the old rule turned into the E.164 ``stored``."""
    digits = stored.removeprefix("+")
    inputs = [OLD_RULE_PREFIX + digits]
    with contextlib.suppress(phonenumbers.NumberParseException):
        number = phonenumbers.parse(stored)
        national = phonenumbers.national_significant_number(number)
        for prefix in _national_prefixes(number.country_code):
            inputs.append(f"{OLD_RULE_PREFIX}{number.country_code}{prefix}{national}")
    return tuple(inputs)


def _current_readings(stored: str, region: str) -> list[str]:
    readings = []
    for raw in old_rule_inputs(stored):
        if not reads_longer_prefix(raw, region):
            continue  # today's rule also takes just "00" as the prefix: the same value
        try:
            readings.append(normalize_phone(raw, region))
        except InvalidIdentity:
            continue
    return readings


def reads_longer_prefix(raw: str, region: str) -> bool:
    """Does ``region``'s international prefix match ``raw`` beyond its leading ``00``?"""
    pattern = _international_prefix(region)
    match = pattern.match(raw) if pattern is not None else None
    return match is not None and match.end() > len(OLD_RULE_PREFIX)


@lru_cache(maxsize=512)
def _international_prefix(region: str) -> re.Pattern[str] | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    if metadata is None or not metadata.international_prefix:
        return None
    return re.compile(metadata.international_prefix)


@lru_cache(maxsize=512)
def _national_prefixes(country_code: int) -> tuple[str, ...]:
    """The national (trunk) prefixes of the regions sharing ``country_code``."""
    prefixes = set()
    for region in phonenumbers.region_codes_for_country_code(country_code):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if metadata is not None and metadata.national_prefix:
            prefixes.add(metadata.national_prefix)
    return tuple(sorted(prefixes))


def _valid(e164: str) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(e164)))
    except phonenumbers.NumberParseException:
        return False

"""Targeted property tests: identity normalisation with phone-shaped and
identity-shaped input (the existing properties draw uniform text, which is rarely a
possible number)."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from ivr_engine.identity import (
    InvalidIdentity,
    normalize_caller_id,
    normalize_identity,
    normalize_phone,
)

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")  # ITU-T E.164: at most 15 digits
_REGIONS = st.sampled_from(["US", "GB", "DE", "FR", "IT", "IN", "BR", "JP", "AU", "ZZ"])
_phone_chars = (
    "0123456789+()-. \t/#*x"
    + "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"
    + "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
    + "\u00a0\u2011"
)
_phone = st.tuples(
    st.sampled_from(["", "+", "00", "tel:", "TEL:+", "+1", "+44", "011", " "]),
    st.text(alphabet=_phone_chars, max_size=24),
).map("".join)


@given(_phone, _REGIONS)
@example("01100000000000000", "JP")  # was: +811100000000000000 (18 digits)
def test_phone_normalisation_gives_ascii_e164_or_invalid_identity(raw: str, region: str) -> None:
    try:
        e164 = normalize_phone(raw, region)
    except InvalidIdentity:
        return
    assert _E164.fullmatch(e164), e164


@given(_phone, _REGIONS, _REGIONS)
def test_phone_normalisation_is_idempotent_in_any_region(raw: str, first: str, then: str) -> None:
    try:
        e164 = normalize_phone(raw, first)
    except InvalidIdentity:
        return
    assert normalize_phone(e164, then) == e164


@given(_phone, _REGIONS)
def test_caller_id_is_the_phone_or_none(raw: str, region: str) -> None:
    got = normalize_caller_id(raw, region)
    try:
        expected: str | None = normalize_phone(raw, region)
    except InvalidIdentity:
        expected = None
    if raw.strip().lower() in {"", "unknown", "anonymous", "restricted"}:
        expected = None
    assert got == expected


_kinds = st.sampled_from(["email", "chat", "messenger", "account", "phone"])
_identity_text = st.text(
    alphabet="aZ09@._+- \t\u0130\u212a\u00df\u00b2\u0663\x7f\x85\u2028", max_size=30
)


@given(_kinds, _identity_text)
def test_normalised_identities_are_fixed_points(kind: str, value: str) -> None:
    """What ``normalize_identity`` returns is accepted again, unchanged: the API stores the
    normalised value and later looks it up with the same function."""
    try:
        once = normalize_identity(kind, value)
    except InvalidIdentity:
        return
    assert normalize_identity(kind, once) == once


@given(_identity_text)
def test_account_numbers_are_ascii_digits(value: str) -> None:
    try:
        account = normalize_identity("account", value)
    except InvalidIdentity:
        return
    assert account.isascii() and account.isdigit(), account

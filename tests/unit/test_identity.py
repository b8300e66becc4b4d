import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_engine.identity import (
    InvalidIdentity,
    normalize_caller_id,
    normalize_identity,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+15551230001", "+15551230001"),
        ("+1 (555) 123-0001", "+15551230001"),
        ("5551230001", "+15551230001"),
        ("tel:+15551230001", "+15551230001"),
        ("00441632960961", "+441632960961"),
        ("+44 1632 960961", "+441632960961"),
    ],
)
def test_phone_numbers_become_e164(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


def test_default_region_reads_national_numbers() -> None:
    assert normalize_phone("01632 960961", default_region="GB") == "+441632960961"


@pytest.mark.parametrize("raw", ["", "abc", "+1", "12", "x" * 50, "+999999999999999999"])
def test_invalid_phone_numbers_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize_phone(raw)


@pytest.mark.parametrize("raw", [None, "", "unknown", "Anonymous", "restricted", "garbage"])
def test_withheld_or_unusable_caller_id_is_none(raw: str | None) -> None:
    assert normalize_caller_id(raw) is None


def test_identity_kinds() -> None:
    assert normalize_identity("email", " Ada@Example.COM ") == "ada@example.com"
    assert normalize_identity("account", "40012345") == "40012345"
    assert normalize_identity("chat", " web:abc ") == "web:abc"
    with pytest.raises(InvalidIdentity, match="unknown identity kind"):
        normalize_identity("fax", "1")
    with pytest.raises(InvalidIdentity, match="e-mail"):
        normalize_identity("email", "not-an-address")
    with pytest.raises(InvalidIdentity, match="digits only"):
        normalize_identity("account", "12a")
    with pytest.raises(InvalidIdentity):
        normalize_identity("chat", "line\nbreak")


@given(st.text(max_size=60))
def test_caller_id_never_raises(raw: str) -> None:
    result = normalize_caller_id(raw)
    assert result is None or (result.startswith("+") and result[1:].isdigit())


@given(st.text(max_size=80), st.sampled_from(["US", "GB", "DE"]))
def test_caller_id_cache_gives_what_the_parser_gives(raw: str, region: str) -> None:
    from ivr_engine.identity import _caller_id

    first, again = normalize_caller_id(raw, region), normalize_caller_id(raw, region)
    assert first == again == _caller_id(raw, region)


def test_a_returning_caller_id_is_parsed_once() -> None:
    from ivr_engine.identity import _cached_caller_id

    _cached_caller_id.cache_clear()
    for region in ("US", "US", "GB"):
        normalize_caller_id("+1 (555) 123-0001", region)
    info = _cached_caller_id.cache_info()
    assert (info.hits, info.misses) == (1, 2)
    assert normalize_caller_id("5551230001", "US") == "+15551230001"


@pytest.mark.parametrize("kind", ["email", "chat", "messenger"])
@pytest.mark.parametrize("char", ["\x7f", "\x85", "\u2028", "\u2029"])
def test_identities_with_del_c1_or_line_separators_are_refused(kind: str, char: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize_identity(kind, f"ada{char}x@example.com")


def test_an_email_that_lower_casing_makes_too_long_is_refused() -> None:
    # "İ".lower() is two characters: 305 in, 605 out, past the 320 every lookup allows
    with pytest.raises(InvalidIdentity):
        normalize_identity("email", "\u0130" * 300 + "@x.yz")
    assert normalize_identity("email", "\u0130" * 10 + "@x.yz") == "i\u0307" * 10 + "@x.yz"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        # the region's own international prefix, longer than "00" or other than it
        ("0011 44 1632 960961", "AU", "+441632960961"),  # was: +11441632960961, refused
        ("0011 1 212 555 0123", "AU", "+12125550123"),
        ("00700 44 1632 960961", "KR", "+441632960961"),  # was: +700441632960961 (+7)
        ("001 44 1632 960961", "KR", "+441632960961"),
        ("0014 44 1632 960961", "BR", "+441632960961"),  # carrier code 14
        ("001 44 1632 960961", "SG", "+441632960961"),
        ("011 44 1632 960961", "US", "+441632960961"),
        ("010 44 1632 960961", "JP", "+441632960961"),
        ("00 44 1632 960961", "FR", "+441632960961"),
        # not the region's prefix: the generic "00" rule
        ("00 44 1632 960961", "US", "+441632960961"),
        ("0044 1632 960961", "BR", "+441632960961"),
        ("0061 2 9876 5432", "AU", "+61298765432"),
    ],
)
def test_the_regions_own_international_prefix_comes_before_the_00_rule(
    raw: str, region: str, expected: str
) -> None:
    assert normalize_phone(raw, region) == expected
    assert normalize_caller_id(raw.replace(" ", ""), region) == expected

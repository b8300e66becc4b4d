"""Re-reading phone values stored under the earlier "00 becomes +" rule (before 2fa2187)."""

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from ivr_engine.identity import InvalidIdentity, normalize_phone
from ivr_engine.phone_rereading import old_rule_inputs, reads_longer_prefix, reread_phone


def old_rule(raw: str, region: str) -> str:
    """``normalize_phone`` as it was before commit 2fa2187 (from its diff)."""
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    number = phonenumbers.parse(text, region)
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(raw)
    e164: str = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if len(e164) > 16:
        raise InvalidIdentity(raw)
    return e164


@pytest.mark.parametrize(
    ("region", "raw", "stored", "today"),
    [
        ("KR", "00700 44 20 7946 0000", "+700442079460000", "+442079460000"),
        # the "1" after 0011 was +1, and the next digit dropped as the US trunk prefix
        ("AU", "0011 49 30 123456", "+14930123456", "+4930123456"),
        ("AU", "0011 297 521 2345", "+12975212345", "+2975212345"),
    ],
)
def test_a_value_stored_wrongly_is_corrected_to_todays_reading(
    region: str, raw: str, stored: str, today: str
) -> None:
    assert old_rule(raw, region) == stored
    assert normalize_phone(raw, region) == today
    found = reread_phone(stored, region)
    assert found is not None
    assert found.corrected == today


def test_a_valid_stored_value_is_ambiguous_and_never_corrected() -> None:
    # "+1 201-555-0123" typed with its "+" is stored so by both rules; "001 201..." from
    # Korea (KR's 001 prefix, then +20 Egypt) was stored the same way by the old rule.
    found = reread_phone("+12015550123", "KR")
    assert found is not None
    assert found.corrected is None
    assert found.readings == (normalize_phone("0012015550123", "KR"),)


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "JP", "IN"])
@pytest.mark.parametrize("stored", ["+700442079460000", "+14930123456", "+12015550123"])
def test_regions_whose_prefix_is_00_or_not_00_have_nothing_to_reread(
    region: str, stored: str
) -> None:
    assert reread_phone(stored, region) is None


def test_a_domestic_mobile_is_never_corrected() -> None:
    # "008 20 10 1234 5678" (Egypt, KR's 008 prefix) was stored as +82 10..., the 0 after
    # +82 dropped as KR's trunk prefix: the same value as a Korean mobile, so ambiguous.
    found = reread_phone("+821012345678", "KR")
    assert found is not None
    assert (found.corrected, found.readings) == (None, ("+201012345678",))


def test_the_old_rule_inputs_include_a_dropped_trunk_prefix() -> None:
    assert old_rule_inputs("+12975212345") == ("0012975212345", "00112975212345")
    assert reads_longer_prefix("00112975212345", "AU")
    assert not reads_longer_prefix("004930123456", "AU")


def _example_numbers() -> list[str]:
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE):
            if (example := phonenumbers.example_number_for_type(region, kind)) is not None:
                numbers.append(phonenumbers.format_number(example, PhoneNumberFormat.E164))
    return numbers


@pytest.mark.parametrize(("region", "prefix"), [("KR", "00700"), ("KR", "001"), ("AU", "0011")])
def test_over_every_regions_example_numbers_a_correction_is_todays_reading(
    region: str, prefix: str
) -> None:
    """Each example number dialled with the region's prefix: what the old rule stored is
    corrected to what today's rule reads, or reported as ambiguous; never to a third value.
    And the example numbers themselves, stored correctly, are never corrected."""
    corrected = 0
    for number in _example_numbers():
        raw = prefix + number[1:]
        try:
            stored = old_rule(raw, region)
        except (InvalidIdentity, phonenumbers.NumberParseException):
            continue
        found = reread_phone(stored, region)
        if found is not None and found.corrected is not None:
            assert found.corrected == normalize_phone(raw, region), raw
            corrected += 1
        rightly_stored = reread_phone(number, region)
        assert rightly_stored is None or rightly_stored.corrected is None, number
    assert corrected > 50

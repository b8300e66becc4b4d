"""Caller IDs carrying the country code without ``+`` or ``00`` (``4915112345678``: E.164
without its plus, as many SIP trunks deliver it): ``identity.normalize_phone``'s rule."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from crm_bridge.calls import BridgeSettings
from ivr_engine.api.schemas import IdentityIn
from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import CountryCodeWithoutPlus
from ivr_engine.identity import normalize_caller_id, normalize_identity, normalize_phone
from ivr_engine.settings import Settings, load_settings

MODES: tuple[CountryCodeWithoutPlus, ...] = ("auto", "always", "never")


@pytest.mark.parametrize(
    ("raw", "region", "expected", "national_reading"),
    [
        ("4915112345678", "DE", "+4915112345678", "+494915112345678"),
        ("491701234567", "DE", "+491701234567", "+49491701234567"),
        ("49221123456", "DE", "+49221123456", "+4949221123456"),
        ("49 151 1234-5678", "DE", "+4915112345678", "+494915112345678"),  # typed
        ("62812345678", "ID", "+62812345678", "+6262812345678"),
        ("62218350794", "ID", "+62218350794", "+6262218350794"),
        ("55800123154", "BR", "+55800123154", "+5555800123154"),
        ("468123593", "SE", "+468123593", "+46468123593"),
        ("318001187", "NL", "+318001187", "+31318001187"),
        ("38328012583", "XK", "+38328012583", "+38338328012583"),
    ],
)
def test_the_country_code_without_plus_is_read_as_international(
    raw: str, region: str, expected: str, national_reading: str
) -> None:
    """A region with a national prefix: a national number would start with it."""
    assert normalize_phone(raw, region) == expected
    assert normalize_phone(raw, region, "always") == expected
    assert normalize_caller_id(raw, region) == expected
    assert normalize_phone(raw, region, "never") == national_reading  # before the rule


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        # US/CA: "1" is the country code and the national prefix
        ("15551230001", "US", "+15551230001"),
        ("5551230001", "US", "+15551230001"),
        ("+1 (555) 123-0001", "US", "+15551230001"),
        ("15145550123", "CA", "+15145550123"),
        ("5145550123", "CA", "+15145550123"),
        # national format keeps its prefix; the country code without "+" was read right before
        ("07911123456", "GB", "+447911123456"),
        ("447911123456", "GB", "+447911123456"),
        ("01632 960961", "GB", "+441632960961"),
        ("0612345678", "FR", "+33612345678"),
        ("33612345678", "FR", "+33612345678"),
        ("0412345678", "AU", "+61412345678"),
        ("61412345678", "AU", "+61412345678"),
        ("09876543210", "IN", "+919876543210"),
        ("9876543210", "IN", "+919876543210"),
        ("919876543210", "IN", "+919876543210"),
        ("01012345678", "KR", "+821012345678"),
        ("821012345678", "KR", "+821012345678"),
        ("011987654321", "BR", "+5511987654321"),
        ("5511987654321", "BR", "+5511987654321"),
        ("09012345678", "JP", "+819012345678"),
        ("819012345678", "JP", "+819012345678"),
        ("015112345678", "DE", "+4915112345678"),
        ("0221123456", "DE", "+49221123456"),
        # no national prefix that is stripped: the national reading
        ("0612345678", "IT", "+390612345678"),
        ("3471234567", "IT", "+393471234567"),
        ("393471234567", "IT", "+393471234567"),
        ("81234567", "SG", "+6581234567"),
        ("6581234567", "SG", "+6581234567"),
        # international prefixes, unchanged
        ("0049 151 12345678", "DE", "+4915112345678"),
        ("0011 44 1632 960961", "AU", "+441632960961"),
        ("+4915112345678", "FR", "+4915112345678"),
    ],
)
def test_numbers_read_right_before_read_the_same(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected
    assert normalize_phone(raw, region, "never") == expected


def test_without_a_national_prefix_both_readings_are_genuine_the_setting_decides() -> None:
    """IT: ``3906123456`` is the mobile 390 612 3456 and Rome's +39 06 123456 as digits."""
    assert normalize_phone("3906123456", "IT") == "+393906123456"
    assert normalize_phone("3906123456", "IT", "never") == "+393906123456"
    assert normalize_phone("3906123456", "IT", "always") == "+3906123456"
    assert normalize_phone("6562123456", "SG", "always") == "+6562123456"  # Singapore fixed
    for mode in MODES:  # in the US "1" reads the same either way
        assert normalize_phone("15551230001", "US", mode) == "+15551230001"
        assert normalize_phone("5551230001", "US", mode) == "+15551230001"


def test_the_international_reading_must_be_a_valid_number() -> None:
    """``4900000000`` is no valid +49 0000 0000: the national reading stays."""
    assert normalize_phone("491234", "DE") == normalize_phone("491234", "DE", "never")
    assert normalize_phone("4915112345678x12", "DE") == "+494915112345678"  # not bare digits


def test_the_caller_id_cache_is_keyed_on_the_rule_too() -> None:
    assert normalize_caller_id("4915112345678", "DE", "never") == "+494915112345678"
    assert normalize_caller_id("4915112345678", "DE", "auto") == "+4915112345678"
    assert normalize_caller_id("4915112345678", "DE", "never") == "+494915112345678"
    assert normalize_caller_id("3906123456", "IT", "always") == "+3906123456"
    assert normalize_caller_id("3906123456", "IT") == "+393906123456"


def test_api_phone_identities_are_read_as_caller_ids() -> None:
    """A person typing ``4915112345678`` in DE means +49 151..."""
    body = {"kind": "phone", "value": "4915112345678"}
    typed = IdentityIn.model_validate(body, context={"default_region": "DE"})
    assert typed.value == "+4915112345678"
    context = {"default_region": "DE", "country_code_without_plus": "never"}
    assert IdentityIn.model_validate(body, context=context).value == "+494915112345678"
    assert normalize_identity("phone", "3906123456", "IT", "always") == "+3906123456"


def test_the_setting_is_validated_and_reaches_the_bridge() -> None:
    assert Settings().caller_id_country_code_without_plus == "auto"
    env = {"IVR_ENGINE_CALLER_ID_COUNTRY_CODE_WITHOUT_PLUS": "never"}
    settings = load_settings(environ=env)
    assert settings.caller_id_country_code_without_plus == "never"
    bridge = BridgeSettings.from_engine(
        settings, roles=frozenset({"consumer"}), bus_url="redis://127.0.0.1:6379/0"
    )
    assert bridge.normaliser().country_code_without_plus == "never"
    with pytest.raises(ConfigError, match=r"caller_id_country_code_without_plus.*'auto'"):
        load_settings(environ={"IVR_ENGINE_CALLER_ID_COUNTRY_CODE_WITHOUT_PLUS": "sometimes"})


def _regions_with_a_national_prefix() -> list[str]:
    regions = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if metadata is not None and metadata.national_prefix:
            regions.append(region)
    return regions


_TYPES = [PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE]


@given(st.sampled_from(_regions_with_a_national_prefix()), st.sampled_from(_TYPES), st.data())
@example("DE", PhoneNumberType.MOBILE, None)
@example("ID", PhoneNumberType.FIXED_LINE, None)
def test_e164_without_its_plus_reads_as_itself_in_its_region(
    region: str, kind: int, data: st.DataObject | None
) -> None:
    """A valid number N of a region R with a national prefix: the digits of N's E.164 read
    in R are N, and N's national format still reads as N."""
    sample = phonenumbers.example_number_for_type(region, kind)
    if sample is None:
        return
    e164 = phonenumbers.format_number(sample, phonenumbers.PhoneNumberFormat.E164)
    if data is not None:  # other numbers of that range: the example's last digits changed
        tail = data.draw(st.integers(0, 999), label="last three digits")
        e164 = f"{e164[:-3]}{tail:03d}"
    number = phonenumbers.parse(e164)
    if not phonenumbers.is_valid_number(number):
        return
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    assert normalize_phone(e164[1:], region) == e164
    assert normalize_phone(national, region) == e164

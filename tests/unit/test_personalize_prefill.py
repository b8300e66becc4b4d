"""plan_fields: known fields prefilled, unknown asked, sensitive values read back only verified."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_personalize_helpers import FIELDS, NOW, sample_menu

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import FieldSpec, KnownField, MenuOption
from ivr_engine.personalize import plan_fields

ACCOUNT = KnownField("account_number", "40012345", "chat", NOW - timedelta(days=3))
POSTCODE = KnownField("postcode", "90210", "web", NOW - timedelta(hours=5))
MOVING = MenuOption(
    "moving",
    "Moving",
    "ivr-engine/label-moving",
    "3",
    required_fields=("account_number", "postcode"),
)


def billing() -> MenuOption:
    option = sample_menu().option("billing")
    assert option is not None
    return option


def test_known_account_number_is_not_asked() -> None:
    plan = plan_fields(
        billing(), FIELDS, {"account_number": ACCOUNT}, caller_verified=False, now=NOW
    )
    assert plan.intent == "billing"
    assert dict(plan.prefilled) == {"account_number": ACCOUNT}
    assert plan.to_ask == ()
    assert plan.readable == frozenset({"account_number"})  # not sensitive
    assert plan.reasons == ("account_number: known from chat 3 days ago, not asked",)


def test_unknown_account_number_is_asked() -> None:
    plan = plan_fields(billing(), FIELDS, {}, caller_verified=False, now=NOW)
    assert plan.prefilled == {}
    assert plan.to_ask == (FIELDS["account_number"],)
    assert plan.readable == frozenset()
    assert plan.reasons == ("account_number: unknown, will ask",)


def test_blank_known_value_is_asked() -> None:
    blank = KnownField("account_number", "  ", "chat", NOW)
    plan = plan_fields(billing(), FIELDS, {"account_number": blank}, caller_verified=True)
    assert plan.to_ask == (FIELDS["account_number"],) and plan.prefilled == {}


def test_sensitive_known_field_is_asked_of_an_unverified_caller() -> None:
    """Caller ID can be spoofed and an account number keyed in is no secret: a known
    sensitive value (the postcode that checks who calls) is no reason to skip asking."""
    known = {"account_number": ACCOUNT, "postcode": POSTCODE}
    plan = plan_fields(MOVING, FIELDS, known, caller_verified=False, now=NOW)
    assert dict(plan.prefilled) == {"account_number": ACCOUNT}
    assert plan.to_ask == (FIELDS["postcode"],)
    assert plan.readable == frozenset({"account_number"})
    assert plan.reasons == (
        "account_number: known from chat 3 days ago, not asked",
        "postcode: known from web 5 hours ago, sensitive: asked, caller not verified",
    )


def test_sensitive_known_field_is_prefilled_for_a_verified_caller() -> None:
    plan = plan_fields(MOVING, FIELDS, {"postcode": POSTCODE}, caller_verified=True, now=NOW)
    assert dict(plan.prefilled) == {"postcode": POSTCODE}
    assert plan.to_ask == (FIELDS["account_number"],)
    assert plan.readable == frozenset({"postcode"})
    assert plan.reasons[1] == "postcode: known from web 5 hours ago, not asked"


def test_sensitive_value_that_does_not_fit_says_so_verified_or_not() -> None:
    stale = KnownField("postcode", "12", "web", NOW)
    for verified in (False, True):
        plan = plan_fields(MOVING, FIELDS, {"postcode": stale}, caller_verified=verified)
        assert plan.reasons[1] == "postcode: the known value is not 4 to 8 digits, will ask again"


def test_fields_asked_in_the_options_order() -> None:
    option = MenuOption("x", "X", "p/x", "1", required_fields=("postcode", "account_number"))
    plan = plan_fields(option, FIELDS, {}, caller_verified=False)
    assert [s.name for s in plan.to_ask] == ["postcode", "account_number"]


def test_all_known_all_prefilled() -> None:
    known = {"account_number": ACCOUNT, "postcode": POSTCODE}
    plan = plan_fields(MOVING, FIELDS, known, caller_verified=True)
    assert plan.to_ask == () and set(plan.prefilled) == {"account_number", "postcode"}
    assert plan.readable == frozenset({"account_number", "postcode"})


def test_unrequired_known_fields_are_ignored() -> None:
    plan = plan_fields(billing(), FIELDS, {"postcode": POSTCODE}, caller_verified=True)
    assert plan.prefilled == {} and [s.name for s in plan.to_ask] == ["account_number"]


def test_no_required_fields() -> None:
    option = sample_menu().option("operator")
    assert option is not None
    plan = plan_fields(option, FIELDS, {"account_number": ACCOUNT}, caller_verified=False)
    assert (plan.prefilled, plan.to_ask, plan.reasons, plan.readable) == ({}, (), (), frozenset())


def test_duplicate_required_field_planned_once() -> None:
    option = MenuOption("x", "X", "p/x", "1", required_fields=("postcode", "postcode"))
    assert len(plan_fields(option, FIELDS, {}, caller_verified=False).to_ask) == 1


def test_without_now_the_reason_names_the_date() -> None:
    plan = plan_fields(billing(), FIELDS, {"account_number": ACCOUNT}, caller_verified=False)
    assert plan.reasons == ("account_number: known from chat on 2024-05-29, not asked",)


def test_required_field_without_spec_is_config_error() -> None:
    option = MenuOption("x", "X", "p/x", "1", required_fields=("pin",))
    with pytest.raises(ConfigError, match=r"'x' requires field 'pin'"):
        plan_fields(option, FIELDS, {}, caller_verified=False)


@pytest.mark.parametrize(
    "value",
    ["4001-2345", "4001 2345", "ABC12345", "1234", "4" * 40, "٤٠٠١٢٣٤٥"],
)
def test_a_known_value_the_ivr_could_not_have_collected_is_asked_again(value: str) -> None:
    """Stored before the API checked values, or before the menu's rule changed: the
    caller is asked (and what they key in replaces it), never "prefilled" with it."""
    spec = FIELDS["account_number"]
    stale = KnownField("account_number", value, "chat", NOW - timedelta(days=1))
    plan = plan_fields(billing(), FIELDS, {"account_number": stale}, caller_verified=True, now=NOW)
    assert plan.prefilled == {}
    assert plan.to_ask == (spec,)
    assert plan.reasons == (
        f"account_number: the known value is not {spec.length_rule} digits, will ask again",
    )


def test_field_spec_accepts_exactly_the_digits_and_lengths_it_collects() -> None:
    spec = FieldSpec("pin", "p", min_digits=4, max_digits=6)
    assert [spec.accepts(v) for v in ("1234", "123456", "123", "1234567", "12a4", "")] == [
        True, True, False, False, False, False,
    ]  # fmt: skip
    assert spec.length_rule == "4 to 6"
    assert FieldSpec("pin", "p", min_digits=4, max_digits=4).length_rule == "exactly 4"

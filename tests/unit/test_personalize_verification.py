"""check_known_answer: a sensitive answer verifies the caller only when it is the known value."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_personalize_helpers import NOW

from ivr_engine.domain.models import KnownField
from ivr_engine.personalize import KnowledgeCheck, check_known_answer

POSTCODE = KnownField("postcode", "90210", "web", NOW - timedelta(days=2))


def test_the_known_value_keyed_in_matches() -> None:
    assert check_known_answer("postcode", "90210", {"postcode": POSTCODE}) is KnowledgeCheck.MATCHED


@pytest.mark.parametrize("keyed", ["90211", "9021", "902100", "09210", ""])
def test_any_other_digits_mismatch(keyed: str) -> None:
    known = {"postcode": POSTCODE}
    assert check_known_answer("postcode", keyed, known) is KnowledgeCheck.MISMATCHED


@pytest.mark.parametrize("known", [{}, {"postcode": KnownField("postcode", " ", "web", NOW)}])
def test_nothing_known_is_nothing_to_check(known: dict[str, KnownField]) -> None:
    assert check_known_answer("postcode", "90210", known) is KnowledgeCheck.NOT_KNOWN


def test_another_fields_value_is_not_the_answer() -> None:
    other = {"zip": KnownField("zip", "90210", "web", NOW)}
    assert check_known_answer("postcode", "90210", other) is KnowledgeCheck.NOT_KNOWN


def test_a_stored_value_the_ivr_would_not_accept_still_has_to_match() -> None:
    """Not replaced by whatever an unverified caller keys in; spaces around it do not count."""
    odd = {"postcode": KnownField("postcode", " 90210 ", "web", NOW)}
    assert check_known_answer("postcode", "90210", odd) is KnowledgeCheck.MATCHED
    short = {"postcode": KnownField("postcode", "12", "web", NOW)}
    assert check_known_answer("postcode", "1234", short) is KnowledgeCheck.MISMATCHED

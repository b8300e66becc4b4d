"""plan_account_claims: a saved account number becomes its customer's identity, never taken
from another customer (pure; exhaustive cases and a property)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_engine.timeline.account_claims import (
    AccountClaims,
    RefusedClaim,
    account_values,
    plan_account_claims,
)


def test_an_unowned_number_goes_to_its_customer() -> None:
    assert plan_account_claims({"ada": "111111"}, {}) == AccountClaims((("ada", "111111"),))


def test_a_number_the_customer_owns_already_adds_nothing() -> None:
    assert plan_account_claims({"ada": "111111"}, {"111111": ["ada"]}) == AccountClaims()


def test_a_number_another_owns_is_refused_and_says_who() -> None:
    claims = plan_account_claims({"bob": "111111"}, {"111111": ["cy", "ada"]})
    assert claims == AccountClaims((), (RefusedClaim("bob", "111111", ("ada", "cy")),))
    message = claims.refused[0].message()
    assert "customer bob" in message and "customer(s) ada, cy own" in message
    assert "kept as a field only" in message


def test_a_number_shared_with_its_owner_is_refused_even_if_the_customer_owns_it_too() -> None:
    """Owned by ada and bob already (an agent added both): nothing to add for bob."""
    assert plan_account_claims({"bob": "111111"}, {"111111": ["ada", "bob"]}) == AccountClaims()


def test_one_new_number_saved_by_two_goes_to_the_first_by_id() -> None:
    claims = plan_account_claims({"bob": "111111", "ada": "111111"}, {})
    assert claims.add == (("ada", "111111"),)
    assert claims.refused == (RefusedClaim("bob", "111111", ("ada",)),)


def test_account_values_normalise_and_drop_what_is_no_account_number() -> None:
    rows = [("a", " 123456 "), ("b", "12-34"), ("c", ""), ("d", "١٢٣٤٥٦"), ("e", "²²")]
    assert account_values(rows) == {"a": "123456", "d": "123456"}


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abcde"), st.sampled_from(["1", "2", "3"])),
    st.dictionaries(st.sampled_from(["1", "2", "3"]), st.lists(st.sampled_from("abcde"))),
)
def test_no_number_ever_gets_a_second_owner_and_every_unowned_one_gets_one(
    stored: dict[str, str], owners: dict[str, list[str]]
) -> None:
    claims = plan_account_claims(stored, owners)
    added = dict.fromkeys(account for _, account in claims.add)
    assert len(added) == len(claims.add)  # one new owner per number at most
    for customer_id, account in claims.add:
        assert stored[customer_id] == account and not owners.get(account)
    for refused in claims.refused:
        assert refused.customer_id not in owners.get(refused.account, [])
    handled = {c for c, _ in claims.add} | {r.customer_id for r in claims.refused}
    owning = {c for c, account in stored.items() if c in owners.get(account, [])}
    assert handled | owning == set(stored) and not handled & owning
    for account in set(stored.values()):
        assert owners.get(account) or account in added

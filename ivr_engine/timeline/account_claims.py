"""Which ``account`` identities saved account numbers give their customers. Pure.

A customer whose account-number known field (``ACCOUNT_FIELD``) is saved, from any channel,
the API or a call, owns the ``("account", value)`` identity too, so keying that number in
from any line identifies them. Nobody's identity is taken: a value another customer owns
already stays a field only (merging the two is an agent's explicit decision), and the
refusal says why. Values that are no account number (``normalize_identity``) claim nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ivr_engine.domain.models import ACCOUNT_IDENTITY
from ivr_engine.identity import InvalidIdentity, normalize_identity


@dataclass(frozen=True, slots=True)
class RefusedClaim:
    customer_id: str
    account: str
    owners: tuple[str, ...]  # who owns the identity already

    def message(self) -> str:
        return (
            f"account number {self.account} is saved on customer {self.customer_id}, but "
            f"customer(s) {', '.join(self.owners)} own that account identity: kept as a field "
            "only, not added as an identity (merge the customers to join them)"
        )


@dataclass(frozen=True, slots=True)
class AccountClaims:
    add: tuple[tuple[str, str], ...] = ()  # (customer_id, account) identities to insert
    refused: tuple[RefusedClaim, ...] = ()


def account_values(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(customer_id, stored field value) → customer_id: the account number it stands for;
    values that are no account number are left out."""
    found: dict[str, str] = {}
    for customer_id, value in rows:
        try:
            found[customer_id] = normalize_identity(ACCOUNT_IDENTITY, value)
        except InvalidIdentity:
            continue
    return found


def owners_by_account(rows: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(account, customer_id) identity rows → account: the customers owning it."""
    owners: dict[str, list[str]] = {}
    for account, customer_id in rows:
        owners.setdefault(account, []).append(customer_id)
    return owners


def plan_account_claims(
    stored: Mapping[str, str], owners: Mapping[str, Sequence[str]]
) -> AccountClaims:
    """``stored``: customer_id → their account number (``account_values``); ``owners``:
    account number → the customers owning that identity now. A customer already owning
    theirs adds nothing; an unowned number goes to its customer (two customers saving the
    same new number together: the first by id, the other is refused)."""
    taken = {account: set(ids) for account, ids in owners.items()}
    add: list[tuple[str, str]] = []
    refused: list[RefusedClaim] = []
    for customer_id, account in sorted(stored.items()):
        holders = taken.setdefault(account, set())
        if customer_id in holders:
            continue
        if holders:
            refused.append(RefusedClaim(customer_id, account, tuple(sorted(holders))))
            continue
        holders.add(customer_id)
        add.append((customer_id, account))
    return AccountClaims(tuple(add), tuple(refused))

"""The plan of ``ivr-engine identities renormalize``: which stored phone identities change.

Pure: the rows and the current owners of the corrected values come in, the plan comes out.
A correction that another customer already holds (or that another row's correction would
give another customer) is a conflict: the row stays, since merging customers is an explicit
act (``POST /v1/customers/{id}/merge``), never a side effect. A customer that already holds
the corrected value loses the stale row instead (the value is unique per customer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ivr_engine.phone_rereading import Rereading, reread_phone


@dataclass(frozen=True, slots=True)
class PhoneRow:
    """One stored phone identity (``identities`` with kind ``phone``)."""

    row_id: int
    customer_id: str
    value: str


@dataclass(frozen=True, slots=True)
class Correction:
    row: PhoneRow
    corrected: str


@dataclass(frozen=True, slots=True)
class Change:
    row: PhoneRow
    corrected: str
    drop: bool  # the customer already holds ``corrected``: delete the stale row


@dataclass(frozen=True, slots=True)
class Conflict:
    row: PhoneRow
    corrected: str
    other_customers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ambiguous:
    row: PhoneRow
    rereading: Rereading


@dataclass(frozen=True, slots=True)
class Scan:
    """What a batch of rows needs: corrections to plan, ambiguous values to report."""

    corrections: tuple[Correction, ...]
    ambiguous: tuple[Ambiguous, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...]
    conflicts: tuple[Conflict, ...]


def scan_rows(rows: Iterable[PhoneRow], region: str) -> Scan:
    corrections: list[Correction] = []
    ambiguous: list[Ambiguous] = []
    for row in rows:
        found = reread_phone(row.value, region)
        if found is None:
            continue
        if found.corrected is None:
            ambiguous.append(Ambiguous(row, found))
        else:
            corrections.append(Correction(row, found.corrected))
    return Scan(tuple(corrections), tuple(ambiguous))


def plan_changes(corrections: Sequence[Correction], owners: Mapping[str, Iterable[str]]) -> Plan:
    """``owners``: corrected value -> the customers holding it now (absent: nobody)."""
    claimants: dict[str, set[str]] = {}
    for c in corrections:
        claimants.setdefault(c.corrected, set(owners.get(c.corrected, ()))).add(c.row.customer_id)
    changes: list[Change] = []
    conflicts: list[Conflict] = []
    holding = {(value, customer) for value, held in owners.items() for customer in held}
    for c in sorted(corrections, key=lambda c: c.row.row_id):
        others = tuple(sorted(claimants[c.corrected] - {c.row.customer_id}))
        if others:
            conflicts.append(Conflict(c.row, c.corrected, others))
            continue
        key = (c.corrected, c.row.customer_id)
        changes.append(Change(c.row, c.corrected, drop=key in holding))
        holding.add(key)  # a second stale row of the same customer is dropped
    return Plan(tuple(changes), tuple(conflicts))


def describe(
    plan: Plan, ambiguous: Sequence[Ambiguous], *, applied: bool, list_ambiguous: bool = False
) -> list[str]:
    """The report, one line per change and conflict (and ambiguous value if asked: in a
    region like KR every domestic number is one), then a summary line."""
    lines = []
    verb = "changed" if applied else "would change"
    for change in plan.changes:
        row = change.row
        what = f"drop (customer already has {change.corrected})" if change.drop else ""
        lines.append(
            f"{verb}: identity {row.row_id} of customer {row.customer_id}: "
            f"{row.value} -> {change.corrected}{' ' + what if what else ''}"
        )
    for conflict in plan.conflicts:
        row = conflict.row
        lines.append(
            f"conflict, left as is: identity {row.row_id} of customer {row.customer_id}: "
            f"{row.value} -> {conflict.corrected} belongs to customer(s) "
            f"{', '.join(conflict.other_customers)}; merge them explicitly if they are one"
        )
    for item in ambiguous if list_ambiguous else ():
        row, found = item.row, item.rereading
        lines.append(
            f"ambiguous, left as is: identity {row.row_id} of customer {row.customer_id}: "
            f"{row.value} ({found.reason}; could also be {', '.join(found.readings)})"
        )
    lines.append(
        f"{len(plan.changes)} {verb}, {len(plan.conflicts)} conflict(s), "
        f"{len(ambiguous)} ambiguous (valid as stored, or with several valid readings: "
        "left as they are"
        + ("" if list_ambiguous or not ambiguous else "; --list-ambiguous lists them")
        + ")"
        + ("" if applied or not plan.changes else "; run again with --apply to change them")
    )
    return lines

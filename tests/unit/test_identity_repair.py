"""The renormalize plan: corrections, conflicts with other customers, stale duplicates."""

from ivr_engine.identity_repair import (
    Change,
    Conflict,
    Correction,
    PhoneRow,
    Plan,
    describe,
    plan_changes,
    scan_rows,
)

STALE = "+700442079460000"  # "00700 44 20 7946 0000" from Korea under the old rule
FIXED = "+442079460000"


def test_scan_sorts_rows_into_corrections_ambiguous_and_untouched() -> None:
    rows = [
        PhoneRow(1, "a", STALE),
        PhoneRow(2, "b", "+12015550123"),  # valid as stored: ambiguous
        PhoneRow(3, "c", FIXED),  # today's value: nothing to do
    ]
    scan = scan_rows(rows, "KR")
    assert scan.corrections == (Correction(rows[0], FIXED),)
    assert [a.row for a in scan.ambiguous] == [rows[1]]


def test_a_correction_nobody_holds_changes_the_row() -> None:
    row = PhoneRow(1, "a", STALE)
    plan = plan_changes([Correction(row, FIXED)], {})
    assert plan.changes == (Change(row, FIXED, drop=False),)
    assert plan.conflicts == ()


def test_a_correction_another_customer_holds_is_a_conflict_not_a_merge() -> None:
    row = PhoneRow(1, "a", STALE)
    plan = plan_changes([Correction(row, FIXED)], {FIXED: {"b"}})
    assert plan.changes == ()
    assert plan.conflicts == (Conflict(row, FIXED, ("b",)),)


def test_a_correction_the_customer_already_holds_drops_the_stale_row() -> None:
    row = PhoneRow(1, "a", STALE)
    plan = plan_changes([Correction(row, FIXED)], {FIXED: {"a"}})
    assert plan.changes == (Change(row, FIXED, drop=True),)


def test_two_customers_corrected_to_one_value_are_both_conflicts() -> None:
    first, second = PhoneRow(1, "a", STALE), PhoneRow(2, "b", "+14930123456")
    plan = plan_changes([Correction(first, FIXED), Correction(second, FIXED)], {})
    assert plan.changes == ()
    assert {c.row for c in plan.conflicts} == {first, second}


def test_two_stale_rows_of_one_customer_become_one() -> None:
    first, second = PhoneRow(1, "a", STALE), PhoneRow(2, "a", "+14930123456")
    plan = plan_changes([Correction(second, FIXED), Correction(first, FIXED)], {})
    assert plan.changes == (Change(first, FIXED, drop=False), Change(second, FIXED, drop=True))


def test_the_report_names_rows_values_and_owners() -> None:
    row, other = PhoneRow(7, "a", STALE), PhoneRow(8, "c", STALE)
    plan = plan_changes([Correction(row, FIXED)], {})
    conflict = plan_changes([Correction(other, FIXED)], {FIXED: {"b"}})
    lines = describe(Plan(plan.changes, conflict.conflicts), (), applied=False)
    assert lines[0] == f"would change: identity 7 of customer a: {STALE} -> {FIXED}"
    assert lines[1].startswith(f"conflict, left as is: identity 8 of customer c: {STALE} -> ")
    assert "belongs to customer(s) b" in lines[1]
    assert lines[-1].startswith("1 would change, 1 conflict(s), 0 ambiguous")
    assert lines[-1].endswith("run again with --apply to change them")

"""The webhook relay's cursor (pure): every committed event is handed over exactly once,
whatever order the transactions that took the ``seq`` values commit in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crm_bridge.webhooks.relay_cursor import RelayCursor


def relay_pass(cursor: RelayCursor, visible: set[int], now_ms: int) -> tuple[RelayCursor, set[int]]:
    """What one relay pass reads: the events above ``high`` and those in open gaps."""
    seen = {seq for seq in visible if seq > cursor.high or seq in cursor.gaps}
    return cursor.advance(seen, now_ms), seen


@given(
    st.permutations(list(range(1, 40))),
    st.lists(st.integers(1, 6), min_size=1, max_size=40),
    st.sets(st.integers(1, 39), max_size=8),
)
def test_out_of_order_commits_are_each_handed_over_once(
    commit_order: list[int], batch_sizes: list[int], burned: set[int]
) -> None:
    """Values commit in any order, in batches between passes; some are never committed
    (rolled back, skipped by ON CONFLICT). With no gap timing out, each committed value is
    handed over once and nothing else ever is."""
    committed = [seq for seq in commit_order if seq not in burned]
    cursor, visible, handed = RelayCursor(0), set[int](), list[int]()
    now, start = 0, 0
    for size in [*batch_sizes, len(committed)]:
        visible.update(committed[start : start + size])
        start += size
        now += 250
        cursor, seen = relay_pass(cursor, visible, now)
        handed.extend(seen)
        cursor, dropped = cursor.expire(now, timeout_ms=10**9, max_gaps=10_000)
        assert dropped == []
    assert sorted(handed) == sorted(committed)  # all of them, once each
    assert set(cursor.gaps) == {seq for seq in burned if seq < cursor.high}


@given(st.integers(2, 30), st.integers(1, 5))
def test_a_gap_that_never_fills_is_dropped_after_the_timeout(top: int, missing_count: int) -> None:
    missing = set(range(1, min(missing_count, top - 1) + 1))
    cursor = RelayCursor(0).advance(set(range(1, top + 1)) - missing, now_ms=1_000)
    assert set(cursor.gaps) == missing and cursor.high == top
    kept, dropped = cursor.expire(now_ms=1_000 + 59_999, timeout_ms=60_000, max_gaps=100)
    assert dropped == [] and kept is cursor
    gone, dropped = cursor.expire(now_ms=1_000 + 60_000, timeout_ms=60_000, max_gaps=100)
    assert sorted(dropped) == sorted(missing) and not gone.gaps and gone.high == top


def test_beyond_max_gaps_the_lowest_are_dropped_first() -> None:
    cursor = RelayCursor(0).advance({10}, now_ms=0)  # 1..9 missing
    kept, dropped = cursor.expire(now_ms=1, timeout_ms=60_000, max_gaps=3)
    assert dropped == [1, 2, 3, 4, 5, 6] and sorted(kept.gaps) == [7, 8, 9]
    assert cursor.expire(now_ms=1, timeout_ms=60_000, max_gaps=0)[1] == list(range(1, 10))


def test_a_late_commit_inside_a_gap_closes_it_and_keeps_high() -> None:
    cursor = RelayCursor(0).advance({1, 3, 5}, now_ms=100)
    assert cursor.high == 5 and dict(cursor.gaps) == {2: 100, 4: 100}
    later = cursor.advance({4}, now_ms=200)
    assert later.high == 5 and dict(later.gaps) == {2: 100}  # first-missed time kept


@given(st.integers(0, 10**12), st.dictionaries(st.integers(0, 10**12), st.integers(0, 10**13)))
def test_the_stored_form_round_trips(high: int, gaps: dict[int, int]) -> None:
    cursor = RelayCursor(high, gaps)
    again = RelayCursor.from_row(cursor.high, cursor.to_json())
    assert again.high == high and dict(again.gaps) == gaps

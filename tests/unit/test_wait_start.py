"""``IVR_WAIT_START``: written as whole unix seconds, read back only when it is plausible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ivr_engine.contact_center.router import MAX_WAIT_S, plausible_wait_start
from ivr_engine.flows.variables import parse_wait_start, wait_start_value

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_the_written_value_reads_back_to_the_second() -> None:
    assert wait_start_value(NOW) == "1773144000"
    assert parse_wait_start(wait_start_value(NOW)) == NOW
    assert parse_wait_start("1773144000.25") == NOW + timedelta(seconds=0.25)


@pytest.mark.parametrize(
    "text", [None, "", " ", "x", "nan", "inf", "-1", "0", "1e400", "9" * 30, "0x10", "1,5"]
)
def test_an_unreadable_value_is_none(text: str | None) -> None:
    assert parse_wait_start(text) is None


def test_only_a_past_wait_start_within_the_limit_counts() -> None:
    limit = NOW - timedelta(seconds=MAX_WAIT_S)
    assert plausible_wait_start(NOW - timedelta(seconds=30), NOW) == NOW - timedelta(seconds=30)
    assert plausible_wait_start(limit, NOW) == limit
    assert plausible_wait_start(limit - timedelta(seconds=1), NOW) == NOW  # garbage
    assert plausible_wait_start(NOW + timedelta(seconds=1), NOW) == NOW  # skew, rounding
    assert plausible_wait_start(None, NOW) == NOW

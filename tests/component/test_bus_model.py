"""Pure parts of the event bus: event checks, partitioning, settings, and the ownership plan
(including a property test that consumers following it always converge to a full, fair
assignment)."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_bridge.bus import BusSettings, partition_for
from crm_bridge.bus.model import check_name, decode_event, encode_event
from crm_bridge.bus.ownership import OwnershipPlan, fair_share, plan_ownership


def test_partition_is_crc32_of_the_key_so_every_process_agrees() -> None:
    assert partition_for("call-1", 8) == zlib.crc32(b"call-1") % 8 == 0  # 3661210240
    assert partition_for("1712345678.42", 8) == zlib.crc32(b"1712345678.42") % 8
    spread = {partition_for(f"call-{n}", 8) for n in range(100)}
    assert spread == set(range(8))


def test_encode_checks_the_two_keys_and_json() -> None:
    key, text = encode_event({"event_id": "e1", "partition_key": "c1", "å": [1, None]})
    assert key == "c1"
    assert decode_event(text) == {"event_id": "e1", "partition_key": "c1", "å": [1, None]}
    with pytest.raises(ValueError, match="'event_id'"):
        encode_event({"partition_key": "c1"})
    with pytest.raises(ValueError, match="'partition_key'"):
        encode_event({"event_id": "e1", "partition_key": 7})
    with pytest.raises(TypeError, match="mapping"):
        encode_event(["event_id", "e1"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_event({"event_id": "e1", "partition_key": "c1", "x": float("nan")})
    with pytest.raises(ValueError, match="JSON object"):
        decode_event("[1, 2]")


def test_deep_nesting_is_a_value_error_both_ways() -> None:
    # orjson refuses past 1,024 levels and json then recursed: RecursionError escaped
    with pytest.raises(ValueError, match="nested too deeply"):
        decode_event('{"a":' + "[" * 100_000 + "]" * 100_000 + "}")
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        encode_event({"event_id": "e1", "partition_key": "k", "data": deep})


@pytest.mark.parametrize("name", ["calls", "crm.events-v2", "a_b", "x" * 100])
def test_good_names(name: str) -> None:
    assert check_name("stream", name) == name


@pytest.mark.parametrize("name", ["", "a b", "calls:{x}", "x" * 101, "é"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="stream name"):
        check_name("stream", name)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="partitions"):
        BusSettings(partitions=0)
    with pytest.raises(ValueError, match="max_deliveries"):
        BusSettings(max_deliveries=0)
    settings = BusSettings(lease_ms=3000)
    settings.check_consume_args(batch=1, block_ms=1000)
    with pytest.raises(ValueError, match="lease_ms/3"):
        settings.check_consume_args(batch=1, block_ms=1001)
    with pytest.raises(ValueError, match="batch"):
        settings.check_consume_args(batch=0, block_ms=10)


@pytest.mark.parametrize(
    ("partitions", "live", "share"), [(8, 1, 8), (8, 2, 4), (8, 3, 3), (8, 9, 1), (8, 0, 8)]
)
def test_fair_share(partitions: int, live: int, share: int) -> None:
    assert fair_share(partitions, live) == share


def test_over_share_gives_back_idle_partitions_only() -> None:
    owned = {0: 0, 1: 5, 2: 0, 3: 0}
    assert plan_ownership("a", 4, 2, owned, ()) == OwnershipPlan(release=(3, 2))
    busy = {0: 1, 1: 5, 2: 0, 3: 2}
    assert plan_ownership("a", 4, 2, busy, ()) == OwnershipPlan(release=(2,))
    assert plan_ownership("a", 4, 4, {0: 1, 1: 1}, ()) == OwnershipPlan()  # later, once acked


def test_under_share_takes_free_partitions_from_a_name_based_offset() -> None:
    plan = plan_ownership("a", 8, 2, {0: 0}, (1, 2, 3, 4, 5))
    assert len(plan.acquire) == 3 and set(plan.acquire) <= {1, 2, 3, 4, 5}
    assert plan_ownership("a", 8, 2, {0: 0, 1: 0, 2: 0, 3: 0}, (4, 5)) == OwnershipPlan()
    assert plan_ownership("a", 8, 2, {0: 0}, ()) == OwnershipPlan()


@given(
    partitions=st.integers(1, 12),
    names=st.lists(st.text("abcdef", min_size=1, max_size=4), min_size=1, max_size=6, unique=True),
    order=st.randoms(use_true_random=False),
)
def test_consumers_following_the_plan_converge_to_a_full_fair_assignment(
    partitions: int, names: list[str], order: random.Random
) -> None:
    leases: dict[int, str] = {}
    for _ in range(3 * partitions + 6):  # rounds; each consumer loops once per round, any order
        for name in order.sample(names, len(names)):
            mine = {p: 0 for p, holder in leases.items() if holder == name}
            free = tuple(p for p in range(partitions) if p not in leases)
            plan = plan_ownership(name, partitions, len(names), mine, free)
            for p in plan.release:
                assert leases.pop(p) == name
            for p in plan.acquire:
                leases.setdefault(p, name)  # SET NX: the first taker wins
    assert sorted(leases) == list(range(partitions))
    share = fair_share(partitions, len(names))
    assert max(list(leases.values()).count(name) for name in names) <= share

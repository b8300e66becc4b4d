"""Which partitions a consumer should own: pure, shared by both implementations.

Each live consumer of a group aims for ``ceil(partitions / live consumers)`` partitions. A
consumer over its share gives back partitions with nothing pending (so nothing it still
holds is redelivered to someone else); one under its share takes free partitions, starting
at an offset derived from its name so that consumers joining together try different ones
(the lease itself is taken atomically, so a collision only costs a loop).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["OwnershipPlan", "fair_share", "plan_ownership"]


@dataclass(frozen=True, slots=True)
class OwnershipPlan:
    release: tuple[int, ...] = ()
    acquire: tuple[int, ...] = ()


def fair_share(partitions: int, live_consumers: int) -> int:
    return -(-partitions // max(live_consumers, 1))


def plan_ownership(
    consumer: str,
    partitions: int,
    live_consumers: int,
    pending: Mapping[int, int],
    free: Sequence[int],
) -> OwnershipPlan:
    """``pending``: owned partition → entries pending in it; ``free``: unowned partitions."""
    share = fair_share(partitions, live_consumers)
    if len(pending) > share:
        idle = sorted((p for p, count in pending.items() if count == 0), reverse=True)
        return OwnershipPlan(release=tuple(idle[: len(pending) - share]))
    if len(pending) < share and free:
        ordered = sorted(free)
        start = zlib.crc32(consumer.encode()) % len(ordered)
        rotated = ordered[start:] + ordered[:start]
        return OwnershipPlan(acquire=tuple(rotated[: share - len(pending)]))
    return OwnershipPlan()

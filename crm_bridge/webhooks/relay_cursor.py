"""How far the webhook relay got along ``timeline_events.seq``, gaps included (pure).

Why not a plain ``seq > cursor`` scan: on PostgreSQL a transaction takes its ``seq`` value
when it inserts, not when it commits. Transaction A takes seq 10, B takes seq 11, B commits
first: a reader sees 11 but not yet 10. A scan that moved its cursor to 11 would never look
at 10 again, and A's event would never be delivered. Sequence values are also burned for
good (a rolled-back insert, an ``ON CONFLICT DO NOTHING`` that skipped a row), so a missing
value may never appear at all.

So the cursor is ``high`` (the highest ``seq`` handed over) plus the open ``gaps``: the
values below ``high`` not seen yet, each with the time it was first missed. Every pass
reads the events above ``high`` *and* re-reads the gaps; a gap that turns up is handed over
and closed. A gap still missing after ``gap_timeout_s`` is taken as burned and dropped: the
timeout must be longer than any write transaction of the timeline (they last milliseconds;
the default is 60 s). At most ``max_gaps`` stay open (the oldest are dropped first, logged).
SQLite serialises writers (``BEGIN IMMEDIATE``), so values commit in order there and gaps
are only burned values: the same logic is correct, merely idle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["RelayCursor"]


@dataclass(frozen=True, slots=True)
class RelayCursor:
    high: int
    gaps: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    # gaps: seq -> unix milliseconds when it was first found missing

    def advance(self, seen: Iterable[int], now_ms: int) -> RelayCursor:
        """After handing over the events ``seen`` (above ``high`` or in a gap)."""
        got = set(seen)
        gaps = {seq: since for seq, since in self.gaps.items() if seq not in got}
        top = max(got, default=self.high)
        if top > self.high:
            gaps.update((seq, now_ms) for seq in range(self.high + 1, top) if seq not in got)
        return RelayCursor(max(top, self.high), MappingProxyType(gaps))

    def expire(self, now_ms: int, timeout_ms: int, max_gaps: int) -> tuple[RelayCursor, list[int]]:
        """Drop gaps open longer than ``timeout_ms`` and, beyond ``max_gaps``, the lowest;
        returns the new cursor and the dropped ``seq`` values."""
        ordered = sorted(self.gaps.items())
        keep = [(seq, since) for seq, since in ordered if now_ms - since < timeout_ms]
        keep = keep[-max_gaps:] if max_gaps > 0 else []
        if len(keep) == len(ordered):
            return self, []
        kept = dict(keep)
        dropped = [seq for seq, _ in ordered if seq not in kept]
        return RelayCursor(self.high, MappingProxyType(kept)), dropped

    def to_json(self) -> list[list[int]]:
        return [[seq, since] for seq, since in sorted(self.gaps.items())]

    @classmethod
    def from_row(cls, high: int, gaps: Iterable[Iterable[int]]) -> RelayCursor:
        pairs = (tuple(pair) for pair in gaps)
        return cls(int(high), MappingProxyType({int(s): int(t) for s, t in pairs}))

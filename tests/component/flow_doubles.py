"""What an IvrFlow needs around it when a test drives it alone: a lookup that knows nobody
and a sink that keeps the call records it is given."""

from __future__ import annotations

from ivr_engine.flows.call_record import CallRecord
from ivr_engine.ports import LookupResult


class NobodyKnown:
    async def lookup(self, kind: str, value: str, *, max_events: int) -> LookupResult:
        return LookupResult(history=None)


class Records:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def submit(self, record: CallRecord) -> None:
        self.records.append(record)

"""The call-event bridge (issue #4): Asterisk AMI events → the customer timeline.

    AMI ─► AmiReader ─► normalise() ─► SqliteOutbox ─► OutboxPublisher ─► bus (Redis Streams)
                                                                          │
                       timeline ◄─ FastCallWriter ◄─ CustomerResolver ◄─ TimelineConsumer

* ``normalise(event, state, at=...)``: pure; AMI events → ``NormalisedEvent`` per call
  (``call.started``, ``call.ivr_fallback``, ``call.ivr_routed``, ``call.overflowed``,
  ``call.transferred``, ``call.answered_by_agent``, ``call.held``, ``call.resumed``,
  ``call.ended``) with event ids from (source, call id, kind, ordinal), ordered per call.
* ``SqliteOutbox``: events and the normaliser state committed together (WAL, fsync policy
  ``full``/``normal``) before anything goes to the bus.
* ``OutboxPublisher``: micro-batches to the bus, deletes what was published.
* ``TimelineConsumer``: consumer group; resolves the customer by phone, writes a batch in
  one transaction, acks after the commit; retries while the database is down.
* ``Bridge`` / ``run_bridge(settings)``: the composition root; ``python -m crm_bridge.calls``.

See README.md in this package for the guarantees, the fault cases and what can be recovered.
"""

from __future__ import annotations

from crm_bridge.calls.consumer import CustomerResolver, TimelineConsumer
from crm_bridge.calls.model import CallEventKind, InvalidBusEvent, NormalisedEvent, event_key
from crm_bridge.calls.normalise import normalise
from crm_bridge.calls.outbox import OutboxBusy, OutboxError, SqliteOutbox
from crm_bridge.calls.publisher import OutboxPublisher
from crm_bridge.calls.reader import AmiReader
from crm_bridge.calls.resync import begin_resync, reconcile
from crm_bridge.calls.service import Bridge, run_bridge
from crm_bridge.calls.settings import BridgeSettings
from crm_bridge.calls.state import BridgeState, CallState, NormaliserConfig

__all__ = [
    "AmiReader",
    "Bridge",
    "BridgeSettings",
    "BridgeState",
    "CallEventKind",
    "CallState",
    "CustomerResolver",
    "InvalidBusEvent",
    "NormalisedEvent",
    "NormaliserConfig",
    "OutboxBusy",
    "OutboxError",
    "OutboxPublisher",
    "SqliteOutbox",
    "TimelineConsumer",
    "begin_resync",
    "event_key",
    "normalise",
    "reconcile",
    "run_bridge",
]

"""The event bus between engine and bridge processes: one port, in-process and Redis.

``open_event_bus(None)`` gives the embedded in-process bus; a ``redis://`` URL gives Redis
Streams (``redis_bus.py`` for the layout). Both implement ``EventBus`` (``port.py``) with
the same semantics, driven by one consume loop (``consumer.py``).

Events
    JSON objects with ``event_id`` (idempotency key) and ``partition_key`` (ordering key,
    e.g. the call id). ``publish(stream, events)`` appends a batch, pipelined.

Delivery: at least once
    A consumer group gets every event of a stream (from the oldest kept entry, so events
    published before the group first consumed are not missed). ``consume`` yields batches
    of ``Delivery(id, event, attempt)``; ``ack(ids)`` marks them done. An entry delivered
    but not acknowledged (the consumer crashed, was killed, or failed the event) stays
    pending and is delivered again, to whoever owns its partition, once it has been idle
    for ``min_idle_ms`` (``XAUTOCLAIM``); each delivery is counted, and an entry delivered
    ``max_deliveries`` times without an ack goes to the stream's dead-letter log
    (``dead_letters``) instead. So an event can be processed more than once: exactly-once
    *effect* is the consumer's job, by applying each ``event_id`` once (a unique key in the
    timeline, ``SET NX`` with a TTL, ...). Nothing is lost while the stream holds it:
    entries are trimmed at about ``maxlen`` per partition whether read or not.
    An entry that is not an event (written by something else: no ``e`` field, not UTF-8
    in a field name or value, not a JSON object) is never delivered and never fails a
    read: the consumer that reads (or claims) it dead-letters it at once (a warning with
    a count; dead stream and ack in one step), before it hands over the events read with
    it, so the partition's later events are not held behind it. A consumer that stops
    before that leaves it pending, and the next owner's claim dead-letters it the same way
    (after ``min_idle_ms``, with the events read with it).

Ordering: per partition key, through partition ownership
    One stream read by several consumers in one group interleaves a call's events across
    consumers, so each stream is split into ``partitions`` logs by
    ``crc32(partition_key) % partitions`` and within a group each partition is owned by one
    consumer at a time (a lease renewed on every loop of ``consume``; live consumers share
    the partitions evenly and hand them over as they come and go). The owner never reads
    new entries of a partition while that partition has pending entries: it redelivers
    them first (oldest first), or dead-letters them. What follows, per partition key:

    * with no failure, a group processes the events in publish order (the order in which
      the publishes reached the bus: publish a call's events from one task, or carry a
      per-call sequence number, if several processes publish for one call);
    * after a crash or a missing ack the unacknowledged events are processed again, after
      ``min_idle_ms``, before any later event of their partition. Within one batch, an
      event the consumer did not ack comes again after the later ones it did ack: process
      a batch in order and, on a failure, ack only the prefix before it;
    * a dead-lettered event is skipped (ordering resumes with the next one);
    * the guarantee assumes a consumer loops (finishes a batch and asks for the next)
      within ``lease_ms``. A consumer stalled longer loses its partitions, and its late
      work can overlap the new owner's: there is no fencing token, so consumers must be
      idempotent by ``event_id`` and, where order matters, should compare a per-call
      sequence number or timestamp rather than trust arrival order alone.

    At most ``partitions`` consumers of a group do work at once; changing the count of an
    existing stream is refused (``PartitionCountMismatch``).

Errors
    ``BusUnavailable`` (Redis down or slow) within ``timeout_s``; ``BusClosed`` after
    ``aclose``; ``ValueError``/``TypeError`` for bad events, names or settings.
"""

from __future__ import annotations

from crm_bridge.bus.errors import BusClosed, BusError, BusUnavailable, PartitionCountMismatch
from crm_bridge.bus.memory import InMemoryEventBus
from crm_bridge.bus.model import (
    BusSettings,
    DeadLetter,
    Delivery,
    DeliveryId,
    EncodedEvent,
    Event,
    partition_for,
)
from crm_bridge.bus.port import EventBus
from crm_bridge.bus.redis_bus import DEFAULT_PREFIX, RedisEventBus
from ivr_engine.domain.errors import ConfigError
from ivr_engine.timeline.urls import redact

__all__ = [
    "DEFAULT_PREFIX",
    "BusClosed",
    "BusError",
    "BusSettings",
    "BusUnavailable",
    "DeadLetter",
    "Delivery",
    "DeliveryId",
    "EncodedEvent",
    "Event",
    "EventBus",
    "InMemoryEventBus",
    "PartitionCountMismatch",
    "RedisEventBus",
    "open_event_bus",
    "partition_for",
]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_event_bus(
    url: str | None = None, settings: BusSettings | None = None, *, prefix: str = DEFAULT_PREFIX
) -> EventBus:
    """``None`` or ``memory://`` → in-process; ``redis://HOST:PORT/DB`` → Redis Streams."""
    if url is None or url == "memory://":
        return InMemoryEventBus(settings)
    if url.startswith(_REDIS_SCHEMES):
        return RedisEventBus.from_url(url, settings, prefix=prefix)
    raise ConfigError(
        f"event bus url {redact(url)!r}: use memory:// (in-process) or redis://HOST:PORT/DB"
    )

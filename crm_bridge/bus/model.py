"""The bus vocabulary: events, deliveries, dead letters, settings, and pure helpers.

An event is a JSON object with two required string keys: ``event_id`` (the idempotency
key: consumers dedupe on it) and ``partition_key`` (the ordering key, e.g. the call id). It
travels as one JSON text, so what a consumer gets is a fresh ``dict``, never the
publisher's object, with both implementations.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "BusSettings",
    "DeadLetter",
    "Delivery",
    "DeliveryId",
    "EncodedEvent",
    "Event",
    "check_name",
    "decode_event",
    "encode_event",
    "partition_for",
]

Event = Mapping[str, Any]
#: ``(partition_key, json_text)`` of an event already checked and serialised by the caller
EncodedEvent = tuple[str, str]
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


@dataclass(frozen=True, slots=True, order=True)
class DeliveryId:
    """Where a delivered entry lives: enough to acknowledge it from any bus object."""

    stream: str
    group: str
    partition: int
    entry: str  # position in the partition log (a Redis stream entry id, or a counter)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event handed to a consumer. ``attempt`` is 1 on first delivery, 2+ on redelivery."""

    id: DeliveryId
    event: dict[str, Any]
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event that was delivered ``deliveries`` times without an ack, then set aside.

    An entry that was never an event (not a JSON object, or not UTF-8: written to the stream
    by something else, or corrupted) is put here by the first consumer that reads it, as
    ``{"undecodable": text}`` (bytes that are not UTF-8 escaped, ``\\xff``).
    """

    id: str  # position in the dead-letter log
    event: dict[str, Any]
    group: str
    partition: int
    entry: str
    deliveries: int


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Settings every process sharing a stream must agree on (see the package docstring).

    ``partitions``: partition logs per stream, fixed for the stream's life (at most that
    many consumers of one group do work at once). ``maxlen``: entries kept per partition
    (Redis trims with ``MAXLEN ~``, so a little more); older entries are dropped even if a
    group has not read them, so size it for the longest consumer outage. ``lease_ms``: how
    long a consumer owns a partition without renewing it (renewed on every loop of
    ``consume``: keep batch processing well under it). ``min_idle_ms``: how long a delivered,
    unacknowledged entry waits before it is redelivered. ``max_deliveries``: deliveries
    before an entry goes to the dead-letter log.
    """

    partitions: int = 8
    maxlen: int = 100_000
    dead_maxlen: int = 10_000
    lease_ms: int = 10_000
    min_idle_ms: int = 15_000
    max_deliveries: int = 5

    def __post_init__(self) -> None:
        for name in ("partitions", "maxlen", "dead_maxlen", "lease_ms", "min_idle_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"BusSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_deliveries < 1:
            raise ValueError(f"BusSettings.max_deliveries must be >= 1, got {self.max_deliveries}")

    def check_consume_args(self, batch: int, block_ms: int) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if not 1 <= block_ms * 3 <= self.lease_ms:
            raise ValueError(
                f"block_ms must be >= 1 and at most lease_ms/3 ({self.lease_ms // 3}), got "
                f"{block_ms}: a consumer renews its partitions once per loop"
            )


def check_name(kind: str, name: str) -> str:
    """Stream, group and consumer names: 1-100 of ``A-Z a-z 0-9 _ . -`` (they go in keys)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r}: use 1-100 characters from A-Z a-z 0-9 _ . -")
    return name


def partition_for(partition_key: str, partitions: int) -> int:
    """CRC-32 of the UTF-8 key, modulo the partition count: the same in every process."""
    return zlib.crc32(partition_key.encode()) % partitions


def encode_event(event: Event) -> tuple[str, str]:
    """Check an event and serialise it: ``(partition_key, json_text)``.

    ``ValueError`` names the missing or empty key, or says the text cannot be UTF-8 (a lone
    surrogate: Redis could not carry it); ``TypeError`` means a value is not JSON.
    """
    if not isinstance(event, Mapping):
        raise TypeError(f"an event is a JSON object (a mapping), got {type(event).__name__}")
    for key in ("event_id", "partition_key"):
        value = event.get(key)
        if not isinstance(value, str) or not value:
            raise ValueError(f"event needs a non-empty string {key!r}, got {value!r}")
    try:
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise ValueError("event nested too deeply for the bus") from None
    if not text.isascii():  # cheap: the check below only runs on non-ASCII text
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(f"event text is not valid UTF-8 (a lone surrogate?): {exc}") from None
    return str(event["partition_key"]), text


def decode_event(text: str | bytes) -> dict[str, Any]:
    """The event a bus entry holds (text, or the UTF-8 bytes of the Redis bus's reads).
    orjson reads it (3-4x less CPU than ``json.loads``); what orjson refuses but ``json``
    reads (``NaN``, lone surrogates) is read by ``json``, so both accept exactly the same
    entries; bytes that are not UTF-8 are a ``ValueError`` (``UnicodeDecodeError``). orjson
    reads an integer outside the 64-bit range (below -2**63 or above 2**64 - 1) as a float,
    without an error: such a value arrives rounded, with either bus (put very long numbers
    in events as strings)."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            doc = json.loads(text if isinstance(text, str) else text.decode())
        except RecursionError:  # orjson stops at 1,024 levels, json's recursion a little later
            raise ValueError(f"bus entry nested too deeply: {text[:80]!r}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"bus entry is not a JSON object: {text[:80]!r}")
    return doc

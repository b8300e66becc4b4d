"""Stream entries as the Redis bus reads them: bytes, decoded here one entry at a time.

redis-py decodes a whole reply at once: with ``decode_responses`` one entry that is not
UTF-8 (written into a partition by something else) failed every read that returned it,
and the claims then dead-lettered the good entries read with it. So the commands that
return entries (``XREADGROUP``, the ``claim`` script, ``XRANGE`` of the dead letters) are
read as bytes (redis-py's ``NEVER_DECODE``) and decided here, entry by entry: an entry's
event is the JSON object in its ``e`` field; an entry without one, or whose ``e`` is not
UTF-8 or not a JSON object, is not an event and is reported (the bus dead-letters it at
once), never raised. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crm_bridge.bus.model import DeadLetter, Delivery, DeliveryId, decode_event

__all__ = ["NotEvent", "RawEntry", "RawFields", "dead_letter", "split_events", "stream_replies"]

RawFields = Mapping[bytes, bytes]
#: an entry as read: where it is, its ``e`` field (None: it has none), its delivery count
RawEntry = tuple[DeliveryId, bytes | None, int]
#: an entry that is not an event: where it is, and why not
NotEvent = tuple[DeliveryId, str]


def stream_replies(reply: Any) -> list[tuple[bytes, list[tuple[bytes, RawFields | None]]]]:
    """``XREADGROUP`` replies: ``[[key, entries]]`` (RESP2) or ``{key: entries}`` (RESP3,
    where redis-py may wrap the entries in one more list)."""
    if not reply:
        return []
    pairs = list(reply.items()) if isinstance(reply, dict) else reply
    out: list[tuple[bytes, list[tuple[bytes, RawFields | None]]]] = []
    for key, entries in pairs:
        rows = entries[0] if entries and isinstance(entries[0], list) else entries
        out.append((key, [(entry, fields) for entry, fields in rows]))
    return out


def split_events(found: Iterable[RawEntry]) -> tuple[list[Delivery], list[NotEvent]]:
    """The deliveries among ``found``, and each entry that is not an event, with why."""
    deliveries: list[Delivery] = []
    skipped: list[NotEvent] = []
    for where, text, attempt in found:
        if text is None:
            skipped.append((where, "no 'e' field"))
            continue
        try:
            deliveries.append(Delivery(where, decode_event(text), attempt))
        except ValueError as exc:  # not UTF-8 (UnicodeDecodeError), not JSON, not an object
            skipped.append((where, str(exc)))
    return deliveries, skipped


def dead_letter(dead_id: bytes, fields: RawFields) -> DeadLetter:
    """A dead-letter entry (written by the ``claim`` and ``dead_letter`` scripts: ``e``, or
    ``x`` for an entry that had no ``e`` field); one that never was an event is shown as
    ``{"undecodable": text}``, bytes that are not UTF-8 escaped (``\\xff``)."""
    text = fields.get(b"e")
    try:
        event = decode_event(b"" if text is None else text)
    except ValueError:
        kept = fields.get(b"x", b"") if text is None else text
        event = {"undecodable": kept.decode("utf-8", "backslashreplace")}
    group, entry = fields[b"g"].decode(), fields[b"id"].decode()
    return DeadLetter(dead_id.decode(), event, group, int(fields[b"p"]), entry, int(fields[b"n"]))

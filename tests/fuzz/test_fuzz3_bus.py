"""Third-round property tests: the call-event bus codec against the real Redis, and
continuation tokens.

* Any event ``encode_event`` accepts is published by the Redis bus and consumed as
  ``decode_event`` of its text (``encode_event`` refuses what Redis cannot carry: a lone
  surrogate was accepted, then ``publish`` raised ``UnicodeEncodeError``).
* An entry in a partition that is not an event (not JSON, not an object, no ``e`` field)
  never stops ``consume``: the events around it are delivered, and it ends in the dead
  letters (``JSONDecodeError``/``KeyError`` used to escape ``consume``, which ended the
  call bridge's consumer task). So is one that is not UTF-8 (in a field name or value):
  redis-py decoded whole replies, so it used to fail every read that returned it.
* ``decode_event`` of any text raises ``ValueError`` only; ``decode_token`` of any text
  raises ``ContinuationError`` only, and a payload signed with the right key is a valid
  ``Continuation`` or ``MalformedToken``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from crm_bridge.bus import BusSettings, Delivery, RedisEventBus
from crm_bridge.bus.model import decode_event, encode_event
from crm_bridge.continuation_claims import check_claims
from crm_bridge.continuation_errors import ContinuationError, MalformedToken
from crm_bridge.continuation_wire import Keyring, SigningKey, decode_token, encode_token
from tests.redis_support import REDIS_URL, delete_prefix

_FEW = settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])

_odd_text = st.sampled_from(
    ["", " ", "\x00", "\ud800", "\udfff", "a\ud83dz", "😀", "İ", "²", "\u2028", "\ufeff",
     "NaN", "1e999", '"', "\\", "{", "[1]", "x" * 2000]
)  # fmt: skip
_atom = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True), _odd_text, st.text(max_size=12),
)  # fmt: skip
_json = st.recursive(
    _atom,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=6), _odd_text), inner, max_size=3)
    ),
    max_leaves=10,
)
_event = st.builds(
    lambda extra, event_id, key: {**extra, "event_id": event_id, "partition_key": key},
    st.dictionaries(st.text(max_size=6), _json, max_size=4),
    st.one_of(st.text(min_size=1, max_size=8), _odd_text),
    st.one_of(st.text(min_size=1, max_size=8), _odd_text),
)


async def _consume(bus: RedisEventBus, want: int, timeout_s: float = 8.0) -> list[dict[str, Any]]:
    """Consume (and ack) until ``want`` events arrived."""
    got: list[dict[str, Any]] = []
    batches = bus.consume("s", "g", "c1", batch=50, block_ms=20)
    async with asyncio.timeout(timeout_s), contextlib.aclosing(batches):
        async for deliveries in batches:
            got += [delivery.event for delivery in deliveries]
            await bus.ack(delivery.id for delivery in deliveries)
            if len(got) >= want:
                break
    return got


@pytest.mark.usefixtures("redis_url")
@_FEW
@example(events=[{"event_id": "e1", "partition_key": "k", "x": "\ud800"}])
@given(st.lists(_event, min_size=1, max_size=5))
def test_every_encodable_event_goes_through_the_redis_bus(events: list[dict[str, Any]]) -> None:
    texts = []
    for event in events:
        try:
            texts.append(encode_event(event)[1])
        except (ValueError, TypeError):
            continue
    wanted = [decode_event(text) for text in texts]  # see test_integers_beyond_64_bits

    async def main() -> None:
        prefix = f"fuzz3:{uuid.uuid4().hex}:"
        bus = RedisEventBus.from_url(REDIS_URL, BusSettings(partitions=2), prefix=prefix)
        try:
            await bus.publish("s", [json.loads(text) for text in texts])
            got = await _consume(bus, len(wanted)) if wanted else []
        finally:
            await bus.aclose()
            await delete_prefix(prefix)
        key = lambda doc: json.dumps(doc, sort_keys=True)  # noqa: E731 - partitions reorder
        assert sorted(map(key, got)) == sorted(map(key, wanted))

    asyncio.run(main())


def test_integers_beyond_64_bits_arrive_as_floats() -> None:
    """Found by the round trip above: decode_event's docstring said ``json`` read them
    (it does for what orjson refuses); orjson reads them as floats, silently. Pinned and
    documented: a regex to catch them would cost 4x the orjson read on the hot path."""
    _, text = encode_event({"event_id": "e", "partition_key": "k", "n": -(2**63) - 1})
    assert decode_event(text)["n"] == float(-(2**63) - 1)
    _, text = encode_event({"event_id": "e", "partition_key": "k", "n": 2**64 - 1})
    assert decode_event(text)["n"] == 2**64 - 1


_bad_entry = st.one_of(
    st.fixed_dictionaries({"e": st.one_of(st.text(max_size=20), _odd_text)}),
    st.fixed_dictionaries({"e": _json.map(json.dumps)}),
    st.dictionaries(st.sampled_from(["x", "g", "E"]), st.text(max_size=5), min_size=1),
)


@pytest.mark.usefixtures("redis_url")
@settings(max_examples=12, suppress_health_check=[HealthCheck.too_slow])
@example(bad={"e": "not json"})
@example(bad={"x": "1"})
@example(bad={"e": "[1]"})
@example(bad={"x": '{"event_id": "x", "partition_key": "k"}'})  # was delivered when claimed
@given(_bad_entry)
def test_an_entry_that_is_not_an_event_is_dead_lettered_not_fatal(bad: dict[str, str]) -> None:
    assume(
        all(
            value.isascii() or value == value.encode("utf-8", "replace").decode()
            for value in bad.values()
        )
    )  # what Redis can be given as text
    try:
        if isinstance(decode_event(bad.get("e", "")), dict) and "e" in bad:
            return  # a JSON object is an event as far as the bus goes
    except ValueError:
        pass

    async def main() -> None:
        prefix = f"fuzz3:{uuid.uuid4().hex}:"
        fast = BusSettings(partitions=1, lease_ms=1000, min_idle_ms=10, max_deliveries=2)
        bus = RedisEventBus.from_url(REDIS_URL, fast, prefix=prefix)
        raw = Redis.from_url(REDIS_URL)
        try:
            await bus.publish("s", [{"event_id": "e1", "partition_key": "k"}])
            await raw.xadd(f"{prefix}{{s}}:p0", bad)  # type: ignore[arg-type]
            await bus.publish("s", [{"event_id": "e2", "partition_key": "k"}])
            got = await _consume(bus, 2)
            assert [event["event_id"] for event in got] == ["e1", "e2"]
            dead = await bus.dead_letters("s")  # set aside when read, not after the claims
            assert len(dead) == 1 and set(dead[0].event) == {"undecodable"}, dead
            assert dead[0].deliveries == 1
        finally:
            await raw.aclose()
            await bus.aclose()
            await delete_prefix(prefix)

    asyncio.run(main())


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _an_event(fields: dict[bytes, bytes]) -> bool:
    """What the bus takes for an event: an ``e`` field holding a JSON object."""
    try:
        return b"e" in fields and isinstance(decode_event(fields[b"e"]), dict)
    except ValueError:
        return False


_not_utf8_entry = st.dictionaries(
    st.one_of(st.sampled_from([b"e", b"x"]), st.binary(min_size=1, max_size=4)),
    st.one_of(st.binary(max_size=24), _json.map(lambda doc: json.dumps(doc).encode())),
    min_size=1,
    max_size=3,
).filter(lambda fields: not all(map(_is_utf8, [*fields, *fields.values()])))


@pytest.mark.usefixtures("redis_url")
@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@example(foreign={b"e": b"\xff\xfe"})
@example(foreign={b"e": b'{"event_id":"\xc3","partition_key":"k"}'})  # cut in the JSON
@example(foreign={b"\xff": b'{"event_id":"x","partition_key":"k"}'})  # an event, named wrong
@example(foreign={b"e\xc3": b"\xc3(", b"x": b"1"})
@given(_not_utf8_entry)
def test_an_entry_that_is_not_utf8_is_skipped_and_dead_lettered(
    foreign: dict[bytes, bytes],
) -> None:
    """An entry something else wrote that is not UTF-8 (a field name or value) is junk like
    any other: every event before and after it is delivered once, in order, no read fails
    (redis-py decoded whole replies: one such entry made every read that returned it
    ``BusUnavailable``, and the claims then dead-lettered the good entries with it), and it
    ends in the dead letters when first read, readable (its bytes escaped). An entry whose
    ``e`` field is a JSON object is an event whatever its other fields hold: not this
    test's business."""
    assume(not _an_event(foreign))
    _run_with_foreign_entry(foreign, ack=True)


@pytest.mark.usefixtures("redis_url")
def test_a_foreign_entry_claimed_with_unacked_events_loses_none_of_them() -> None:
    """A batch read with a non-UTF-8 entry in it is not acknowledged (a consumer that
    failed it): the entry was set aside when read, the claims redeliver the events."""
    _run_with_foreign_entry({b"e": b"\xff\xfe"}, ack=False)


def _run_with_foreign_entry(foreign: dict[bytes, bytes], *, ack: bool) -> None:
    async def main() -> None:
        prefix = f"fuzz3:{uuid.uuid4().hex}:"
        fast = BusSettings(partitions=1, lease_ms=1000, min_idle_ms=10, max_deliveries=2)
        bus = RedisEventBus.from_url(REDIS_URL, fast, prefix=prefix)
        raw = Redis.from_url(REDIS_URL)
        try:
            await bus.publish("s", [{"event_id": "e1", "partition_key": "k"}])
            entry = await raw.xadd(f"{prefix}{{s}}:p0", foreign)  # type: ignore[arg-type]
            await bus.publish("s", [{"event_id": f"e{n}", "partition_key": "k"} for n in (2, 3)])
            got = await _deliveries_until_dead_lettered(bus, ack_first=ack)
            once = [("e1", 1), ("e2", 1), ("e3", 1)]
            again = [] if ack else [("e1", 2), ("e2", 2), ("e3", 2)]
            assert [(d.event["event_id"], d.attempt) for d in got] == once + again
            assert (await raw.xpending(f"{prefix}{{s}}:p0", "g"))["pending"] == 0
            (dead,) = await bus.dead_letters("s")
            # dead-lettered at its first read, acknowledged or not: it used to be claimed
            # until max_deliveries (2 here), so the partition's later events waited for it
            assert dead.entry == entry.decode() and dead.deliveries == 1
            shown = foreign.get(b"e", next(iter(foreign.values())))  # else its first value
            assert dead.event == {"undecodable": shown.decode("utf-8", "backslashreplace")}
        finally:
            await raw.aclose()
            await bus.aclose()
            await delete_prefix(prefix)

    asyncio.run(main())


@pytest.mark.usefixtures("redis_url")
def test_an_entry_with_two_e_fields_is_read_and_claimed_alike() -> None:
    """Redis lets an entry name a field twice. The reader keeps the last ``e`` (redis-py's
    field dict); the claim script used to take the first, so ``{e: <event x>, e: junk}`` was
    skipped when read and then delivered as x when claimed, after the events that followed
    it (review finding). Now both take the last: never an event, dead-lettered."""

    async def main() -> None:
        prefix = f"fuzz3:{uuid.uuid4().hex}:"
        fast = BusSettings(partitions=1, lease_ms=1000, min_idle_ms=10, max_deliveries=2)
        bus = RedisEventBus.from_url(REDIS_URL, fast, prefix=prefix)
        raw = Redis.from_url(REDIS_URL)
        try:
            await bus.publish("s", [{"event_id": "e1", "partition_key": "k"}])
            good = b'{"event_id":"x","partition_key":"k"}'
            await raw.execute_command("XADD", f"{prefix}{{s}}:p0", "*", "e", good, "e", b"junk")
            await bus.publish("s", [{"event_id": "e2", "partition_key": "k"}])
            got = await _deliveries_until_dead_lettered(bus, ack_first=True)
            assert [(d.event["event_id"], d.attempt) for d in got] == [("e1", 1), ("e2", 1)]
            (dead,) = await bus.dead_letters("s")
            assert dead.event == {"undecodable": "junk"}
        finally:
            await raw.aclose()
            await bus.aclose()
            await delete_prefix(prefix)

    asyncio.run(main())


async def _deliveries_until_dead_lettered(bus: RedisEventBus, *, ack_first: bool) -> list[Delivery]:
    """What one consumer is handed until the stream has a dead letter and (unless
    ``ack_first``: it acknowledges every batch but the first) the first batch came again.
    A failed read fails the test."""
    got: list[Delivery] = []

    async def consume() -> None:
        batches = bus.consume("s", "g", "c1", batch=50, block_ms=20)
        async with contextlib.aclosing(batches):
            async for deliveries in batches:
                if ack_first or got:
                    await bus.ack(delivery.id for delivery in deliveries)
                got.extend(deliveries)

    task = asyncio.create_task(consume())
    try:
        for _ in range(400):  # set aside at the first read; redelivered: well under 8 s
            if task.done() or (await bus.dead_letters("s") and (ack_first or _again(got))):
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # a BusUnavailable from consume() is raised here
    return got


def _again(got: list[Delivery]) -> bool:
    return any(delivery.attempt > 1 for delivery in got)


@given(st.one_of(st.text(), _json.map(json.dumps), st.binary().map(lambda b: b.decode("latin-1"))))
@example('{"a":' + "[" * 3000 + "]" * 3000 + "}")
@example("1" * 5000)
def test_decode_event_raises_value_error_only(text: str) -> None:
    try:
        doc = decode_event(text)
    except ValueError:
        return
    assert isinstance(doc, dict)


# --------------------------------------------------------------------------- tokens

KEY = SigningKey("k1", b"s" * 32)
RING = Keyring(KEY, [SigningKey("old", b"o" * 32)])


@given(
    st.one_of(
        st.text(max_size=300),
        st.from_regex(
            r"c1\.(k1|old|x)\.[A-Za-z0-9_=-]{0,40}"
            r"\.[A-Za-z0-9_=-]{0,50}",
            fullmatch=True,
        ),
    )
)
@example("c1.k1..")
@example("c1.k1.e30.A")
def test_any_text_is_refused_as_a_continuation_error(token: str) -> None:
    with pytest.raises(ContinuationError):
        decode_token(token, RING, 0.0)


_claims_doc = st.fixed_dictionaries(
    {"jti": _json, "iat": _json, "exp": _json, "case": _json, "cust": _json, "ch": _json,
     "int": _json, "f": _json, "s": _json}
)  # fmt: skip
_plausible = st.fixed_dictionaries(
    {"jti": st.text(max_size=8), "iat": st.integers(), "exp": st.integers(10, 2**40),
     "case": st.sampled_from(["c1", "", "a b", "x" * 65]), "cust": st.just("u1"),
     "ch": st.sampled_from(["sms", "voice", "fax", ""]),
     "int": st.sampled_from([None, "billing", "Billing", 1]),
     "f": st.dictionaries(st.sampled_from(["zip", "Zip", "a" * 41, ""]),
                          st.one_of(st.text(max_size=70), st.integers()), max_size=3),
     "s": st.lists(st.one_of(st.sampled_from(["dob", "1x"]), st.lists(st.none())), max_size=3)}
)  # fmt: skip


@given(st.one_of(_claims_doc, _plausible, _json))
def test_a_signed_payload_is_a_valid_continuation_or_malformed(doc: Any) -> None:
    from crm_bridge.continuation_wire import _b64encode, _mac

    try:
        payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        payload = json.dumps(doc).encode("ascii")
    signed = f"c1.{KEY.key_id}.{_b64encode(payload)}"
    token = f"{signed}.{_b64encode(_mac(KEY, signed))}"
    try:
        claims = decode_token(token, RING, 0.0)
    except MalformedToken:
        return
    except ContinuationError as exc:  # too long, or expired: never another kind
        assert type(exc).__name__ in {"ExpiredToken"} or len(token) > 2048, exc
        return
    check_claims(claims)
    assert decode_token(encode_token(claims, KEY), RING, 0.0) == claims

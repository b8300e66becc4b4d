"""A message on the desktop relay channel that is not a note is skipped (one that is not
UTF-8 fails inside redis-py: the relay resubscribes), and the relay goes on. Before, one
such publish (anyone with access to Redis, a garbled client) ended the ``follow_relay``
task for good: no pop, logout or session end from the other engine processes reached this
process's desktops again. Against the real Redis, on a channel of its own."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from ivr_engine.desktop import DesktopHub
from ivr_engine.desktop.listener import follow_relay
from ivr_engine.desktop.relay import DesktopNote, RedisDesktopRelay, decode_note, encode_note
from tests.redis_support import REDIS_URL, require_redis

POISON = [
    b"hello",
    b"\xff\xfe",
    b"null",
    b"[1, 2]",
    b'{"kind": "pop"}',
    b'{"kind": "shout", "origin": "x"}',
    b'{"kind": "pop", "origin": "x", "agent_id": ["a100"], "pop": {}}',
    b'{"kind": "pop", "origin": "x", "agent_id": "a100", "pop": "text"}',
    b"[" * 100_000,
]


@pytest.mark.parametrize("data", POISON, ids=range(len(POISON)))
def test_what_is_not_a_note_is_a_value_error(data: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        decode_note(data)


def test_a_note_round_trips() -> None:
    note = DesktopNote("pop", "p1", agent_id="a100", pop={"call_id": "c-1"})  # type: ignore[typeddict-item]
    assert decode_note(encode_note(note)) == note
    assert decode_note(encode_note(note).encode()) == note


async def test_garbage_on_the_channel_is_skipped_and_later_notes_still_apply() -> None:
    await require_redis()
    channel = f"test:{{desktop-{uuid.uuid4().hex}}}:notes"
    hub = DesktopHub(None)
    here = RedisDesktopRelay.from_url(REDIS_URL, channel=channel)
    there = RedisDesktopRelay.from_url(REDIS_URL, channel=channel)
    raw = Redis.from_url(REDIS_URL)
    task = asyncio.create_task(follow_relay(here, hub, retry_s=0.05))
    try:
        deadline = time.monotonic() + 5
        while await raw.pubsub_numsub(channel) != [(channel.encode(), 1)]:  # subscribed
            assert time.monotonic() < deadline, "the relay never subscribed"
            await asyncio.sleep(0.02)
        for data in POISON:
            await raw.publish(channel, data)
        pop = {"call_id": "c-1"}
        note = DesktopNote("pop", "another-process", agent_id="a100", pop=pop)  # type: ignore[typeddict-item]
        while hub.latest_pop("a100") is None:  # published again: a non-UTF-8 message costs a
            assert not task.done(), task.exception()  # resubscription, a note in it is lost
            assert time.monotonic() < deadline, "no note after the garbage was ever applied"
            await there.publish(note)
            await asyncio.sleep(0.1)
        assert hub.latest_pop("a100") == pop and not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await here.aclose()
        await there.aclose()
        await raw.aclose()

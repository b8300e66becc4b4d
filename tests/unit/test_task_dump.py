"""``describe_tasks``: each task by name, with the await it is stuck in last."""

from __future__ import annotations

import asyncio

from ivr_engine.task_dump import describe_tasks


async def _waits_forever(event: asyncio.Event) -> None:
    await _inner_wait(event)


async def _inner_wait(event: asyncio.Event) -> None:
    await event.wait()


async def test_each_task_is_listed_with_its_innermost_await_last() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_waits_forever(event), name="stuck-one")
    await asyncio.sleep(0)
    try:
        text = describe_tasks()
    finally:
        event.set()
        await task
    line = next(x for x in text.splitlines() if x.strip().startswith("stuck-one:"))
    assert line.index("_waits_forever") < line.index("_inner_wait")  # outermost first
    assert "test_task_dump.py:" in line
    assert text.splitlines()[0].startswith("2 asyncio task(s)")  # this test's and stuck-one


async def test_a_task_not_started_yet_is_said_so() -> None:
    task = asyncio.create_task(asyncio.sleep(0), name="fresh")
    text = describe_tasks()
    await task
    assert "fresh: " in text

"""``cancel_and_wait`` stops a task that lost a cancellation (``ivr_engine/stopping.py``)."""

from __future__ import annotations

import asyncio

from ivr_engine.stopping import cancel_and_wait


async def _loses_the_first_cancel(caught: list[int]) -> None:
    """A loop whose first cancellation is lost, as Python 3.11's ``wait_for`` loses one
    when the inner result lands with it (the loop then waits for its next item)."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            caught.append(1)
            if len(caught) > 1:
                raise


async def test_a_task_that_lost_the_cancel_is_cancelled_again_until_it_stops() -> None:
    caught: list[int] = []
    task = asyncio.create_task(_loses_the_first_cancel(caught))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait([task], recancel_every_s=0.05)
    assert task.cancelled() and len(caught) == 2


async def test_one_cancel_and_a_wait_do_not_stop_it() -> None:
    """What ``aclose`` methods did before: this is the wait that never ended."""
    caught: list[int] = []
    task = asyncio.create_task(_loses_the_first_cancel(caught))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done and caught == [1]
    await cancel_and_wait([task])


async def test_finished_and_failed_tasks_are_waited_for_and_their_errors_retrieved() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    failed = asyncio.create_task(fail())
    finished = asyncio.create_task(asyncio.sleep(0))
    running = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0.01)
    await cancel_and_wait([failed, finished, running])
    assert isinstance(failed.exception(), ValueError) and finished.done() and running.cancelled()
    await cancel_and_wait([])  # nothing to do

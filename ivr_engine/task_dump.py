"""``kill -USR1 <pid>``: log what every asyncio task of the process is waiting on.

For an engine (or a worker, or the supervisor) that does not stop or answer: one WARNING
record lists each task by name with its await chain, outermost first, innermost last
(``file:line function``), so the stuck ``await`` is the last entry of its line. Reading the
stacks does not disturb the tasks; the handler runs on the event loop, between callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

STACK_LIMIT = 12  # frames per task: enough to reach the stuck await in this code base


def describe_tasks() -> str:
    """Every task of the running loop and where it waits (one line each)."""
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    lines = [f"{len(tasks)} asyncio task(s), each: name: outermost -> ... -> innermost await"]
    for task in tasks:
        lines.append(f"  {task.get_name()}: {_await_chain(task)}")
    return "\n".join(lines)


def _await_chain(task: asyncio.Task[object]) -> str:
    """The coroutines the task awaits through (``Task.get_stack`` stops at the first of a
    suspended task), then what the innermost awaits if it is not a coroutine."""
    frames: list[str] = []
    awaited: object = task.get_coro()
    while len(frames) < STACK_LIMIT:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append(_frame(frame))
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    if not frames:
        return "(not started or done)"
    if awaited is not None:
        name = type(awaited).__name__
        frames.append("Future" if name == "FutureIter" else name)  # or an async generator step
    return " -> ".join(frames)


def _frame(frame: FrameType) -> str:
    code = frame.f_code
    return f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}"


def log_tasks() -> None:
    log.warning("SIGUSR1: %s", describe_tasks())


def dump_tasks_on_sigusr1() -> None:
    """Install the handler on the running loop (no-op where signals are not supported)."""
    with contextlib.suppress(NotImplementedError, AttributeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, log_tasks)

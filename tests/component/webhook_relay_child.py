"""A child process for the relay tests: ``python -m tests.component.webhook_relay_child``.

``commit-then-die URL HOOKS STORE NAME CUSTOMER``: run a relay; commit event 1 and wait
until the relay parked it (its receiver is down: not delivered); commit event 2; print both
ids and SIGKILL itself at once (event 2 committed, not yet relayed).
``relay URL HOOKS STORE NAME``: run a relay (lease 1 s); print ``leading`` once it leads.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from crm_bridge.webhooks import DeliveryPolicy
from crm_bridge.webhooks.relay import RelaySettings, WebhookRelay
from ivr_engine.ports import NewTimelineEvent
from ivr_engine.timeline import open_timeline

POLICY = DeliveryPolicy(max_attempts=100, base_delay_s=0.02, max_delay_s=0.1)


def relay_settings(name: str) -> RelaySettings:
    return RelaySettings(name=name, poll_interval_s=0.05, lease_s=1.0)


def new_event(customer: str, n: int) -> NewTimelineEvent:
    return NewTimelineEvent(
        event_id=f"crash-{n}-{uuid.uuid4().hex}",
        customer_id=customer,
        occurred_at=datetime.now(UTC),
        channel="web",
        event_type="order.shipped",
        data={"n": n},
    )


async def until(check: object, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # type: ignore[operator]  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.02)


async def commit_then_die(url: str, hooks: str, store: str, name: str, customer: str) -> None:
    relay = await WebhookRelay.start(
        url, Path(hooks), Path(store), policy=POLICY, settings=relay_settings(name)
    )
    timeline = await open_timeline(url, migrate=False)
    await relay.wait_leader()
    first, second = new_event(customer, 1), new_event(customer, 2)
    await timeline.store.append_events([first])
    await until(lambda: relay.relayed >= 1)
    await timeline.store.append_events([second])
    print(first.event_id, second.event_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


async def relay_forever(url: str, hooks: str, store: str, name: str) -> None:
    relay = await WebhookRelay.start(
        url, Path(hooks), Path(store), policy=POLICY, settings=relay_settings(name)
    )
    await relay.wait_leader()
    print("leading", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "commit-then-die":
        asyncio.run(commit_then_die(*args))
    else:
        asyncio.run(relay_forever(*args))

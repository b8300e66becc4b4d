"""One delivery attempt over HTTP: sign, POST, classify. Never raises for peer failures."""

from __future__ import annotations

import aiohttp

from crm_bridge.webhooks.retry import AttemptResult, DeliveryPolicy, Outcome, classify_status
from crm_bridge.webhooks.signing import delivery_headers
from crm_bridge.webhooks.store import Delivery
from crm_bridge.webhooks.subscriptions import Subscription

__all__ = ["USER_AGENT", "new_session", "post_delivery"]

USER_AGENT = "seed-webhooks/1"
_BODY_START = 200  # bytes of the receiver's answer kept for the dead letter


def new_session(policy: DeliveryPolicy) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=policy.timeout_s, sock_connect=policy.connect_timeout_s)
    return aiohttp.ClientSession(
        timeout=timeout, headers={"User-Agent": USER_AGENT}, raise_for_status=False
    )


async def post_delivery(
    session: aiohttp.ClientSession, subscription: Subscription, delivery: Delivery, now: float
) -> AttemptResult:
    """POST ``delivery`` to the subscription's URL, signed at ``now`` (unix seconds)."""
    headers = delivery_headers(
        subscription.secret,
        event_type=delivery.event_type,
        delivery_id=delivery.delivery_id,
        timestamp=int(now),
        body=delivery.body,
    )
    try:
        async with session.post(
            subscription.url, data=delivery.body, headers=headers, allow_redirects=False
        ) as response:
            start = await response.content.read(_BODY_START)
            return classify_status(
                response.status,
                response.headers.get("Retry-After"),
                start.decode("utf-8", errors="replace").strip(),
                now,
            )
    except TimeoutError:
        return AttemptResult(Outcome.RETRY, "timed out")
    except aiohttp.ClientError as exc:
        return AttemptResult(Outcome.RETRY, f"network error: {exc!r}")

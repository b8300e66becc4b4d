"""Channel variables the engine hands to the dialplan (``dialplans/ivr-engine.conf``)."""

import math
from datetime import UTC, datetime
from typing import Final

OUTCOME: Final = "IVR_OUTCOME"  # routed | abandoned | continued | failed
INTENT: Final = "IVR_INTENT"  # e.g. billing
TARGET: Final = "IVR_TARGET"  # e.g. queue:billing
CUSTOMER_ID: Final = "IVR_CUSTOMER_ID"  # empty for a caller not yet known
DECISION: Final = "IVR_DECISION"  # personalised | static
AGENT_ID: Final = "IVR_AGENT_ID"  # the reserved agent, empty when overflowing
AGENT_ENDPOINT: Final = "IVR_AGENT_ENDPOINT"  # dial string, e.g. PJSIP/agent-1; empty: use TARGET
TRIED_AGENTS: Final = "IVR_TRIED_AGENTS"  # agents already rung for this call, comma-separated
CASE_ID: Final = "IVR_CASE_ID"  # the open case the caller chose to continue, if any
RING_TIMEOUT: Final = "IVR_RING_TIMEOUT"  # seconds the dialplan rings the agent (ring_timeout_s)
WAIT_START: Final = "IVR_WAIT_START"  # unix time the caller started waiting for an agent
VERIFIED: Final = "IVR_VERIFIED"  # 1: the caller answered a known sensitive field right; else 0


def ring_timeout_value(seconds: float | None) -> str:
    """``IVR_RING_TIMEOUT``: whole seconds (Dial and ``call_timeout`` take integers), at least
    1; empty when no agent rings (the dialplan keeps its own default)."""
    if seconds is None:
        return ""
    return str(max(1, math.ceil(seconds)))


def wait_start_value(moment: datetime) -> str:
    """``IVR_WAIT_START``: whole unix seconds."""
    return f"{moment.timestamp():.0f}"


def parse_wait_start(text: str | None) -> datetime | None:
    """``IVR_WAIT_START`` read back from the channel; None when missing or not a positive,
    finite unix time (the router then counts the wait from now; it also distrusts a time in
    the future or implausibly long ago)."""
    if not text:
        return None
    try:
        seconds = float(text)
        if not math.isfinite(seconds) or seconds <= 0:
            return None
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):  # OSError: beyond the C library's gmtime
        return None

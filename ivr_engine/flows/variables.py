"""Channel variables the engine hands to the dialplan (``dialplans/ivr-engine.conf``)."""

import math
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


def ring_timeout_value(seconds: float | None) -> str:
    """``IVR_RING_TIMEOUT``: whole seconds (Dial and ``call_timeout`` take integers), at least
    1; empty when no agent rings (the dialplan keeps its own default)."""
    if seconds is None:
        return ""
    return str(max(1, math.ceil(seconds)))

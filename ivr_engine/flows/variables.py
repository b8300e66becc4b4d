"""Channel variables the engine hands to the dialplan (``dialplans/ivr-engine.conf``)."""

from typing import Final

OUTCOME: Final = "IVR_OUTCOME"  # routed | abandoned | failed
INTENT: Final = "IVR_INTENT"  # e.g. billing
TARGET: Final = "IVR_TARGET"  # e.g. queue:billing
CUSTOMER_ID: Final = "IVR_CUSTOMER_ID"  # empty for a caller not yet known
DECISION: Final = "IVR_DECISION"  # personalised | static

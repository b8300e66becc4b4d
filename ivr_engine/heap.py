"""The cyclic garbage collector in a long-running process, once it has started.

Start-up leaves ~127 k long-lived objects in the engine (modules, menus, pools, the HTTP
app). Left in the collector's view, each full collection walks all of them: 55-72 ms of
stalled event loop on the 2-core test VM (gc callbacks, measured in the engine), during
which every call in progress waits. ``gc.freeze`` moves them to a generation that is never
collected; what runs afterwards is collected as before.

The call-event bridge also makes its young collections rarer: it creates and drops ~10,000
events' worth of small containers a second, and with the default threshold (700 allocations)
a young collection ran every few events; at 20,000 the bridge's in-process driver ran 5.5 %
fewer instructions per AMI event (bench/results.md, bridge third pass).
"""

from __future__ import annotations

import gc

BRIDGE_YOUNG_THRESHOLD = 20_000


def settle_heap(young_threshold: int | None = None) -> None:
    """Collect, freeze what is alive now, and optionally set the young-generation threshold."""
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, older, oldest)

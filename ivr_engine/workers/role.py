"""What one engine worker process runs, when several share the call ports.

Every worker takes calls (FastAGI, and the ESL outbound socket when configured) on the
same ports, with ``SO_REUSEPORT``. What must exist once per engine runs in worker 0 only:

* the HTTP API, its port and what hangs off it (desktop WebSockets, continuation
  redemption with its used-token memory, ``/metrics``, the desktop login, whose failed-login
  counts are in Redis with the sessions);
* the webhook relay and dispatcher (one dispatcher per ``spool_dir/webhooks.db``: two
  would deliver the same parked rows);
* the AMI trackers (``ami_url``): agent answers, hang-ups, device and queue state, applied
  once to the shared agent state instead of once per worker.

Every worker routes calls, so the load view's state (calls waited on, outcome and decision
counts) is kept once, by the supervisor (``load_ledger.py``): each worker sends its updates
there, worker 0's AMI tracker included, and worker 0 reads it for ``/v1/load`` and
``/metrics``. The supervisor restarts worker 0 like any other, in the same role; the load
survives the restart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerRole:
    index: int  # 0 .. count - 1
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"worker index {self.index} not in 0..{self.count - 1}")

    @property
    def leads(self) -> bool:
        """Runs the once-per-engine parts (HTTP, webhooks, AMI trackers)."""
        return self.index == 0

    @property
    def name(self) -> str:
        return f"worker {self.index}"

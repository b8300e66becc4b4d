"""Several engine processes on one machine: ``ivr-engine run --workers N`` (setting ``workers``).

A supervisor (``supervisor.py``) starts N worker processes (``child.py``) that all accept
on the same FastAGI port (and ESL port) with ``SO_REUSEPORT``, so calls spread over the
cores; ``role.py`` says what runs in every worker and what in worker 0 only.
"""

from ivr_engine.workers.role import WorkerRole

__all__ = ["WorkerRole"]

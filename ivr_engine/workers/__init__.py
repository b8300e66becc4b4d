"""Several engine processes on one machine: ``ivr-engine run --workers N`` (setting ``workers``).

A supervisor (``supervisor.py``) starts N worker processes (``child.py``) that all accept
on the same FastAGI port (and ESL port) with ``SO_REUSEPORT``, so calls spread over the
cores; ``port_reservation.py`` holds those ports for the workers, ``worker_process.py``
starts one worker and says how it exited, ``child_watcher.py`` sees the exits (Python 3.11);
``role.py`` says what runs in every worker and what in worker 0 only; ``load_ledger.py`` is
the supervisor's one copy of the load (``/v1/load``, ``/metrics``) that every worker feeds.
"""

from ivr_engine.workers.role import WorkerRole

__all__ = ["WorkerRole"]

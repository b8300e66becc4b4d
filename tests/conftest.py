"""Settings shared by the whole suite."""

from __future__ import annotations

from hypothesis import settings

# No per-example deadline anywhere: these machines are shared and noisy, and a slow example
# is not a failure (speed is measured by the benchmarks in bench/, never by tests). 150
# examples by default, what every property test without its own budget ran with before
# (a profile one module loaded at import time used to set this for all of them).
settings.register_profile("suite", max_examples=150, deadline=None)
settings.load_profile("suite")

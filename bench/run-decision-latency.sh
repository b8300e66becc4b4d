#!/usr/bin/env bash
# Decision latency benchmark (issue #2): seeds PostgreSQL (ivr_bench) and SQLite
# (bench/.work/decision-latency.db) once with 1 M customers / 10 M events, runs 1 and 100
# calls in flight against each, and writes the "Decision latency" section of bench/results.md.
# Extra arguments go to bench/decision_latency.py (see --help), e.g. --db postgresql --calls 2000
# or --workers 2 (ivr-engine run --workers 2: two engine processes on one FastAGI port).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/decision_latency.py "$@"

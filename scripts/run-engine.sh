#!/usr/bin/env bash
# One command on a fresh machine: set up, then run the engine on the embedded default
# (SQLite file data/ivr-engine.db, in-process state). FastAGI on 127.0.0.1:4573, HTTP on :8080.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ivr-engine run "$@"

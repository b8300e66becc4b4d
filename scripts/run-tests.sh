#!/usr/bin/env bash
# One command on a fresh machine: set up everything and run every test, including the
# end-to-end tests through a real Asterisk 22 (provisioned into a cached chroot) with SIPp.
# Needs root (apt-get, debootstrap, chroot), PostgreSQL on 127.0.0.1:5432 and Redis on :6379.
#   scripts/run-tests.sh            everything
#   scripts/run-tests.sh --fast     all but the end-to-end tests (unit, component and
#                                   browser: Debian's chromium; then the real-process tests;
#                                   no Asterisk)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --system

echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy ivr_engine crm_bridge

status=0
echo "== fast suite (unit, component, browser)"
.venv/bin/pytest -m "not e2e and not processes" -q || status=$?
echo "== real-process tests (engine workers, bridge and desktop processes)"
procs=0
.venv/bin/pytest -m "processes" -q -p no:cacheprovider || procs=$?
if [ "$status" -eq 0 ]; then status=$procs; fi
if [ "${1:-}" != "--fast" ]; then
  echo "== end-to-end through a real Asterisk 22"
  bash scripts/asterisk-testbed.sh provision
  e2e=0
  .venv/bin/pytest -m e2e -q -p no:cacheprovider || e2e=$?
  if [ "$status" -eq 0 ]; then status=$e2e; fi
fi
# pytest exit 5 = no tests collected: that is a failure here.
exit "$status"

#!/usr/bin/env bash
# One command on a fresh machine: set up everything and run every test, including the
# end-to-end tests through a real Asterisk 22 (provisioned into a cached chroot) with SIPp.
# Needs root (apt-get, debootstrap, chroot), PostgreSQL on 127.0.0.1:5432 and Redis on :6379.
#   scripts/run-tests.sh            everything
#   scripts/run-tests.sh --fast     all but the end-to-end tests (unit, component and
#                                   browser: Debian's chromium; no Asterisk)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --system

echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy ivr_engine crm_bridge

status=0
if [ "${1:-}" = "--fast" ]; then
  .venv/bin/pytest -m "not e2e" -q || status=$?
else
  echo "== fast suite (unit + component)"
  .venv/bin/pytest -m "not e2e" -q || status=$?
  echo "== end-to-end through a real Asterisk 22"
  bash scripts/asterisk-testbed.sh provision
  e2e=0
  .venv/bin/pytest -m e2e -q -p no:cacheprovider || e2e=$?
  if [ "$status" -eq 0 ]; then status=$e2e; fi
fi
# pytest exit 5 = no tests collected: that is a failure here.
exit "$status"

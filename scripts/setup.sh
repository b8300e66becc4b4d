#!/usr/bin/env bash
# Sets up a fresh machine for the engine: Python venv with the project and its dev tools.
# With --system it also installs the Debian packages the full test suite uses
# (SIPp, debootstrap for the Asterisk 22 chroot, flite/ffmpeg for prompts, chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--system" ]; then
  need=()
  command -v sipp >/dev/null || need+=(sip-tester)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v flite >/dev/null || need+=(flite)
  command -v ffmpeg >/dev/null || need+=(ffmpeg)
  command -v sox >/dev/null || need+=(sox)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

# The interpreter: $PYTHON if set, else python3 on PATH. PYTHON=/usr/bin/python3.11 picks
# Debian's PGO/LTO build (~10 % less engine CPU per call, bench/results.md), but its 3.11.2
# asyncio predates later 3.11.x fixes and full test runs timed out intermittently under it.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev]"


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
  if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
    need+=(python3-venv)  # so the venv below can use the distribution's Python
  fi
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

# The interpreter: $PYTHON if set; else the distribution's own Python 3.11+ when it has the
# venv module (Debian builds it with PGO and LTO: the engine used ~10 % less CPU per call on
# it than on a default source build such as pyenv's, bench/results.md); else python3.
pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for candidate in /usr/bin/python3 /usr/bin/python3.11 /usr/bin/python3.12 /usr/bin/python3.13; do
    if [ -x "$candidate" ] &&
      "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo python3
}
if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev]"


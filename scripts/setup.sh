#!/usr/bin/env bash
# Sets up a fresh machine for the engine: Python venv with the project and its dev tools.
# With --system it also installs the Debian packages the full test suite uses
# (SIPp, debootstrap for the Asterisk 22 chroot, flite/ffmpeg for prompts, chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

# The interpreter: $PYTHON if set, else python3 on PATH. PYTHON=/usr/bin/python3.11 picks
# Debian's PGO/LTO build (~10 % less engine CPU per call, bench/results.md), but its 3.11.2
# asyncio predates later 3.11.x fixes and full test runs timed out intermittently under it.
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--system" ]; then
  need=()
  # Debian's own python3 creates venvs only with python3-venv (ensurepip) installed.
  "$PYTHON" -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
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

if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: $PYTHON is not Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    exit 2
  fi
  if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    echo "error: $PYTHON cannot create a venv (no ensurepip): on Debian/Ubuntu run" >&2
    echo "  sudo apt-get install python3-venv   (or: scripts/setup.sh --system, as root)" >&2
    exit 2
  fi
  "$PYTHON" -m venv .venv
fi
# Installed once per pyproject.toml: a restart (scripts/run-engine.sh) neither waits for pip
# nor needs the package index; an edited pyproject.toml installs again.
stamp=.venv/.ivr-engine-installed
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$wanted" > "$stamp"
fi


# Byte-compile the project once (PYTHONDONTWRITEBYTECODE=1 on this machine, and the Asterisk
# bench mounts the tree read-only, so otherwise every classic AGI process compiles every
# module it imports from source). Timestamp mode, Python's default: each .pyc records its
# source's mtime (seconds) and size, and one that does not match is ignored (that process
# compiles the module again), so an edited module does not run stale.
.venv/bin/python -m compileall -q -j 0 --invalidation-mode timestamp ivr_engine crm_bridge speech

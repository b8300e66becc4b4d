#!/usr/bin/env bash
# A real Asterisk 22 for the end-to-end tests, in a Debian-sid chroot beside the tests.
#
#   scripts/asterisk-testbed.sh provision   build the chroot once (cached; ~1 min, ~450 MB)
#   scripts/asterisk-testbed.sh start       install the project's configs, dialplans and
#                                           prompts into the chroot and (re)start Asterisk
#   scripts/asterisk-testbed.sh stop        stop Asterisk, unmount proc (never fails)
#   scripts/asterisk-testbed.sh cli "CMD"   run an Asterisk CLI command (asterisk -rx)
#   scripts/asterisk-testbed.sh status      is it provisioned / running?
#
# Needs root (apt-get, debootstrap, chroot, mount). Environment:
#   IVR_ASTERISK_CHROOT   chroot directory (default /var/cache/ivr-engine/asterisk-sid)
#   IVR_ASTERISK_MIRROR   Debian mirror for debootstrap (default: the host's apt sources)
#   IVR_ASTERISK_CONFIG   Asterisk config dir to install (default tests/e2e/asterisk)
#   IVR_ASTERISK_ALLOW_ERRORS=1   do not fail `start` when Asterisk logs ERROR lines
# Asterisk listens on 127.0.0.1 only: SIP 5060/udp, AMI 5038/tcp, RTP 20000-20999/udp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${IVR_ASTERISK_CHROOT:-/var/cache/ivr-engine/asterisk-sid}"
DIR="${DIR%/}"
CONFIG_DIR="${IVR_ASTERISK_CONFIG:-$ROOT/tests/e2e/asterisk}"
DIALPLAN_DIR="$ROOT/dialplans"
PROMPTS_DIR="$ROOT/prompts/en"
APT_OPTS=(-o Acquire::Check-Valid-Until=false)

log() { printf '[asterisk-testbed %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, debootstrap, chroot, mount); uid=$(id -u)"
}

# The Debian archive URI the host's apt already uses (not the security archive).
host_mirror() {
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri="$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' \
      /etc/apt/sources.list.d/*.sources | grep -v -- '-security' | head -n1 || true)"
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    # deb [options] URI suite components
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
      /etc/apt/sources.list | grep -v -- '-security' | head -n1 || true)"
  fi
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# PIDs of processes whose root directory is the chroot (i.e. our Asterisk and its helpers).
chroot_pids() {
  local real pid
  real="$(readlink -f "$DIR" 2>/dev/null || printf '%s' "$DIR")"
  for pid in $(pgrep -x asterisk 2>/dev/null || true); do
    if [ "$(readlink "/proc/$pid/root" 2>/dev/null || true)" = "$real" ]; then
      printf '%s\n' "$pid"
    fi
  done
}

ast_rx() { chroot "$DIR" asterisk -rx "$1"; }

is_provisioned() { [ -x "$DIR/usr/sbin/asterisk" ]; }

cmd_provision() {
  need_root
  if is_provisioned; then
    log "chroot $DIR already has Asterisk: nothing to do"
    return 0
  fi
  local start=$SECONDS
  if ! command -v sipp >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing host packages: debootstrap sip-tester"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap sip-tester
  fi
  mkdir -p "$(dirname "$DIR")"
  # One provisioning at a time (parallel test sessions on the same machine).
  exec 9>"$DIR.lock"
  flock 9
  if is_provisioned; then
    log "chroot $DIR was provisioned by another process meanwhile"
    return 0
  fi
  local mirror tmp
  mirror="${IVR_ASTERISK_MIRROR:-$(host_mirror)}"
  tmp="$DIR.building.$$"
  # A half-built tree is never taken for the cache: build beside it, rename at the end.
  # shellcheck disable=SC2064
  trap "cleanup_build '$tmp'" EXIT
  # shellcheck disable=SC2064
  trap "cleanup_build '$tmp'; trap - EXIT; exit 130" INT TERM HUP
  rm -rf --one-file-system "$DIR".building.* 2>/dev/null || true
  log "debootstrap --variant=minbase sid $tmp $mirror (about 60 s)"
  debootstrap --variant=minbase sid "$tmp" "$mirror"
  log "installing asterisk and asterisk-core-sounds-en-gsm inside the chroot"
  chroot "$tmp" apt-get "${APT_OPTS[@]}" update
  chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y \
    --no-install-recommends asterisk asterisk-core-sounds-en-gsm
  chroot "$tmp" apt-get clean
  # Without /etc/hosts Asterisk resolves its own host name through DNS and stalls.
  {
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
    printf '127.0.1.1\t%s\n' "$(hostname)"
  } >"$tmp/etc/hosts"
  [ -x "$tmp/usr/sbin/asterisk" ] || die "asterisk is not installed in $tmp"
  # Keep the package's default configs for reference; `start` replaces etc/asterisk.
  cp -a "$tmp/etc/asterisk" "$tmp/etc/asterisk.dist"
  if [ -e "$DIR" ]; then
    mountpoint -q "$DIR/proc" 2>/dev/null && umount -l "$DIR/proc"
    rm -rf --one-file-system "$DIR"
  fi
  mv "$tmp" "$DIR"
  trap - EXIT INT TERM HUP
  log "provisioned $DIR: $(chroot "$DIR" asterisk -V) in $((SECONDS - start)) s"
}

cleanup_build() {
  local tmp="$1"
  [ -d "$tmp" ] || return 0
  log "provisioning failed: removing $tmp"
  local m
  awk -v p="$tmp/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
  rm -rf --one-file-system "$tmp" || true
}

install_files() {
  [ -d "$CONFIG_DIR" ] || die "no Asterisk config dir $CONFIG_DIR"
  local etc="$DIR/etc/asterisk"
  # Only our configs: a module we do not load must not find a default config either.
  rm -rf "$etc"
  mkdir -p "$etc"
  cp "$CONFIG_DIR"/*.conf "$etc/"
  if compgen -G "$DIALPLAN_DIR/*.conf" >/dev/null; then
    cp "$DIALPLAN_DIR"/*.conf "$etc/"
    # A deployer's sample, not part of the test configuration.
    rm -f "$etc/pjsip-sample.conf"
  fi
  # sounds/en is a symlink to /etc/alternatives/... inside the chroot: resolve it there.
  local sounds
  sounds="$DIR$(chroot "$DIR" readlink -f /usr/share/asterisk/sounds/en)"
  if [ -d "$PROMPTS_DIR" ]; then
    mkdir -p "$sounds"
    local sub
    for sub in "$PROMPTS_DIR"/*/; do
      [ -d "$sub" ] && rm -rf "${sounds:?}/$(basename "$sub")"
    done
    cp -r "$PROMPTS_DIR"/. "$sounds/"
  fi
  mkdir -p "$DIR/var/run/asterisk" "$DIR/var/log/asterisk" "$DIR/var/spool/asterisk" \
    "$DIR/var/lib/asterisk"
  : >"$DIR/var/log/asterisk/messages.log"
}

cmd_start() {
  need_root
  is_provisioned || die "chroot $DIR has no Asterisk; run: $0 provision"
  if [ -n "$(chroot_pids)" ]; then
    log "an Asterisk from a previous run is still running: stopping it"
    cmd_stop
  fi
  install_files
  if ! mountpoint -q "$DIR/proc"; then
    mount -t proc proc "$DIR/proc"
  fi
  log "starting Asterisk in $DIR"
  # Daemonises; its output goes to a file so a caller capturing ours never waits on it.
  chroot "$DIR" asterisk -C /etc/asterisk/asterisk.conf \
    </dev/null >"$DIR/var/log/asterisk/startup.log" 2>&1 ||
    die "asterisk failed to start: $(cat "$DIR/var/log/asterisk/startup.log")"
  local deadline=$((SECONDS + 60))
  # The control socket appears a moment after the fork; -rx fails until it does.
  until timeout 5 chroot "$DIR" asterisk -rx "core waitfullybooted" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$DIR/var/log/asterisk/messages.log" >&2 || true
      die "Asterisk did not finish booting within 60 s"
    fi
    if [ -z "$(chroot_pids)" ]; then
      tail -n 40 "$DIR/var/log/asterisk/messages.log" >&2 || true
      die "Asterisk exited during start-up"
    fi
    sleep 0.2
  done
  timeout $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)) \
    chroot "$DIR" asterisk -rx "core waitfullybooted" >/dev/null ||
    die "Asterisk did not finish booting within 60 s"
  # A clean start logs no ERROR; one usually means a port is taken (5060, 5038) or a config
  # mistake, which would otherwise surface later as obscure test timeouts.
  local errors
  errors="$(grep -F 'ERROR[' "$DIR/var/log/asterisk/messages.log" || true)"
  if [ -n "$errors" ] && [ "${IVR_ASTERISK_ALLOW_ERRORS:-0}" != "1" ]; then
    printf '%s\n' "$errors" >&2
    cmd_stop
    die "Asterisk logged errors during start-up (above); IVR_ASTERISK_ALLOW_ERRORS=1 ignores them"
  fi
  log "Asterisk ready: $(ast_rx 'core show version' | head -n1)"
}

cmd_stop() {
  if [ ! -d "$DIR" ]; then
    return 0
  fi
  if [ -n "$(chroot_pids)" ]; then
    log "stopping Asterisk in $DIR"
    timeout 10 chroot "$DIR" asterisk -rx "core stop now" >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 10))
    while [ -n "$(chroot_pids)" ] && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.2
    done
    local pids
    pids="$(chroot_pids)"
    if [ -n "$pids" ]; then
      log "killing leftover Asterisk processes: $(echo "$pids" | tr '\n' ' ')"
      # shellcheck disable=SC2086
      kill -9 $pids 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$DIR/var/run/asterisk/asterisk.ctl" "$DIR/var/run/asterisk/asterisk.pid" 2>/dev/null || true
  if mountpoint -q "$DIR/proc" 2>/dev/null; then
    umount "$DIR/proc" 2>/dev/null || umount -l "$DIR/proc" 2>/dev/null || true
  fi
  return 0
}

cmd_cli() {
  [ $# -ge 1 ] || die "usage: $0 cli \"CLI COMMAND\""
  ast_rx "$*"
}

cmd_status() {
  if is_provisioned; then
    echo "provisioned: $DIR ($(chroot "$DIR" asterisk -V 2>/dev/null || echo '?'))"
  else
    echo "not provisioned: $DIR"
  fi
  local pids
  pids="$(chroot_pids)"
  if [ -n "$pids" ]; then echo "running: pid $(echo "$pids" | tr '\n' ' ')"; else echo "stopped"; fi
}

case "${1:-}" in
  provision) cmd_provision ;;
  start) cmd_start ;;
  stop) cmd_stop || true ;;
  cli)
    shift
    cmd_cli "$@"
    ;;
  status) cmd_status ;;
  *)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
    ;;
esac

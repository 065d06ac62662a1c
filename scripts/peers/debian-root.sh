#!/usr/bin/env bash
# Build (once) a Debian unstable root with the given packages, for running a real peer chrooted in tests.
#   scripts/peers/debian-root.sh NAME PACKAGE...      prints the root's path on stdout
# Cached under ${CARTERA_PEERS_CACHE:-$HOME/.cache/cartera/peers}/NAME, keyed by the package list, so a second
# run (CI on the same machine, the next test session) takes no time. Needs root (debootstrap, chroot).
set -euo pipefail
name=$1; shift
packages=$(printf '%s\n' "$@" | sort -u | paste -sd, -)
cache=${CARTERA_PEERS_CACHE:-$HOME/.cache/cartera/peers}
root=$cache/$name
stamp=$root/.cartera-provisioned
mirror=${CARTERA_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { echo "debian-root[$name]: $*" >&2; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$packages" ]; then
  echo "$root"; exit 0
fi
[ "$(id -u)" = 0 ] || { log "needs root (debootstrap and chroot)"; exit 3; }
mkdir -p "$cache"
exec 9>"$cache/.$name.lock"
flock 9                                  # parallel test workers build a root once
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$packages" ]; then
  echo "$root"; exit 0
fi
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi
rm -rf "$root.tmp"
log "debootstrap sid into $root (about a minute)"
debootstrap --variant=minbase sid "$root.tmp" "$mirror" >&2
cp /etc/resolv.conf "$root.tmp/etc/resolv.conf"
log "installing: $*"
chroot "$root.tmp" apt-get -o Acquire::Check-Valid-Until=false update -qq >&2
DEBIAN_FRONTEND=noninteractive chroot "$root.tmp" \
  apt-get -o Acquire::Check-Valid-Until=false install -y -qq --no-install-recommends "$@" >&2
chroot "$root.tmp" apt-get clean >&2
rm -rf "$root"
mv "$root.tmp" "$root"
echo "$packages" > "$stamp"
log "ready"
echo "$root"

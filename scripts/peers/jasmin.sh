#!/usr/bin/env bash
# Install (once) the Jasmin SMS gateway into its own virtualenv, for the `smpp` peer tests and bench.
#   scripts/peers/jasmin.sh          prints the venv's path on stdout
# Cached under ${CARTERA_PEERS_CACHE:-$HOME/.cache/cartera/peers}/jasmin-venv, keyed by the pinned version and
# the patch below, so a second run takes no time. Jasmin's Twisted and pinned dependencies stay out of
# Cartera's venv. Needs a python3.11 (or python3) and PyPI.
#
# Patch: Jasmin 0.11.1 loses delivery receipts in jasmin/managers/listeners.py, which reads
# `_pdu.response` where the submit_sm response `r.response` is meant; the script fixes the installed copy
# (idempotent: applied once, checked on every run).
set -euo pipefail
version=${CARTERA_JASMIN_VERSION:-0.11.1}
cache=${CARTERA_PEERS_CACHE:-$HOME/.cache/cartera/peers}
venv=$cache/jasmin-venv
stamp=$venv/.cartera-provisioned
key="jasmin==$version patch=listeners-r.response"

log() { echo "jasmin[$version]: $*" >&2; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  echo "$venv"; exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.jasmin-venv.lock"
flock 9                                  # parallel test workers install once
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  echo "$venv"; exit 0
fi
python=$(command -v python3.11 || command -v python3)
rm -rf "$venv"
log "creating $venv with $python"
"$python" -m venv "$venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check "jasmin==$version" >&2

listeners=$("$venv/bin/python" -c 'import jasmin.managers.listeners as m; print(m.__file__)')
if grep -q '_pdu\.response' "$listeners"; then
  log "patching $listeners: _pdu.response -> r.response (delivery receipts)"
  sed -i 's/_pdu\.response/r.response/g' "$listeners"
fi
if grep -q '_pdu\.response' "$listeners"; then
  log "patch failed: $listeners still reads _pdu.response"; exit 4
fi
echo "$key" > "$stamp"
log "ready"
echo "$venv"

#!/usr/bin/env bash
# Runs one guest script against a fresh `vkey serve` through the real Linux USB/IP stack
# (../shared/tools/linux-vm/run-in-vm) and checks that it printed its success marker.
#
#   tests/vm/run.sh GUEST_SCRIPT MARKER [-- VKEY_SERVE_ARGS...]
#
# VKEY_BIN (default target/release/vkey) and LINUX_VM (default ../shared/tools/linux-vm)
# may be overridden. Exit 0 on success.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GUEST=$1 MARKER=$2; shift 2
[ "${1:-}" = "--" ] && shift
VKEY_ARGS=("$@")
[ ${#VKEY_ARGS[@]} -gt 0 ] || VKEY_ARGS=(--ephemeral)
VKEY=${VKEY_BIN:-$ROOT/target/release/vkey}
VM=${LINUX_VM:-$ROOT/../shared/tools/linux-vm}/run-in-vm
OUT=$ROOT/tests/out
mkdir -p "$OUT"
name=$(basename "$GUEST" .sh)

log=$OUT/$name.vkey.log
"$VKEY" serve --listen 127.0.0.1:0 "${VKEY_ARGS[@]}" > "$log.stdout" 2> "$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$log.stdout")
    [ -n "$port" ] && break
    kill -0 $pid 2>/dev/null || { cat "$log"; echo "vkey exited"; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { echo "vkey did not start"; exit 1; }

set +e
"$VM" --usbip "127.0.0.1:$port" --timeout 240 --add "$GUEST" ${VM_ADD:+--add "$VM_ADD"} \
    --out "$OUT/$name.out" -- sh "/data/$(basename "$GUEST")" > "$OUT/$name.console" 2>&1
rc=$?
set -e
cat "$OUT/$name.out" 2>/dev/null || true
if [ $rc -ne 0 ] || ! grep -q "$MARKER" "$OUT/$name.out" 2>/dev/null; then
    echo "---- VM console ($OUT/$name.console) ----"; tail -n 60 "$OUT/$name.console"
    echo "---- vkey log ----"; tail -n 30 "$log"
    echo "VM test $name FAILED (exit $rc)"
    exit 1
fi
echo "VM test $name passed"

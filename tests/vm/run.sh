#!/usr/bin/env bash
# Runs one guest script against a fresh `vkey serve` through the real Linux USB/IP stack
# (../shared/tools/linux-vm/run-in-vm) and checks that it printed its success marker.
#
#   tests/vm/run.sh GUEST_SCRIPT MARKER [-- VKEY_SERVE_ARGS...]
#
# VKEY_BIN (default target/release/vkey) and LINUX_VM (default ../shared/tools/linux-vm)
# may be overridden; VM_RUNNER=run-browser-in-vm runs the script in the browser image
# (Debian bookworm root file system: OpenSSH, python3) instead of the busybox guest.
# Exit 0 on success.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
GUEST=$1 MARKER=$2; shift 2
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || set -- --ephemeral
name=$(basename "$GUEST" .sh)
start_vkey "$name" "$@"

set +e
"$LINUX_VM/${VM_RUNNER:-run-in-vm}" --usbip "127.0.0.1:$VKEY_PORT" --timeout 240 --add "$GUEST" \
    --out "$OUT/$name.out" -- sh "/data/$(basename "$GUEST")" > "$OUT/$name.console" 2>&1
rc=$?
set -e
grep -v "vhci_device speed not set" "$OUT/$name.out" 2>/dev/null || true
if [ $rc -ne 0 ] || ! grep -q "$MARKER" "$OUT/$name.out" 2>/dev/null; then
    echo "---- VM console ($OUT/$name.console) ----"; tail -n 60 "$OUT/$name.console"
    echo "---- vkey log ----"; tail -n 30 "$VKEY_LOGFILE"
    echo "VM test $name FAILED (exit $rc)"
    exit 1
fi
echo "VM test $name passed"

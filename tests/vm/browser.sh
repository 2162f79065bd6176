#!/usr/bin/env bash
# A real browser registers and signs in with a fresh `vkey serve`, inside the VM
# (../shared/tools/linux-vm/run-browser-in-vm: Firefox ESR or Chromium through
# vhci-hcd → usbhid → hidraw).
#
#   tests/vm/browser.sh NAME "BROWSER_ARGS" [-- VKEY_SERVE_ARGS...]
#   e.g. tests/vm/browser.sh firefox-pin "--browser firefox --pin 4321abcd" -- --ephemeral --pin-file F
set -euo pipefail
. "$(dirname "$0")/lib.sh"
name=$1 browser_args=$2; shift 2
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || set -- --ephemeral
start_vkey "browser-$name" "$@"
set +e
# shellcheck disable=SC2086
"$LINUX_VM/run-browser-in-vm" --usbip "127.0.0.1:$VKEY_PORT" $browser_args \
    --out "$OUT/browser-$name.out" > "$OUT/browser-$name.console" 2>&1
rc=$?
set -e
cat "$OUT/browser-$name.out" 2>/dev/null || true
if [ $rc -ne 0 ] || ! grep -q "^[0-9]* passed, 0 failed" "$OUT/browser-$name.out" 2>/dev/null; then
    echo "---- VM console ----"; tail -n 40 "$OUT/browser-$name.console"
    echo "---- vkey log ----"; tail -n 30 "$VKEY_LOGFILE"
    echo "browser test $name FAILED (exit $rc)"
    exit 1
fi
echo "browser test $name passed"

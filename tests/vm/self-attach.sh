#!/usr/bin/env bash
# `vkey serve --attach` inside the VM (../shared/tools/linux-vm/run-in-vm --no-attach):
# the release binary is copied into the guest, where it attaches itself through
# vhci-hcd; tests/vm/guest-self-attach.sh checks hidraw, replug and detach on exit.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
name=self-attach
# A stripped copy keeps the initramfs small; libgcc_s and libm are not in the guest image.
strip -o "$OUT/vkey" "$VKEY"
set +e
"$LINUX_VM/run-in-vm" --no-attach --timeout 240 \
    --add "$OUT/vkey" --add /lib/x86_64-linux-gnu/libgcc_s.so.1 --add /lib/x86_64-linux-gnu/libm.so.6 \
    --add "$ROOT/tests/vm/guest-self-attach.sh" \
    --out "$OUT/$name.out" -- sh /data/guest-self-attach.sh > "$OUT/$name.console" 2>&1
rc=$?
set -e
cat "$OUT/$name.out" 2>/dev/null || true
if [ $rc -ne 0 ] || ! grep -q SELF_ATTACH_OK "$OUT/$name.out" 2>/dev/null; then
    echo "---- VM console ($OUT/$name.console) ----"; tail -n 60 "$OUT/$name.console"
    echo "VM test $name FAILED (exit $rc)"
    exit 1
fi
echo "VM test $name passed"

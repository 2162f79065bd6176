#!/bin/sh
# Runs inside run-in-vm's guest (root, vhci-hcd loaded, no usbip attach by the tool):
# `vkey serve --attach` attaches the key itself, its /dev/hidraw node works with
# libfido2, `vkey replug` brings it back on a new node, SIGTERM detaches it.
V=/data/vkey
export LD_LIBRARY_PATH=/data VKEY_CONTROL=/tmp/vkey-control.sock
fail() { echo "FAIL: $*"; echo "--- vkey stdout"; cat /tmp/vkey.out; echo "--- vkey stderr"; tail -n 20 /tmp/vkey.err; exit 1; }
chmod +x $V
$V serve --attach --ephemeral --listen 127.0.0.1:3240 > /tmp/vkey.out 2> /tmp/vkey.err &
PID=$!
wait_attached() {  # wait_attached N: until the Nth "attached as" line (30 s)
    i=0
    while [ $i -lt 300 ]; do
        [ "$(grep -c 'attached as /dev/hidraw' /tmp/vkey.out)" -ge "$1" ] && return 0
        kill -0 $PID 2>/dev/null || return 1
        usleep 100000; i=$((i + 1))
    done
    return 1
}
node_n() { grep 'attached as /dev/hidraw' /tmp/vkey.out | sed -n "${1}p" | sed 's/.*attached as \(\/dev\/hidraw[0-9]*\).*/\1/'; }
wait_attached 1 || fail "vkey serve --attach: no hidraw node"
node=$(node_n 1)
cat /tmp/vkey.out
fido2-token -I "$node" > /tmp/info 2>&1 || { cat /tmp/info; fail "fido2-token -I $node"; }
grep -q "aaguid: 8fc78583dabb4ce981c293b4322ab072" /tmp/info || fail "getInfo on $node"
$V status | tee /tmp/status
grep -q "1-1: attached" /tmp/status || fail "vkey status does not say attached"
echo "SELF_ATTACHED $node"

$V replug || fail "vkey replug"
wait_attached 2 || fail "no hidraw node after vkey replug"
node2=$(node_n 2)
fido2-token -I "$node2" > /tmp/info2 2>&1 || { cat /tmp/info2; fail "fido2-token -I $node2 after replug"; }
grep -q "aaguid: 8fc78583dabb4ce981c293b4322ab072" /tmp/info2 || fail "getInfo after replug"
echo "REPLUGGED $node2"

kill -TERM $PID
wait $PID
rc=$?
grep -q "1-1: detached" /tmp/vkey.out || fail "no detach on SIGTERM (exit $rc)"
i=0
while [ $i -lt 100 ]; do
    set -- /sys/class/hidraw/hidraw*
    [ -e "$1" ] || break
    usleep 100000; i=$((i + 1))
done
[ -e "$1" ] && fail "hidraw node still present after exit"
[ -e "$VKEY_CONTROL" ] && fail "control socket left behind"
echo "DETACHED_ON_EXIT (exit $rc)"

# Without the module's attach file or without root: one line that says what to run.
echo "SELF_ATTACH_OK"

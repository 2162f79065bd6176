#!/bin/sh
# Runs inside run-in-vm's guest (busybox sh) after its first `usbip attach`:
# libfido2 must see the key on the first attach, then 20 detach/attach cycles must each
# bring the hidraw node back with a working key.
fail() { echo "FAIL: $*"; exit 1; }
echo "## fido2-token -L"
fido2-token -L | tee /tmp/list
grep -q "vendor=0x1209, product=0x0001" /tmp/list || fail "fido2-token -L does not list vkey"
echo "## fido2-token -I $FIDO_DEV"
fido2-token -I "$FIDO_DEV" | tee /tmp/info
grep -q "aaguid: 8fc78583dabb4ce981c293b4322ab072" /tmp/info || fail "getInfo not printed"
echo "FIRST_ATTACH_OK"

hidraw_present() { set -- /sys/class/hidraw/hidraw*; [ -e "$1" ]; }
wait_for() {  # wait_for present|absent: up to 15 s
    i=0
    while [ $i -lt 150 ]; do
        if [ "$1" = present ]; then hidraw_present && return 0; else hidraw_present || return 0; fi
        usleep 100000; i=$((i + 1))
    done
    return 1
}
n=0
while [ $n -lt 20 ]; do
    n=$((n + 1))
    usbip detach -p 0 >/dev/null 2>&1 || fail "cycle $n: usbip detach"
    wait_for absent || fail "cycle $n: hidraw still present after detach"
    ok=0
    for try in 1 2 3; do
        if usbip --tcp-port "$USBIP_PORT" attach -r "$USBIP_SERVER" -b "$USBIP_BUSID" 2>/tmp/attach.err; then ok=1; break; fi
        cat /tmp/attach.err; usleep 300000
    done
    [ $ok = 1 ] || fail "cycle $n: usbip attach"
    wait_for present || fail "cycle $n: no hidraw node after attach"
    set -- /dev/hidraw*
    fido2-token -I "$1" > /tmp/info 2>&1 || { cat /tmp/info; fail "cycle $n: fido2-token -I $1"; }
    grep -q "aaguid: 8fc78583dabb4ce981c293b4322ab072" /tmp/info || fail "cycle $n: getInfo"
    echo "cycle $n: $1 ok (try $try)"
done
echo "ATTACH_CYCLES_OK 20"

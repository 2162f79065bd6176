#!/bin/sh
# libfido2's whole tool set against vkey through the real kernel (run-in-vm's busybox
# guest), in one boot, on a key started without a PIN (--ephemeral --presence auto):
#   fido2-token -L/-I/-S/-C/-I -c/-L -r/-L -k/-I -k -i/-S -c/-D -i/-S -u/-D -u/-S -l/
#               -S -m/-S -f/-S -a/-R (after a detach/attach: the reset window)
#   fido2-cred -M [-r] [-v] [-c N] [-h] [-b], each output checked with fido2-cred -V
#   fido2-assert -G [-r] [-v] [-p] [-t up=…] [-t pin=…] [-h] [-b], each checked with -V
# Options that need what the key does not advertise (hmac-secret, largeBlobKey,
# largeBlobs, U2F) are skipped with a SKIP line, and run once getInfo lists them.
# The guest has no terminal: the tools read PINs from standard input, one per line.
PIN=4321abcd PIN2=8765dcba
checks=0 skips=0
fail() { echo "FAIL: $*"; exit 1; }
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
skip() { skips=$((skips + 1)); echo "SKIP - $*"; }
b64() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; echo; }
dev() { set -- /dev/hidraw*; echo "$1"; }
cd /tmp

echo "## fido2-token -L / -I on a key without PIN"
fido2-token -L | tee list.txt
grep -q "vendor=0x1209, product=0x0001" list.txt || fail "-L does not list vkey"
ok "fido2-token -L lists the key"
fido2-token -I "$FIDO_DEV" > info.txt || fail "fido2-token -I"
cat info.txt
grep -q "noclientPin" info.txt || fail "-I: a fresh key must have no PIN"
grep -q "pin retries: undefined" info.txt || fail "-I: getPINRetries without a PIN must fail (PIN_NOT_SET)"
ok "fido2-token -I: no PIN, pin retries undefined"
ext() { grep "^extension strings:" info.txt | grep -qw "$1"; }
opt() { grep "^options:" info.txt | tr -d ',' | grep -qw "$1"; }

# makeCredential / getAssertion without PIN: -c (credProtect), -p, -t up=false
mkcred() {  # mkcred NAME RP USER → NAME.in
    { b64 32; echo "$2"; echo "$3"; b64 16; } > "$1.in"
}
mkassert() {  # mkassert NAME RP [CRED_ID] → NAME.in
    { b64 32; echo "$2"; [ -n "${3:-}" ] && echo "$3"; } > "$1.in"
}
for type in es256 eddsa; do
    mkcred c-$type plain.example user-$type
    fido2-cred -M -q -c 2 -i c-$type.in -o c-$type.out "$FIDO_DEV" $type || fail "fido2-cred -M -c 2 $type"
    fido2-cred -V -c 2 -i c-$type.out -o c-$type.ver $type || fail "fido2-cred -V -c 2 $type"
    ok "fido2-cred -M -c 2 $type, verified (packed attestation, credProtect 2 signed)"
    tail -n +2 c-$type.ver > c-$type.pem
    mkassert a-$type plain.example "$(head -n 1 c-$type.ver)"
    fido2-assert -G -p -i a-$type.in -o a-$type.out "$FIDO_DEV" || fail "fido2-assert -G -p $type"
    fido2-assert -V -p -i a-$type.out c-$type.pem $type || fail "fido2-assert -V -p $type"
    ok "fido2-assert -G -p $type, verified with the credential's key (UP signed)"
done
fido2-assert -G -t up=false -i a-es256.in -o silent.out "$FIDO_DEV" || fail "fido2-assert -t up=false"
fido2-assert -V -i silent.out c-es256.pem es256 || fail "silent assertion does not verify"
if fido2-assert -V -p -i silent.out c-es256.pem es256 2>/dev/null; then fail "up=false assertion has UP"; fi
ok "fido2-assert -G -t up=false: signature verifies, UP not set"
if fido2-cred -M -q -v -i c-es256.in -o /dev/null "$FIDO_DEV" es256 2> nopin.err; then
    fail "fido2-cred -v without a PIN succeeded"
fi
ok "fido2-cred -M -v on a key without PIN or built-in UV fails ($(tr '\n' ' ' < nopin.err))"

echo "## fido2-token -S (set PIN), -C (change PIN)"
printf '%s\n%s\n' "$PIN2" "$PIN2" | fido2-token -S "$FIDO_DEV" || fail "fido2-token -S"
fido2-token -I "$FIDO_DEV" > info.txt || fail "fido2-token -I"
grep "^options:" info.txt | tr -d ',' | grep -qw clientPin || fail "clientPin not set after -S"
grep -q "pin retries: 8" info.txt || fail "pin retries after -S"
ok "fido2-token -S sets the PIN (clientPin, pin retries: 8)"
printf '%s\n%s\n%s\n' "$PIN2" "$PIN" "$PIN" | fido2-token -C "$FIDO_DEV" || fail "fido2-token -C"
if echo "$PIN2" | fido2-token -I -c "$FIDO_DEV" > /dev/null 2>&1; then fail "old PIN still works"; fi
ok "fido2-token -C changes the PIN (the old one is refused)"

echo "## resident credentials with UV (PIN), hmac-secret and largeBlobKey when advertised"
ext hmac-secret && H=-h || { H=; skip "fido2-cred/-assert -h: no hmac-secret in getInfo"; }
ext largeBlobKey && B=-b || { B=; skip "fido2-cred/-assert -b: no largeBlobKey in getInfo"; }
n=0
for type in es256 eddsa; do
    n=$((n + 1))
    mkcred r-$type rk.example "user$n"
    echo "$PIN" | fido2-cred -M -r -v $H $B -i r-$type.in -o r-$type.out "$FIDO_DEV" $type \
        || fail "fido2-cred -M -r -v $H $B $type"
    # -V reads the first 7 lines (the largeBlobKey, if any, comes 8th)
    head -n 7 r-$type.out > r-$type.att
    fido2-cred -V -v $H -i r-$type.att -o r-$type.ver $type || fail "fido2-cred -V -v $H $type"
    tail -n +2 r-$type.ver > r-$type.pem
    head -n 1 r-$type.ver > r-$type.id
    ok "fido2-cred -M -r -v${H:+ $H}${B:+ $B} $type, verified (UV signed${H:+, hmac-secret})"
done
# Discoverable: both credentials, newest first; each assertion verified with its key.
{ b64 32; echo rk.example; [ -n "$H" ] && b64 32; } > ga-r.in
echo "$PIN" | fido2-assert -G -r -v -p $H $B -i ga-r.in -o ga-r.out "$FIDO_DEV" || fail "fido2-assert -G -r -v"
per=5; [ -n "$H" ] && per=$((per + 1)); [ -n "$B" ] && per=$((per + 1))
[ "$(wc -l < ga-r.out)" -eq $((2 * per)) ] || { cat ga-r.out; fail "expected 2 assertions of $per lines"; }
head -n 4 ga-r.out > ga-r1.out
sed -n "$((per + 1)),$((per + 4))p" ga-r.out > ga-r2.out
fido2-assert -V -v -p $H -i ga-r1.out r-eddsa.pem eddsa || fail "first discoverable assertion (eddsa)"
fido2-assert -V -v -p $H -i ga-r2.out r-es256.pem es256 || fail "second discoverable assertion (es256)"
ok "fido2-assert -G -r -v -p${H:+ $H}${B:+ $B}: 2 assertions, newest first, each verified (UV, UP signed)"
if [ -n "$H" ]; then
    # The same salt gives the same secret with UV (hmac-secret's CredRandom with UV).
    echo "$PIN" | fido2-assert -G -r -v -p $H -i ga-r.in -o ga-r-again.out "$FIDO_DEV" || fail "hmac-secret again"
    [ "$(sed -n 6p ga-r.out)" = "$(sed -n 6p ga-r-again.out)" ] || fail "hmac-secret not deterministic"
    ok "fido2-assert -h: the same salt gives the same hmac-secret output"
fi
mkassert ga-pin rk.example "$(cat r-es256.id)"
echo "$PIN" | fido2-assert -G -t pin=true -i ga-pin.in -o ga-pin.out "$FIDO_DEV" || fail "fido2-assert -t pin=true"
fido2-assert -V -v -i ga-pin.out r-es256.pem es256 || fail "fido2-assert -t pin=true: no UV"
ok "fido2-assert -G -t pin=true (allowList): UV signed"

echo "## credential management: -I -c, -L -r, -L -k, -I -k -i, -S -c, -D -i"
echo "$PIN" | fido2-token -I -c "$FIDO_DEV" | tee meta.txt
grep -q "existing rk(s): 2" meta.txt || fail "-I -c: expected 2 resident credentials"
ok "fido2-token -I -c: 2 existing resident credentials"
echo "$PIN" | fido2-token -L -r "$FIDO_DEV" | tee rps.txt
grep -q "rk.example" rps.txt || fail "-L -r: RP not listed"
ok "fido2-token -L -r lists rk.example"
echo "$PIN" | fido2-token -L -k rk.example "$FIDO_DEV" | tee creds.txt
[ "$(wc -l < creds.txt)" -eq 2 ] || fail "-L -k: expected 2 credentials"
grep -q "$(cat r-es256.id)" creds.txt || fail "-L -k: es256 credential id missing"
ok "fido2-token -L -k rk.example lists both credentials"
echo "$PIN" | fido2-token -I -k rk.example -i "$(cat r-es256.id)" "$FIDO_DEV" > credinfo.txt || fail "-I -k -i"
tail -n +2 credinfo.txt | diff - r-es256.pem || fail "-I -k -i: public key differs from fido2-cred -V's"
ok "fido2-token -I -k -i: the same public key as fido2-cred -V extracted"
uid=$(sed -n 4p r-es256.in)
echo "$PIN" | fido2-token -S -c -i "$(cat r-es256.id)" -k "$uid" -n renamed -p "Renamed User" "$FIDO_DEV" \
    || fail "fido2-token -S -c"
echo "$PIN" | fido2-token -L -k rk.example "$FIDO_DEV" > creds2.txt
# -L -k prints: index, credential id, display name, user id, type, credProtect
grep "$(cat r-es256.id)" creds2.txt | grep -q "Renamed User" || { cat creds2.txt; fail "-S -c: not updated"; }
ok "fido2-token -S -c updates the user's name and display name"
echo "$PIN" | fido2-token -D -i "$(cat r-eddsa.id)" "$FIDO_DEV" || fail "fido2-token -D -i"
echo "$PIN" | fido2-token -L -k rk.example "$FIDO_DEV" > creds3.txt
[ "$(wc -l < creds3.txt)" -eq 1 ] || fail "-D -i: credential not deleted"
ok "fido2-token -D -i deletes one credential"

echo "## large blobs"
if opt largeBlobs; then
    b64 32 > lb.key; echo "large blob of vkey" > lb.in
    echo "$PIN" | fido2-token -S -b -k lb.key lb.in "$FIDO_DEV" || fail "-S -b -k"
    echo "$PIN" | fido2-token -G -b -k lb.key lb.out "$FIDO_DEV" || fail "-G -b -k"
    cmp lb.in lb.out || fail "-G -b: other bytes"
    echo "$PIN" | fido2-token -L -b "$FIDO_DEV" || fail "-L -b"
    echo "$PIN" | fido2-token -D -b -k lb.key "$FIDO_DEV" || fail "-D -b -k"
    if echo "$PIN" | fido2-token -G -b -k lb.key lb.out2 "$FIDO_DEV" 2>/dev/null; then fail "blob not deleted"; fi
    ok "fido2-token -S/-G/-L/-D -b: a large blob written, read back, listed, deleted"
else
    skip "fido2-token -S/-G/-L/-D -b: no largeBlobs option in getInfo"
fi

echo "## alwaysUv: -S -u / -D -u"
echo "$PIN" | fido2-token -S -u "$FIDO_DEV" || fail "fido2-token -S -u"
fido2-token -I "$FIDO_DEV" > info.txt
opt alwaysUv || fail "alwaysUv not on after -S -u"
if fido2-cred -M -q -i c-es256.in -o /dev/null "$FIDO_DEV" es256 2> auv.err; then
    fail "alwaysUv: a credential without UV was made"
fi
echo "$PIN" | fido2-cred -M -v -i c-es256.in -o auv.out "$FIDO_DEV" es256 || fail "alwaysUv: -v refused"
fido2-cred -V -v -i auv.out -o /dev/null es256 || fail "alwaysUv: UV not signed"
ok "fido2-token -S -u: alwaysUv on; makeCredential needs the PIN ($(tr '\n' ' ' < auv.err))"
echo "$PIN" | fido2-token -D -u "$FIDO_DEV" || fail "fido2-token -D -u"
fido2-token -I "$FIDO_DEV" > info.txt
opt noalwaysUv || fail "alwaysUv still on after -D -u"
fido2-cred -M -q -i c-es256.in -o /dev/null "$FIDO_DEV" es256 || fail "-D -u: a plain credential refused"
ok "fido2-token -D -u: alwaysUv off; a credential without UV works again"

echo "## -S -l (min PIN length), -S -m (RP IDs), -S -f (force change), -S -a (no ep)"
echo "$PIN" | fido2-token -S -l 6 "$FIDO_DEV" || fail "fido2-token -S -l 6"
fido2-token -I "$FIDO_DEV" > info.txt
grep -q "minpinlen: 6" info.txt || { grep -i pin info.txt; fail "-S -l: minPINLength not 6"; }
ok "fido2-token -S -l 6: minPINLength 6"
echo "$PIN" | fido2-token -S -m rk.example "$FIDO_DEV" || fail "fido2-token -S -m"
mkcred mpl rk.example mpl
echo "$PIN" | fido2-cred -M -r -v -i mpl.in -o mpl.out "$FIDO_DEV" es256 || fail "credential after -S -m"
ok "fido2-token -S -m rk.example accepted"
echo "$PIN" | fido2-token -S -f "$FIDO_DEV" || fail "fido2-token -S -f"
fido2-token -I "$FIDO_DEV" > info.txt
grep -q "pin change required: true" info.txt || { grep -i change info.txt; fail "-S -f: forcePINChange not set"; }
if echo "$PIN" | fido2-token -I -c "$FIDO_DEV" > /dev/null 2>&1; then fail "-S -f: the PIN still gives a token"; fi
printf '%s\n%s\n%s\n' "$PIN" "$PIN2" "$PIN2" | fido2-token -C "$FIDO_DEV" || fail "-C after -S -f"
echo "$PIN2" | fido2-token -I -c "$FIDO_DEV" > /dev/null || fail "new PIN after a forced change"
ok "fido2-token -S -f: forcePINChange until -C, then the new PIN works"
if echo "$PIN2" | fido2-token -S -a "$FIDO_DEV" 2> ep.err; then fail "-S -a: enterprise attestation enabled"; fi
ok "fido2-token -S -a (enterprise attestation) refused: vkey has no ep ($(tr '\n' ' ' < ep.err))"

echo "## U2F"
if grep -q "U2F_V2" info.txt; then
    mkcred u2f u2f.example u2f
    fido2-cred -M -u -q -i u2f.in -o u2f.out "$FIDO_DEV" es256 || fail "fido2-cred -M -u"
    fido2-cred -V -i u2f.out -o u2f.ver es256 || fail "fido2-cred -V (fido-u2f)"
    ok "fido2-cred -M -u: a U2F registration, verified"
else
    skip "fido2-cred/-assert -u: no U2F_V2 in getInfo versions"
fi

echo "## reset: detach, attach (a power-up), fido2-token -R within 10 s"
usbip detach -p 0 >/dev/null 2>&1 || fail "usbip detach"
i=0; while [ -e /sys/class/hidraw/hidraw0 ] && [ $i -lt 150 ]; do usleep 100000; i=$((i + 1)); done
usbip --tcp-port "$USBIP_PORT" attach -r "$USBIP_SERVER" -b "$USBIP_BUSID" || fail "usbip attach"
i=0; until ls /dev/hidraw* >/dev/null 2>&1 || [ $i -ge 150 ]; do usleep 100000; i=$((i + 1)); done
D=$(dev)
fido2-token -R "$D" || fail "fido2-token -R right after attach"
fido2-token -I "$D" > info.txt || fail "-I after reset"
grep -q "noclientPin" info.txt || fail "PIN still set after reset"
grep -q "minpinlen: 4" info.txt || fail "minPINLength not back to 4 after reset"
if fido2-assert -G -i a-es256.in -o /dev/null "$D" 2>/dev/null; then fail "a credential survived reset"; fi
ok "fido2-token -R after a re-attach: PIN, minPINLength and credentials gone"

echo "FIDO2_TOOLS_OK $checks checks, $skips skipped"

#!/bin/sh
# Runs inside run-in-vm's guest against a key started with --pin-file (PIN 4321abcd):
# libfido2 sees the PIN set, makes and uses a resident credential with UV (-v) using the
# PIN, lists and deletes resident credentials, and honours credProtect.
# The guest has no terminal: libfido2's readpassphrase() falls back to standard input.
PIN=4321abcd
fail() { echo "FAIL: $*"; exit 1; }
cd /tmp
echo "## fido2-token -I"
fido2-token -I "$FIDO_DEV" > info.txt || fail "fido2-token -I"
grep -E "version strings|options|pin protocols|pin retries" info.txt
grep -q "FIDO_2_1" info.txt || fail "no FIDO_2_1"
grep -q "clientPin" info.txt || fail "clientPin not set"
grep -q "pin retries: 8" info.txt || fail "pin retries"

n=0
for type in es256 eddsa; do
    n=$((n + 1))
    (head -c32 /dev/urandom | base64; echo vkey.example; echo "user$n"; head -c16 /dev/urandom | base64) > cred$n.in
    echo "## fido2-cred -M -r -v $type (PIN from stdin)"
    echo "$PIN" | fido2-cred -M -r -v -i cred$n.in -o cred$n.out "$FIDO_DEV" $type || fail "fido2-cred -M -v $type"
    fido2-cred -V -v -i cred$n.out -o cred$n.ver $type || fail "fido2-cred -V -v $type (UV flag)"
    echo "CRED_VERIFIED_UV $type"
    tail -n +2 cred$n.ver > pub$n.pem
done
(head -c32 /dev/urandom | base64; echo vkey.example) > a.in
echo "## fido2-assert -G -r -v (PIN from stdin)"
echo "$PIN" | fido2-assert -G -r -v -p -i a.in -o a.out "$FIDO_DEV" > /dev/null || fail "fido2-assert -G -r -v"
# Two resident credentials: the newest (eddsa) comes first.
head -n 5 a.out > a1.out
fido2-assert -V -v -p -i a1.out pub2.pem eddsa || fail "fido2-assert -V -v"
echo "ASSERTION_VERIFIED_UV"

echo "## fido2-token -L -r (list RPs)"
echo "$PIN" | fido2-token -L -r "$FIDO_DEV" | tee rps.txt
grep -q "vkey.example" rps.txt || fail "RP not listed"
echo "## fido2-token -L -k vkey.example (list credentials)"
echo "$PIN" | fido2-token -L -k vkey.example "$FIDO_DEV" | tee creds.txt
[ "$(wc -l < creds.txt)" -eq 2 ] || fail "expected 2 credentials"
id=$(head -n 1 creds.txt | awk '{print $2}')
echo "## fido2-token -D -i (delete $id)"
echo "$PIN" | fido2-token -D -i "$id" "$FIDO_DEV" || fail "fido2-token -D"
echo "$PIN" | fido2-token -L -k vkey.example "$FIDO_DEV" > creds2.txt
[ "$(wc -l < creds2.txt)" -eq 1 ] || fail "credential not deleted"
echo "CREDENTIAL_DELETED"

echo "## fido2-cred -M -r -v -c 3 (credProtect userVerificationRequired)"
(head -c32 /dev/urandom | base64; echo protect.example; echo cp; head -c16 /dev/urandom | base64) > cp.in
echo "$PIN" | fido2-cred -M -r -v -c 3 -i cp.in -o cp.out "$FIDO_DEV" es256 || fail "fido2-cred -c 3"
(head -c32 /dev/urandom | base64; echo protect.example) > cpa.in
if fido2-assert -G -r -i cpa.in -o cpa.out "$FIDO_DEV" < /dev/null 2> cpa.err; then
    fail "credProtect 3 credential used without UV"
fi
cat cpa.err
echo "$PIN" | fido2-assert -G -r -v -i cpa.in -o cpa.out "$FIDO_DEV" || fail "credProtect 3 with UV"
echo "CRED_PROTECT_OK"
echo "PIN_FLOWS_OK"

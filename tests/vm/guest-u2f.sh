#!/bin/sh
# Runs inside run-in-vm's guest: libfido2 over CTAP1/U2F (fido2-cred -M -u, fido2-assert
# -G -u, each verified with -V), and one credential used by both protocols: made over U2F
# then asserted over CTAP2, made over CTAP2 then asserted over U2F.
fail() { echo "FAIL: $*"; exit 1; }
cd /tmp
echo "## fido2-token -I"
fido2-token -I "$FIDO_DEV" > info.txt || fail "fido2-token -I"
grep -E "version strings" info.txt
grep -q "U2F_V2" info.txt || fail "getInfo has no U2F_V2"
n=0
for make in "-u" ""; do
    for assert in "-u" ""; do
        n=$((n + 1))
        user=$(head -c16 /dev/urandom | base64)
        (head -c32 /dev/urandom | base64; echo vkey.example; echo "user$n"; echo "$user") > cred$n.in
        echo "## fido2-cred -M $make es256"
        fido2-cred -M $make -i cred$n.in -o cred$n.out "$FIDO_DEV" es256 || fail "fido2-cred -M $make"
        fmt=$(sed -n 3p cred$n.out)
        echo "attestation format: $fmt"
        if [ -n "$make" ]; then
            [ "$fmt" = "fido-u2f" ] || fail "fido2-cred -M -u made a '$fmt' credential"
        fi
        fido2-cred -V -i cred$n.out -o cred$n.ver es256 || fail "fido2-cred -V ($fmt)"
        echo "CRED_VERIFIED ${make:-ctap2} $fmt"
        tail -n +2 cred$n.ver > pub$n.pem
        (head -c32 /dev/urandom | base64; echo vkey.example; head -1 cred$n.ver) > a$n.in
        for i in 1 2; do
            echo "## fido2-assert -G $assert ($i), credential made with ${make:-ctap2}"
            fido2-assert -G -p $assert -i a$n.in -o a$n.out "$FIDO_DEV" || fail "fido2-assert -G $assert"
            fido2-assert -V -p -i a$n.out pub$n.pem es256 || fail "fido2-assert -V $assert"
            echo "ASSERTION_VERIFIED made=${make:-ctap2} asserted=${assert:-ctap2}"
        done
    done
done
echo "U2F_OK $n"

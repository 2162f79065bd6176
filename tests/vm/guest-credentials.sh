#!/bin/sh
# Runs inside run-in-vm's guest: libfido2's fido2-cred / fido2-assert make and verify
# credentials and assertions with vkey through vhci-hcd → usbhid → hidraw.
fail() { echo "FAIL: $*"; exit 1; }
cd /tmp
n=0
for type in es256 eddsa; do
    for rk in "" "-r"; do
        n=$((n + 1))
        user=$(head -c16 /dev/urandom | base64)
        # fido2-cred -M input: client data hash, rp id, user name, user id (base64)
        (head -c32 /dev/urandom | base64; echo vkey.example; echo "user$n"; echo "$user") > cred$n.in
        echo "## fido2-cred -M $rk $type"
        fido2-cred -M $rk -i cred$n.in -o cred$n.out "$FIDO_DEV" $type || fail "fido2-cred -M $rk $type"
        fido2-cred -V -i cred$n.out -o cred$n.ver $type || fail "fido2-cred -V $rk $type"
        echo "CRED_VERIFIED $type ${rk:-non-resident}"
        tail -n +2 cred$n.ver > pub$n.pem
        if [ -n "$rk" ]; then
            # Resident: no credential ID in the input; the key finds it by RP ID.
            (head -c32 /dev/urandom | base64; echo vkey.example) > a$n.in
        else
            (head -c32 /dev/urandom | base64; echo vkey.example; head -1 cred$n.ver) > a$n.in
        fi
        for i in 1 2; do
            echo "## fido2-assert -G $rk ($i)"
            fido2-assert -G -p $rk -i a$n.in -o a$n.out "$FIDO_DEV" || fail "fido2-assert -G $rk $type"
            fido2-assert -V -p -i a$n.out pub$n.pem $type || fail "fido2-assert -V $rk $type"
            echo "ASSERTION_VERIFIED $type ${rk:-non-resident}"
        done
    done
done
echo "## fido2-token -I"
fido2-token -I "$FIDO_DEV" | grep -E "version strings|options|algorithms" 
echo "CREDENTIALS_OK $n"

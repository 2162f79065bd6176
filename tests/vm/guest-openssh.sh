#!/bin/sh
# OpenSSH security keys against vkey through the real kernel, inside the browser image
# (run-browser-in-vm -- CMD: Debian bookworm, OpenSSH 9.2, its libfido2), in one boot,
# on a key started with --pin-file (PIN 4321abcd) and --presence auto:
#   ssh-keygen -t ecdsa-sk / ed25519-sk, with and without -O resident, -O verify-required,
#   -O no-touch-required; ssh-keygen -Y sign / -Y verify (allowed_signers with the same
#   options); ssh-keygen -K (resident keys loaded back, then used); ssh logins to an sshd
#   on 127.0.0.1:2222 in the guest with a plain and a verify-required key.
# No tty in the guest: the PIN goes through SSH_ASKPASS with SSH_ASKPASS_REQUIRE=force.
PIN=4321abcd
checks=0
fail() { echo "FAIL: $*"; [ -f /tmp/sshd.log ] && tail -n 20 /tmp/sshd.log; exit 1; }
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
W=/tmp/ssh-test
mkdir -p $W && cd $W || fail "no work directory"
printf '#!/bin/sh\necho "askpass: $*" >> %s/askpass.log\necho %s\n' "$W" "$PIN" > askpass.sh
chmod 700 askpass.sh
export SSH_ASKPASS=$W/askpass.sh SSH_ASKPASS_REQUIRE=force DISPLAY=none
ssh -V 2>&1
fido2-token -I "$FIDO_DEV" | grep -E "^(version strings|extension strings|options):"

# NAME TYPE [OPTIONS...]: a key pair in $W/NAME(.pub), the private half a key handle.
gen() {
    name=$1 type=$2; shift 2
    ssh-keygen -q -t "$type" -N '' -C "$name@vkey" -f "$W/$name" "$@" < /dev/null > "$name.gen" 2>&1 \
        || { cat "$name.gen"; fail "ssh-keygen -t $type $* ($name)"; }
    grep -q "^sk-" "$W/$name.pub" || fail "$name.pub is not a security-key public key"
    ok "ssh-keygen -t $type${*:+ $*} → $(cut -d' ' -f1 "$W/$name.pub")"
}
gen ecdsa ecdsa-sk
gen ed25519 ed25519-sk
gen ecdsa-uv ecdsa-sk -O verify-required
gen ecdsa-nt ecdsa-sk -O no-touch-required
gen ecdsa-rk ecdsa-sk -O resident -O application=ssh:vkey-ecdsa -O user=alice
gen ed25519-rk ed25519-sk -O resident -O application=ssh:vkey-ed25519-touch
gen ed25519-rk-uv ed25519-sk -O resident -O verify-required -O application=ssh:vkey-ed25519
grep -q "askpass: Enter PIN" askpass.log || fail "no PIN asked for the resident/verify-required keys"

echo "## ssh-keygen -Y sign / -Y verify"
echo "signed by vkey through OpenSSH" > msg
# NAME: sign msg with NAME, verify it, and refuse a changed msg. (allowed_signers has no
# touch or UV policy in OpenSSH 9.2; the flags are checked by sshd below.)
sign_verify() {
    name=$1
    rm -f msg.sig
    ssh-keygen -Y sign -f "$W/$name" -n file msg < /dev/null > "$name.sign" 2>&1 \
        || { cat "$name.sign"; fail "ssh-keygen -Y sign with $name"; }
    echo "$name@vkey $(cut -d' ' -f1,2 "$W/$name.pub")" > allowed_signers
    ssh-keygen -Y verify -f allowed_signers -I "$name@vkey" -n file -s msg.sig < msg > "$name.verify" 2>&1 \
        || { cat "$name.verify"; fail "ssh-keygen -Y verify for $name"; }
    echo "tampered" | ssh-keygen -Y verify -f allowed_signers -I "$name@vkey" -n file -s msg.sig \
        > /dev/null 2>&1 && fail "$name: a changed message verified"
    ok "ssh-keygen -Y sign with $name, -Y verify: $(head -n 1 "$name.verify" | cut -d' ' -f1-7); a changed message: refused"
}
sign_verify ecdsa
sign_verify ed25519
sign_verify ecdsa-uv
sign_verify ecdsa-rk
sign_verify ed25519-rk
sign_verify ed25519-rk-uv
sign_verify ecdsa-nt

echo "## ssh-keygen -K: the resident keys come back from the key"
mkdir -p "$W/loaded" && cd "$W/loaded" || fail "cd loaded"
ssh-keygen -K -N '' < /dev/null > ../K.out 2>&1 || { cat ../K.out; fail "ssh-keygen -K"; }
cat ../K.out
ls
[ "$(ls ./*.pub | wc -l)" -eq 3 ] || fail "ssh-keygen -K: expected 3 resident keys"
for name in ecdsa-rk ed25519-rk ed25519-rk-uv; do
    blob=$(cut -d' ' -f2 "$W/$name.pub")
    grep -l -- "$blob" ./*.pub > /dev/null || fail "ssh-keygen -K: $name not among the loaded keys"
done
ok "ssh-keygen -K loads the 3 resident keys (the same public keys)"
loaded=$(grep -l -- "$(cut -d' ' -f2 "$W/ecdsa-rk.pub")" ./*.pub)
cd "$W" || fail "cd"
cp "loaded/${loaded#./}" ecdsa-loaded.pub && cp "loaded/$(basename "${loaded%.pub}")" ecdsa-loaded
sign_verify ecdsa-loaded

echo "## ssh login to sshd on 127.0.0.1:2222 with the security keys"
ssh-keygen -A > /dev/null || fail "ssh-keygen -A (host keys)"
mkdir -p /run/sshd
{
    cut -d' ' -f1,2 ecdsa.pub
    echo "verify-required $(cut -d' ' -f1,2 ed25519-rk-uv.pub)"
    cut -d' ' -f1,2 ecdsa-nt.pub
} > authorized_keys
/usr/sbin/sshd -p 2222 -o ListenAddress=127.0.0.1 -o AuthorizedKeysFile=$W/authorized_keys \
    -o StrictModes=no -o UsePAM=no -o PermitRootLogin=prohibit-password \
    -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o LogLevel=DEBUG1 -E /tmp/sshd.log \
    || fail "sshd did not start"
i=0; until grep -q ":08AE " /proc/net/tcp || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
# The authenticator flags of the last accepted signature, as sshd logs them (0x01 UP, 0x04 UV).
last_flags() { grep -o "sk_flags = 0x[0-9a-f]*" /tmp/sshd.log | tail -n 1 | cut -d' ' -f3; }
login() {  # NAME: log in with that key, run a command
    ssh -i "$W/$1" -p 2222 -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o PasswordAuthentication=no \
        -o KbdInteractiveAuthentication=no -o ConnectTimeout=60 -o LogLevel=ERROR \
        root@127.0.0.1 "echo logged-in-with-$1" < /dev/null > "login-$1.out" 2>&1
}
login ecdsa || { cat login-ecdsa.out; fail "ssh login with ecdsa-sk"; }
grep -q "logged-in-with-ecdsa" login-ecdsa.out || fail "ssh login with ecdsa-sk: no output"
[ "$(last_flags)" = 0x01 ] || fail "ecdsa-sk login: sk_flags $(last_flags), expected 0x01 (UP)"
ok "ssh login with the ecdsa-sk key (sshd: sk_flags 0x01, UP)"
login ed25519-rk-uv || { cat login-ed25519-rk-uv.out; fail "ssh login with the verify-required ed25519-sk key"; }
grep -q "logged-in-with-ed25519-rk-uv" login-ed25519-rk-uv.out || fail "ssh login (verify-required): no output"
[ "$(last_flags)" = 0x05 ] || fail "verify-required login: sk_flags $(last_flags), expected 0x05 (UP, UV)"
ok "ssh login with the resident verify-required ed25519-sk key (sshd demands UV: sk_flags 0x05)"
if login ed25519; then fail "a key missing from authorized_keys logged in"; fi
ok "ssh login with a key not in authorized_keys: refused"
if login ecdsa-nt; then fail "an untouched signature logged in without no-touch-required"; fi
grep -q "user presence (authenticator touch) requirement not met" /tmp/sshd.log || fail "sshd: no UP refusal logged"
sed -i "s|^$(cut -d' ' -f1 ecdsa-nt.pub) $(cut -d' ' -f2 ecdsa-nt.pub)|no-touch-required &|" authorized_keys
login ecdsa-nt || { cat login-ecdsa-nt.out; fail "ssh login with no-touch-required"; }
[ "$(last_flags)" = 0x00 ] || fail "no-touch-required login: sk_flags $(last_flags), expected 0x00"
ok "ssh login with the no-touch-required key: refused by sshd until authorized_keys says no-touch-required"
kill "$(cat /run/sshd.pid 2>/dev/null)" 2>/dev/null
echo "OPENSSH_OK $checks checks"

#!/usr/bin/env python3
"""Sums `perf script` samples of a vkey server into cost categories, by the first rule
(in order) that matches any frame of the sample's call stack. Used by profile-server.sh.

    perf script -i FILE.data | benches/perf-categories.py [US_PER_OP]

With US_PER_OP (the server CPU per operation that vkey bench measured) each share is
also given in microseconds per operation.
"""
import re
import sys

# (category, regex on a frame's symbol). Order matters: the first rule that matches any
# frame wins, so specific work comes before the generic plumbing that calls it.
RULES = [
    ("P-256 sign (ECDSA, RFC 6979 nonce + k*G + inversion)", r"ecdsa::hazmat::sign_prehashed"),
    ("P-256 key generation (new credential key)", r"CredentialKey::generate"),
    ("P-256 public key from a secret (SigningKey::from_slice: a k*G)",
     r"PublicKey<C>::from_secret_scalar|SigningKey<C>::from_slice|from_secret_scalar"),
    ("P-256 ECDH (PIN key agreement)", r"ecdh::diffie_hellman|KeyAgreement::decapsulate|KeyAgreement::new"),
    ("Ed25519", r"ed25519"),
    ("AES-GCM credential ID (seal/open)", r"vkey::crypto::seal|aes_gcm"),
    ("PIN protocol (HMAC, AES-CBC, HKDF)", r"vkey::pin::"),
    ("store (files, fsync, counter log)", r"vkey::store::"),
    ("getInfo response built", r"vkey::ctap::get_info"),
    ("CBOR decode/encode (ciborium)", r"ciborium"),
    ("rest of the CTAP core", r"vkey::ctap::"),
    ("CTAPHID framing (vkey::ctaphid)", r"vkey::ctaphid::"),
    ("authenticator thread hand-off (channel, futex wake/wait)",
     r"mpmc|futex|std::sync::|crossbeam|Notify|notify_one|unpark|Unparker|sync::oneshot|sync::mpsc"),
    ("TCP send (RET_SUBMIT writes)", r"tcp_sendmsg|__send|sendto|TcpStream as std::io::Write>::write|poll_write|libc_write|sys_write"),
    ("TCP receive (CMD_SUBMIT reads)", r"tcp_recvmsg|recvfrom|__recv|poll_read|libc_read|sys_read|read_urb_command"),
    ("epoll / tokio park and wake-up", r"epoll|park|Driver::turn|schedule|wake"),
    ("USB/IP session (vkey::usbip)", r"vkey::usbip::"),
]


def main() -> None:
    us_per_op = float(sys.argv[1]) if len(sys.argv) > 1 else None
    compiled = [(name, re.compile(rx)) for name, rx in RULES]
    totals: dict[str, int] = {}
    n = 0
    frames: list[str] = []

    def flush() -> None:
        nonlocal n
        if not frames:
            return
        n += 1
        cat = "other (kernel scheduler, perf, libc)"
        for name, rx in compiled:
            if any(rx.search(f) for f in frames):
                cat = name
                break
        totals[cat] = totals.get(cat, 0) + 1
        frames.clear()

    for line in sys.stdin:
        if not line.strip():
            flush()
        elif line.startswith((" ", "\t")):
            parts = line.strip().split(" ", 1)
            frames.append(parts[1] if len(parts) > 1 else parts[0])
        else:
            flush()
    flush()
    if n == 0:
        print("no samples")
        return
    for cat, c in sorted(totals.items(), key=lambda kv: -kv[1]):
        share = 100.0 * c / n
        extra = f"  ~{us_per_op * c / n:6.0f} µs/op" if us_per_op else ""
        print(f"{share:6.1f}%{extra}  {cat}")
    print(f"({n} samples)")


if __name__ == "__main__":
    main()

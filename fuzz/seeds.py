#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from fixtures/ (no dependencies beyond Python 3).

    fuzz/seeds.py OUT_DIR     writes OUT_DIR/<target>/<name> for the targets it knows

A target this script does not know simply starts from an empty corpus.
"""
import hashlib
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")


def ctap_requests():
    """CTAP messages: the recorded requests and every request of errors.tsv."""
    out = []
    ctap = os.path.join(FIXTURES, "ctap")
    for name in sorted(os.listdir(ctap)):
        if name.endswith(".request.bin"):
            with open(os.path.join(ctap, name), "rb") as f:
                out.append(f.read())
    with open(os.path.join(ctap, "errors.tsv")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) > 1 and cols[1]:
                out.append(bytes.fromhex(cols[1]))
    return out


def fragment(cid, cmd, payload):
    """A CTAPHID message as 64-byte reports (§11.2.4)."""
    reports = [struct.pack(">IBH", cid, cmd | 0x80, len(payload)) + payload[:57]]
    rest, seq = payload[57:], 0
    while rest:
        reports.append(struct.pack(">IB", cid, seq) + rest[:59])
        rest, seq = rest[59:], seq + 1
    return [r.ljust(64, b"\0") for r in reports]


def init(cid=0xFFFFFFFF, nonce=b"12345678"):
    return fragment(cid, 0x06, nonce)


def ctaphid_sessions(requests):
    """(clock step, report) series: INIT, then each request as CBOR on channel 1; also
    PING, WINK, LOCK, CANCEL and a message left incomplete past the timeout."""
    def series(reports, step=0):
        return b"".join(bytes([step]) + r for r in reports)

    out = []
    for req in requests:
        out.append(series(init() + fragment(1, 0x10, req)))
    out.append(series(init() + fragment(1, 0x01, bytes(range(256)) * 4)))
    out.append(series(init() + fragment(1, 0x08, b"") + fragment(1, 0x04, b"\x05")))
    out.append(series(init() + fragment(1, 0x10, b"\x0b") + fragment(1, 0x11, b""), 11))
    incomplete = fragment(1, 0x01, b"x" * 200)[:2]
    out.append(series(init() + incomplete, 0) + series(fragment(1, 0x01, b"y"), 60))
    return out


def usbip_enumeration():
    """OP_REQ_IMPORT of 1-1, then the control requests Linux sends on attach (as
    src/usbip/client.rs `enumerate` does), then interrupt OUT/IN with CTAPHID INIT and
    getInfo, an unlink, and an OP_REQ_DEVLIST alone."""
    seq = [0]

    def submit(direction, ep, setup=b"\0" * 8, length=0, data=b""):
        seq[0] += 1
        return struct.pack(">10I", 1, seq[0], 0x00010002, direction, ep, 0, length, 0, 0, 0) + setup + data

    def setup(rt, req, value, index, length):
        return struct.pack("<BBHHH", rt, req, value, index, length)

    s = struct.pack(">HHI", 0x0111, 0x8003, 0) + b"1-1".ljust(32, b"\0")
    for value, length in [(0x0100, 8), (0x0100, 18), (0x0200, 9), (0x0200, 41), (0x0300, 255),
                          (0x0301, 255), (0x0302, 255), (0x0303, 255)]:
        index = 0x0409 if value > 0x0300 else 0
        s += submit(1, 0, setup(0x80, 6, value, index, length), length)
    s += submit(0, 0, setup(0x00, 9, 1, 0, 0))
    s += submit(0, 0, setup(0x21, 0x0A, 0, 0, 0))
    s += submit(1, 0, setup(0x81, 6, 0x2200, 0, 34), 34)
    s += submit(0, 0, setup(0x21, 0x09, 0x0200, 0, 64), 64, init()[0])
    for r in init() + fragment(1, 0x10, b"\x04"):
        s += submit(0, 1, length=64, data=r)
    s += submit(1, 1, length=64)
    s += struct.pack(">6I", 2, 99, 0x00010002, 0, 0, seq[0]) + b"\0" * 24
    devlist = struct.pack(">HHI", 0x0111, 0x8005, 0)
    return [s, devlist]


def u2f_apdus():
    """u2f_apdu: mode 0 + each APDU of fixtures/u2f/apdus.tsv; mode 1 (register, then
    authenticate with the key handle) in each control byte and encoding, with the key
    handle changed and under another application."""
    out = []
    with open(os.path.join(FIXTURES, "u2f", "apdus.tsv")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            out.append(b"\x00" + bytes.fromhex(cols[1]))
    app, challenge = hashlib.sha256(b"https://example.com").digest(), bytes(range(32))
    for control in (0x03, 0x07, 0x08, 0x05):
        for flags, at, xor in ((0, 0, 0), (2, 0, 0), (6, 0, 0), (1, 0, 0), (0, 63, 1)):
            out.append(b"\x01" + app + bytes([control]) + challenge + bytes([flags, at, xor]))
    return out


def large_blob_scripts(requests):
    """large_blobs: scripts (see fuzz/src/bin/large_blobs.rs). Array contents are the
    CTAP requests of fixtures/ctap/ (any bytes do; these are real CBOR)."""
    u16 = lambda v: struct.pack(">H", v)
    get = lambda off, n, wide=0: bytes([0, wide]) + u16(off) + u16(n)
    def array(payload, chunk, corrupt=1, auth=0):
        return bytes([1]) + u16(len(payload)) + u16(chunk) + bytes([corrupt, auth]) + payload[:2048]
    def fragment(how, size, data, offset=None, length=None, auth=0):
        b = bytes([3, how])
        if offset is not None:
            b += u16(offset)
        b += u16(size) + data[: min(size, 256)]
        if length is not None:
            b += u16(length)
        return b + bytes([auth])
    other, power = bytes([5]), bytes([7, 0])
    advance = lambda quarter_seconds: bytes([6, quarter_seconds])
    payload = b"".join(requests)[:5000]
    lb = [r for r in requests if r[:1] == b"\x0c"]
    out = []
    for head in (0, 1, 3):  # unprotected; PIN + protocol 2; PIN + protocol 1
        out.append(bytes([head]) + get(0, 64) + array(lb[0] if lb else b"\x80", 7) + get(0, 1024))
        out.append(bytes([head]) + array(payload, 4000) + get(0, 7545) + get(4000, 7545))
        out.append(bytes([head]) + array(payload[:300], 100, corrupt=0) + get(0, 64))
        out.append(bytes([head]) + fragment(0x04, 10, payload, length=100) + other + fragment(0, 10, payload))
        out.append(bytes([head]) + fragment(0x04, 10, payload, length=100) + advance(121) + fragment(0, 10, payload))
        out.append(bytes([head]) + fragment(0x04, 10, payload, length=100) + power + fragment(0, 10, payload))
        out.append(bytes([head]) + array(payload[:64], 16, auth=4) + array(payload[:64], 16, auth=5))
        out.append(bytes([head]) + advance(200) + array(payload[:64], 64) + get(3, 9, 1))
    return out


def store_files():
    """store_file: edits of the format-3 store the target builds (first byte even: see
    fuzz/src/bin/store_file.rs for the edit list), and the format-2 fixtures to migrate
    (first byte odd: bit 1 = the counter log exists, u16 length, vkey-store.cbor, log)."""
    TRUNCATE, FLIP, APPEND, APPEND_COPY, FORGE_RECORD, FORGE_RUN, FORGE_HEADER = 0, 1, 2, 6, 7, 8, 9
    FLIP_KEY, REMOVE_KEY = 11, 12
    out = [b"\0", b"\2"]
    for i in range(32):  # positions: record i of the base, then a signed u16 offset
        out.append(bytes([0, TRUNCATE, i, 0, 0]))
        out.append(bytes([0, TRUNCATE, i, 0, 25]))
        out.append(bytes([0, FLIP, i, 0, 4, 0x01]))
        out.append(bytes([0, FLIP, i, 0, 40, 0x80]))
        out.append(bytes([0, APPEND_COPY, i, 0, 0, 0x00, 0x40]))
        # A record header with a correct check claiming the next sequence numbers.
        out.append(bytes([0, FORGE_RECORD, i, 0, 0, 0, 0, 60, 0, i, 0, 0, 1, 0]))
    out.append(bytes([0, APPEND, 20]) + bytes(range(20)))
    out.append(bytes([0, FLIP_KEY, 9, 1]))
    out.append(bytes([0, REMOVE_KEY]))
    out.append(bytes([0, FORGE_HEADER, 40, 1, 1]))  # kdf: Argon2id, checksum redone
    # 4 KiB past the last record, forged headers every 20 bytes each claiming to run to
    # the end of the file (the engine once spent minutes on such a tail): 16, and as many
    # as the target lets the file grow.
    out.append(bytes([0, FORGE_RUN, 20, 0x10, 0, 0, 16, 20, 0, 100]))
    out.append(bytes([0, FORGE_RUN, 20, 0x10, 0, 0xFF, 0xFF, 20, 0, 100]))
    for d in ["store-v2/store", "store/v0.1.0"]:
        with open(os.path.join(FIXTURES, d, "vkey-store.cbor"), "rb") as f:
            cbor = f.read()
        with open(os.path.join(FIXTURES, d, "vkey-counters.log"), "rb") as f:
            log = f.read()
        head = struct.pack(">H", len(cbor)) + cbor
        out += [b"\3" + head + log, b"\1" + head, b"\3" + head + log[:-7]]
    return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "seeds")
    requests = ctap_requests()
    corpora = {
        "ctap_request": requests,
        "ctaphid_reassembly": ctaphid_sessions(requests),
        "usbip_commands": usbip_enumeration(),
        "u2f_apdu": u2f_apdus(),
        "large_blobs": large_blob_scripts(requests),
        "store_file": store_files(),
    }
    for target, inputs in corpora.items():
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for data in inputs:
            with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
                f.write(data)
        print(f"{target}: {len(inputs)} seeds")


if __name__ == "__main__":
    main()

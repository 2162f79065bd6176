#!/usr/bin/env python3
"""Drive a running vkey through its control interface, the way a test of a relying
party would: add a credential, sign with it over USB, switch user verification off,
and watch the key's events.

    vkey serve --ephemeral --uv &            # prints "control socket: PATH"
    VKEY_CONTROL=PATH python3 examples/control_demo.py            # a key attached here (hidraw)
    VKEY_CONTROL=PATH python3 examples/control_demo.py --usbip 127.0.0.1:3240   # or over USB/IP

Needs python-fido2 and cryptography (pip install fido2). The control client below is
the standard library only: HTTP/1.1 + JSON over the Unix socket.
"""
import argparse
import base64
import http.client
import json
import os
import socket
import sys
import threading
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Conn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("vkey", timeout=30)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)


def call(sock, method, route, body=None):
    c = Conn(sock)
    c.request(method, route, body=json.dumps(body) if body is not None else None)
    r = c.getresponse()
    answer = json.loads(r.read() or b"null")
    if r.status >= 300:
        raise RuntimeError(f"{method} {route}: HTTP {r.status}: {answer}")
    return answer


def watch_events(sock, busid, seen):
    """Reads the Server-Sent Events stream into `seen` (a list of event dicts)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(f"GET /v1/keys/{busid}/events HTTP/1.1\r\nHost: vkey\r\n\r\n".encode())
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                seen.append(json.loads(line[5:]))


def open_device(usbip):
    if usbip:
        host, port = usbip.rsplit(":", 1)
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
        from usbip_hid import open_device as usbip_device

        return usbip_device(host, int(port), "1-1")
    from fido2.hid import CtapHidDevice

    devs = list(CtapHidDevice.list_devices())
    if not devs:
        sys.exit("no FIDO device found (attach the key, or give --usbip HOST:PORT)")
    return devs[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--usbip", help="talk to the key over USB/IP at HOST:PORT instead of a local hidraw")
    ap.add_argument("--control", default=os.environ.get("VKEY_CONTROL"), help="the control socket (VKEY_CONTROL)")
    args = ap.parse_args()
    if not args.control:
        sys.exit("give --control PATH or VKEY_CONTROL (vkey serve prints it)")
    key = call(args.control, "GET", "/v1/keys")[0]
    busid = key["busId"]
    print(f"key {busid}: presence {key['presence']}, PIN set {key['pinSet']}, built-in UV {key['isUserVerified']}")
    seen = []
    threading.Thread(target=watch_events, args=(args.control, busid, seen), daemon=True).start()
    time.sleep(0.3)

    # 1. Add a credential: our own P-256 key, as Chrome's WebAuthn.addCredential takes it.
    private = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    cred_id = os.urandom(32)
    call(args.control, "POST", f"/v1/keys/{busid}/credentials", {
        "credentialId": b64(cred_id), "isResidentCredential": True, "rpId": "demo.example",
        "privateKey": b64(pkcs8), "userHandle": b64(b"demo-user"), "userName": "demo", "signCount": 0,
    })
    print("added credential", b64(cred_id))

    # 2. The key signs with it over USB; the signature verifies with our public key.
    dev = open_device(args.usbip)
    ctap = Ctap2(dev)
    cdh = os.urandom(32)
    a = ctap.get_assertion("demo.example", cdh, [{"type": "public-key", "id": cred_id}])
    private.public_key().verify(a.signature, bytes(a.auth_data) + cdh, ec.ECDSA(hashes.SHA256()))
    print("assertion verified with the imported key, signCount", a.auth_data.counter)

    # 3. Switch built-in user verification off: the next UV fails.
    if key["isUserVerified"] is not None:
        call(args.control, "POST", f"/v1/keys/{busid}/user-verified", {"isUserVerified": False})
        try:
            ClientPin(ctap).get_uv_token(ClientPin.PERMISSION.GET_ASSERTION, "demo.example")
            sys.exit("UV passed although it was switched off")
        except CtapError as e:
            print("with isUserVerified false, UV fails:", e.code.name)
        call(args.control, "POST", f"/v1/keys/{busid}/user-verified", {"isUserVerified": True})
    dev.close()

    # 4. What the key reported meanwhile.
    deadline = time.monotonic() + 10
    wanted = {"credentialAdded", "credentialAsserted", "ctapRequest", "ctapResponse"}
    while time.monotonic() < deadline and not wanted <= {e["type"] for e in seen}:
        time.sleep(0.05)
    for e in seen:
        detail = e.get("command") or e.get("credential", {}).get("rpId") or ""
        print(f"event {e['type']} {detail} {e.get('status', '')}".rstrip())
    missing = wanted - {e["type"] for e in seen}
    if missing:
        sys.exit(f"events missing: {sorted(missing)}")
    print("DEMO OK")


if __name__ == "__main__":
    main()

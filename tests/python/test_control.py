"""The control interface (issue 9) over its Unix socket, with python-fido2 over USB/IP
checking what the key then does: every route and its errors, imported and exported
credentials whose signatures verify, presence switched at run time, UV result, override
bits, replug, several keys, the peer uid rule, and the event stream without secrets."""
import os
import stat
import subprocess
import sys
import threading
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin
from fido2.webauthn import AuthenticatorData

from control_client import Control, ControlError, EventStream, b64, unb64
from fido_helpers import fido_client, pin_file

ERR = CtapError.ERR
RP = "example.com"
PIN = "4321abcd"
HERE = os.path.dirname(os.path.abspath(__file__))


def pkcs8(key):
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def verify(public_key, signature, auth_data, cdh):
    msg = bytes(auth_data) + cdh
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, msg, ec.ECDSA(hashes.SHA256()))
    else:
        public_key.verify(signature, msg)


def ga(ctap, cred_id=None, rp=RP, **kw):
    cdh = os.urandom(32)
    allow = [{"type": "public-key", "id": cred_id}] if cred_id else None
    return cdh, ctap.get_assertion(rp, cdh, allow, **kw)


def mc(ctap, rk=False, user=b"user-1", rp=RP, options=None, **kw):
    opts = dict(options or {})
    if rk:
        opts["rk"] = True
    return ctap.make_credential(
        os.urandom(32),
        {"id": rp, "name": "Example"},
        {"id": user, "name": "alice", "displayName": "Alice"},
        [{"type": "public-key", "alg": -7}],
        options=opts or None,
        **kw,
    )


def import_body(key, cred_id, resident=True, **extra):
    body = {
        "credentialId": b64(cred_id),
        "isResidentCredential": resident,
        "rpId": RP,
        "privateKey": b64(pkcs8(key)),
        "userHandle": b64(b"imported-user"),
        "userName": "imported",
        "signCount": 41,
    }
    body.update(extra)
    return body


def expect_status(status, fn, *a, **kw):
    with pytest.raises(ControlError) as e:
        fn(*a, **kw)
    assert e.value.status == status, e.value
    assert isinstance(e.value.body, dict) and e.value.body.get("error"), e.value.body
    return e.value.body["error"]


def test_keys_route_and_errors_change_nothing(vkey):
    c = vkey.control()
    keys = c.get("/v1/keys")
    assert len(keys) == 1
    k = keys[0]
    assert k["busId"] == "1-1" and k["aaguid"] == "8fc78583-dabb-4ce9-81c2-93b4322ab072"
    assert k["options"]["rk"] is True and k["pinSet"] is False and k["pinRetries"] == 8
    assert k["presence"] == "auto" and k["attached"] is False and k["uvRetries"] is None
    # Unknown key / credential / route → 404 with {error}.
    for route in ("/v1/keys/9-9", "/v1/keys/9-9/credentials", "/v1/nothing"):
        status, body = c.raw("GET", route)
        assert status == 404 and body["error"], (route, body)
    key = ec.generate_private_key(ec.SECP256R1())
    good = import_body(key, b"cred-1")
    bad_bodies = [
        ("{not json", 400, "bad JSON"),
        (dict(good, credentialId="***"), 400, "credentialId"),
        (dict(good, privateKey="@@"), 400, "privateKey"),
        # Wrong key type: an RSA-like blob and a P-384 key are not P-256 / Ed25519.
        (dict(good, privateKey=b64(pkcs8(ec.generate_private_key(ec.SECP384R1())))), 400, "PKCS#8"),
        (dict(good, privateKey=b64(b"\x30\x03\x02\x01\x00")), 400, "PKCS#8"),
        (dict(good, credentialId=b64(os.urandom(129))), 400, "128"),
        (dict(good, unknownField=1), 400, "unknown field"),
        (dict(good, backupState=True, backupEligibility=False), 400, "backupState"),
        ({k: v for k, v in good.items() if k != "rpId"}, 400, "rpId"),
    ]
    for body, status, needle in bad_bodies:
        st, answer = c.raw("POST", "credentials", body)
        assert st == status and needle in answer["error"], (body, st, answer)
    assert c.get("credentials") == [], "nothing changed"
    c.post("credentials", good)
    st, answer = c.raw("POST", "credentials", good)
    assert st == 409 and "exists" in answer["error"]
    assert len(c.get("credentials")) == 1
    assert expect_status(404, c.delete, "credentials/" + b64(b"no-such-id"))
    assert expect_status(404, c.post, "credentials/" + b64(b"no-such-id") + "/properties", {"backupState": True})
    assert expect_status(400, c.post, "presence", {"mode": "sometimes"})
    assert expect_status(400, c.post, "presence", {"mood": "auto"})
    assert expect_status(409, c.post, "user-verified", {"isUserVerified": False})  # no --uv
    assert expect_status(409, c.post, "presence/approve")
    assert expect_status(400, c.post, "pin", {"pin": "12"})  # policy
    assert c.get("")["pinSet"] is False
    assert expect_status(400, c.post, "response-override-bits", {"isBadUV": "yes"})
    assert c.get("")["responseOverrideBits"] == {"isBogusSignature": False, "isBadUV": False, "isBadUP": False}
    status, _ = c.raw("PUT", "credentials")
    assert status == 405


def test_imported_credential_signs_assertions_over_usbip(vkey):
    c = vkey.control()
    dev = vkey.device()
    ctap = Ctap2(dev)
    for key, resident, cid in [
        (ec.generate_private_key(ec.SECP256R1()), True, b"p256-imported"),
        (ed25519.Ed25519PrivateKey.generate(), False, os.urandom(100)),
    ]:
        added = c.post("credentials", import_body(key, cid, resident))
        assert added["credentialId"] == b64(cid) and added["signCount"] == 41
        assert added["algorithm"] == ("ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "EdDSA")
        cdh, a = ga(ctap, cid)
        assert a.credential["id"] == cid
        assert a.auth_data.counter == 42, "signCount 41 was imported; the next assertion says 42"
        verify(key.public_key(), a.signature, a.auth_data, cdh)
        if resident:
            cdh, a = ga(ctap)  # discoverable: found without an allowList
            assert a.credential["id"] == cid and a.user["id"] == b"imported-user"
            verify(key.public_key(), a.signature, a.auth_data, cdh)
        else:
            with pytest.raises(CtapError) as e:
                ga(ctap, None, rp="other.example")
            assert e.value.code == ERR.NO_CREDENTIALS
        shown = c.get("credentials/" + b64(cid))
        back = serialization.load_der_private_key(unb64(shown["privateKey"]), None)
        raw = (serialization.Encoding.Raw, serialization.PublicFormat.Raw) if not resident else (
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        assert back.public_key().public_bytes(*raw) == key.public_key().public_bytes(*raw)
    # Properties: BE/BS per credential, seen in the next assertion's flags.
    c.post("credentials/" + b64(b"p256-imported") + "/properties", {"backupEligibility": True, "backupState": True})
    _, a = ga(ctap, b"p256-imported")
    assert a.auth_data.flags & AuthenticatorData.FLAG.BACKUP_ELIGIBILITY
    assert a.auth_data.flags & AuthenticatorData.FLAG.BACKUP_STATE
    # Delete one, clear the rest: then they are gone for getAssertion too.
    c.delete("credentials/" + b64(b"p256-imported"))
    with pytest.raises(CtapError) as e:
        ga(ctap, b"p256-imported")
    assert e.value.code == ERR.NO_CREDENTIALS
    assert c.delete("credentials")["deleted"] == 1
    assert c.get("credentials") == []
    dev.close()


def test_credential_made_over_usbip_is_exported_and_its_key_verifies(vkey):
    c = vkey.control()
    dev = vkey.device()
    ctap = Ctap2(dev)
    rk = mc(ctap, rk=True, user=b"rk-user").auth_data.credential_data.credential_id
    nonrk = mc(ctap, user=b"plain-user").auth_data.credential_data.credential_id
    listed = c.get("credentials")
    assert [x["credentialId"] for x in listed] == [b64(rk)], "a non-discoverable credential is not stored"
    for cid, route in [(rk, "credentials/" + b64(rk)), (nonrk, "credentials/" + b64(nonrk) + "?rpId=" + RP)]:
        exported = c.get(route)
        key = serialization.load_der_private_key(unb64(exported["privateKey"]), None)
        cdh, a = ga(ctap, cid)
        verify(key.public_key(), a.signature, a.auth_data, cdh)
    st, body = c.raw("GET", "credentials/" + b64(nonrk))
    assert st == 404 and "rpId" in body["error"]
    dev.close()


def makecred_in_thread(ctap, result, **kw):
    def run():
        try:
            result["value"] = mc(ctap, on_keepalive=lambda s: result.setdefault("keepalive", s), **kw)
        except Exception as e:  # noqa: BLE001 - reported to the test
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t


def wait_pending(c, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = c.get("presence/pending")
        if p:
            return p[0]
        time.sleep(0.05)
    raise AssertionError("nothing became pending")


def test_manual_presence_waits_until_approved_or_denied(vkey):
    c = vkey.control()
    c.post("presence", {"mode": "manual"})
    assert c.get("")["presence"] == "manual"
    dev = vkey.device()
    ctap = Ctap2(dev)
    for approve in (True, False):
        result = {}
        t = makecred_in_thread(ctap, result)
        p = wait_pending(c)
        assert p["rpId"] == RP and p["command"] == "makeCredential"
        # While it waits: control operations that need the authenticator answer 503.
        assert "waits for the user" in expect_status(503, c.get, "credentials")
        time.sleep(0.3)  # keepalives go out every 100 ms
        # An answer for another request number is refused.
        assert expect_status(409, c.post, "presence/approve", {"id": p["id"] + 1000})
        c.post("presence/approve" if approve else "presence/deny", {"id": p["id"]})
        t.join(30)
        assert result.get("keepalive") == 2, "KEEPALIVE UPNEEDED while waiting"
        if approve:
            assert "value" in result, result
        else:
            assert isinstance(result.get("error"), CtapError) and result["error"].code == ERR.OPERATION_DENIED
    c.post("presence", {"mode": "deny"})
    with pytest.raises(CtapError) as e:
        mc(ctap)
    assert e.value.code == ERR.OPERATION_DENIED
    c.post("presence", {"mode": "auto"})
    mc(ctap)
    dev.close()


def test_user_verified_switch(vkey_factory):
    key = vkey_factory("--ephemeral", "--uv")
    c = key.control()
    assert c.get("")["isUserVerified"] is True
    dev = key.device()
    ctap = Ctap2(dev)
    assert mc(ctap, rk=True, options={"uv": True}).auth_data.is_user_verified()
    c.post("user-verified", {"isUserVerified": False})
    with pytest.raises(CtapError) as e:
        mc(ctap, options={"uv": True})
    assert e.value.code == ERR.UV_INVALID
    with pytest.raises(CtapError) as e:
        ClientPin(ctap).get_uv_token(ClientPin.PERMISSION.GET_ASSERTION, RP)
    assert e.value.code == ERR.UV_INVALID
    assert c.get("")["uvRetries"] == 6
    c.post("user-verified", {"isUserVerified": True})
    assert mc(ctap, options={"uv": True}).auth_data.is_user_verified()
    dev.close()


def test_response_override_bits(vkey_factory):
    key = vkey_factory("--ephemeral", "--uv")
    c = key.control()
    dev = key.device()
    ctap = Ctap2(dev)
    cred = mc(ctap).auth_data.credential_data
    pub = cred.public_key
    c.post("response-override-bits", {"isBogusSignature": True})
    cdh, a = ga(ctap, cred.credential_id)
    with pytest.raises(InvalidSignature):
        pub.verify(bytes(a.auth_data) + cdh, a.signature)
    c.post("response-override-bits", {"isBadUV": True})
    cdh, a = ga(ctap, cred.credential_id, options={"uv": True})
    assert not a.auth_data.is_user_verified() and a.auth_data.is_user_present()
    pub.verify(bytes(a.auth_data) + cdh, a.signature)
    c.post("response-override-bits", {"isBadUP": True})
    cdh, a = ga(ctap, cred.credential_id)
    assert not a.auth_data.is_user_present()
    att = mc(ctap)
    assert not att.auth_data.is_user_present()
    c.post("response-override-bits", {})
    cdh, a = ga(ctap, cred.credential_id)
    assert a.auth_data.is_user_present()
    pub.verify(bytes(a.auth_data) + cdh, a.signature)
    dev.close()


def test_replug_mid_request_voids_token_and_opens_reset_window(vkey):
    c = vkey.control()
    c.post("pin", {"pin": PIN})
    assert c.get("")["pinSet"] is True
    dev = vkey.device()
    ctap = Ctap2(dev)
    pin = ClientPin(ctap)
    token = pin.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
    # A request in flight when the key is pulled out.
    c.post("presence", {"mode": "manual"})
    result = {}
    t = makecred_in_thread(ctap, result, rk=False)
    wait_pending(c)
    assert c.get("")["attached"] is True
    assert c.post("replug")["wasAttached"] is True
    t.join(30)
    assert "error" in result, "the host's connection dropped mid-request"
    dev.close()
    c.post("presence", {"mode": "auto"})
    deadline = time.monotonic() + 10
    while c.get("")["attached"] and time.monotonic() < deadline:
        time.sleep(0.05)
    # Plugged back in: the token is void, reset is allowed (a fresh power-up).
    dev = vkey.device()
    ctap = Ctap2(dev)
    from fido2.ctap2 import CredentialManagement

    with pytest.raises(CtapError) as e:
        CredentialManagement(ctap, pin.protocol, token).get_metadata()
    assert e.value.code == ERR.PIN_AUTH_INVALID
    ctap.reset()
    assert c.get("")["pinSet"] is False
    dev.close()
    # Replug without a host: a power-up.
    assert c.post("replug")["wasAttached"] is False


def test_pin_and_reset_routes(vkey):
    c = vkey.control()
    c.post("pin", {"pin": PIN})
    assert expect_status(409, c.post, "pin", {"pin": "newpin-1", "currentPin": "wrong-pin"})
    c.post("pin", {"pin": "newpin-1", "currentPin": PIN})
    dev = vkey.device()
    ClientPin(Ctap2(dev)).get_pin_token("newpin-1")
    c.post("credentials", import_body(ec.generate_private_key(ec.SECP256R1()), b"x"))
    c.post("reset")  # no 10 s window, no touch
    k = c.get("")
    assert k["pinSet"] is False and k["credentials"] == 0
    dev.close()


def test_two_keys_are_two_devices_with_different_credentials(vkey_factory):
    from usbip_hid import list_devices

    key = vkey_factory("--ephemeral", "--keys", "2")
    assert [d[0] for d in list_devices(key.host, key.port)] == ["1-1", "1-2"]
    ids, serials = [], []
    for busid in ("1-1", "1-2"):
        dev = key.device(busid)
        serials.append(dev.descriptor.serial_number)
        cred = mc(Ctap2(dev), rk=True).auth_data.credential_data.credential_id
        ids.append(cred)
        dev.close()
    assert serials[0] != serials[1]
    assert ids[0] != ids[1]
    listed = [[x["credentialId"] for x in Control(key.control_path, b).get("credentials")] for b in ("1-1", "1-2")]
    assert listed == [[b64(ids[0])], [b64(ids[1])]]
    # Each key knows only its own credential.
    dev = key.device("1-2")
    with pytest.raises(CtapError) as e:
        ga(Ctap2(dev), ids[0])
    assert e.value.code == ERR.NO_CREDENTIALS
    dev.close()


def test_two_keys_from_a_config_file(vkey_factory, tmp_path):
    cfg = tmp_path / "keys.toml"
    cfg.write_text(
        '[[key]]\nbusid = "2-1"\nephemeral = true\npresence = "deny"\n\n'
        '[[key]]\nbusid = "2-2"\nephemeral = true\nuv = true\nbackup-eligible = true\n'
    )
    key = vkey_factory("--config", str(cfg))
    keys = {k["busId"]: k for k in Control(key.control_path).get("/v1/keys")}
    assert keys["2-1"]["presence"] == "deny" and keys["2-2"]["isUserVerified"] is True
    dev = key.device("2-2")
    assert mc(Ctap2(dev)).auth_data.flags & AuthenticatorData.FLAG.BACKUP_ELIGIBILITY
    dev.close()
    bad = tmp_path / "bad.toml"
    bad.write_text('[[key]]\nbusid = "1-1"\nephemeral = true\ncolour = "red"\n')
    from conftest import VKEY

    r = subprocess.run([VKEY, "serve", "--config", str(bad), "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    errors = [l for l in r.stderr.splitlines() if l.startswith("vkey: error:")]
    assert len(errors) == 1 and "colour" in errors[0], r.stderr


def test_foreign_uid_peer_is_refused_and_socket_is_private(vkey):
    mode = os.stat(vkey.control_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(vkey.control_path)).st_mode) & 0o077 == 0
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    code = (
        f"import sys; sys.path.insert(0, {HERE!r}); from usbip_hid import open_device\n"
        f"try:\n    open_device({vkey.host!r}, {vkey.port}, '1-1')\nexcept Exception as e:\n"
        f"    print('REFUSED', type(e).__name__); sys.exit(3)\nprint('IMPORTED')\n"
    )
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 3 and "REFUSED" in r.stdout, (r.stdout, r.stderr)
    assert vkey.wait_stderr("its socket belongs to uid 65534")
    # Our own user is still welcome.
    vkey.device().close()


def test_allow_any_user_lifts_the_rule(vkey_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    key = vkey_factory("--ephemeral", "--allow-any-user")
    assert key.wait_stderr("--allow-any-user")
    code = (
        f"import sys; sys.path.insert(0, {HERE!r}); from usbip_hid import open_device\n"
        f"open_device({key.host!r}, {key.port}, '1-1').close(); print('IMPORTED')\n"
    )
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60,
    )
    assert "IMPORTED" in r.stdout, (r.stdout, r.stderr)


def test_event_stream_shows_cdp_events_and_no_secret(vkey):
    from fido2.ctap2 import CredentialManagement

    c = vkey.control()
    c.post("pin", {"pin": PIN})
    events = EventStream(c)
    assert events.ready.wait(10)
    dev = vkey.device()
    ctap = Ctap2(dev)
    pin = ClientPin(ctap)
    token = pin.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL | ClientPin.PERMISSION.GET_ASSERTION, RP)
    param = pin.protocol.authenticate(token, b"\x00" * 32)
    made = ctap.make_credential(
        b"\x00" * 32, {"id": RP, "name": "Example"}, {"id": b"evt-user", "name": "eve"},
        [{"type": "public-key", "alg": -7}], options={"rk": True},
        pin_uv_protocol=pin.protocol.VERSION, pin_uv_param=param,
    )
    cid = made.auth_data.credential_data.credential_id
    ga(ctap, cid)
    cm_token = pin.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
    cm = CredentialManagement(ctap, pin.protocol, cm_token)
    cm.update_user_info({"type": "public-key", "id": cid}, {"id": b"evt-user", "name": "eve2", "displayName": "Eve"})
    cm.delete_cred({"type": "public-key", "id": cid})
    dev.close()
    assert events.wait_for("detached")
    exported_keys = []
    imported = ec.generate_private_key(ec.SECP256R1())
    c.post("credentials", import_body(imported, b"evt-imported"))
    exported_keys.append(pkcs8(imported))
    assert events.wait_for("credentialAdded")
    time.sleep(0.5)
    events.close()
    types = events.types()
    for t in ("attached", "ctapRequest", "ctapResponse", "presenceRequested", "credentialAdded",
              "credentialAsserted", "credentialUpdated", "credentialDeleted", "detached"):
        assert t in types, (t, types)
    added = [d for t, d in events.events if t == "credentialAdded"][0]["credential"]
    assert added["credentialId"] == b64(cid) and added["rpId"] == RP and added["isResidentCredential"] is True
    asserted = [d for t, d in events.events if t == "credentialAsserted"][0]["credential"]
    assert asserted["signCount"] == 1
    updated = [d for t, d in events.events if t == "credentialUpdated"][0]["credential"]
    assert updated["userName"] == "eve2"
    requests = [d for t, d in events.events if t == "ctapRequest"]
    assert {"clientPin", "makeCredential", "getAssertion", "credentialManagement"} <= {r["command"] for r in requests}
    responses = [d for t, d in events.events if t == "ctapResponse"]
    assert all(r["status"] == "CTAP2_OK" for r in responses), responses
    # No secret anywhere: the PIN, the tokens, the private keys, in any encoding.
    text = events.text
    secrets = [PIN.encode(), token, cm_token] + exported_keys
    for s in secrets:
        for form in (s.hex(), b64(s), s.decode("latin-1")):
            assert form not in text, f"secret leaked: {form[:16]}…"
    assert "<redacted" in text


def test_trace_file_is_json_lines(vkey_factory, tmp_path):
    import json

    trace = tmp_path / "trace.jsonl"
    key = vkey_factory("--ephemeral", "--trace", str(trace))
    dev = key.device()
    mc(Ctap2(dev))
    dev.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "credentialAdded" not in trace.read_text():
        time.sleep(0.05)
    lines = [json.loads(l) for l in trace.read_text().splitlines()]
    kinds = [l["type"] for l in lines]
    assert "ctapRequest" in kinds and "credentialAdded" in kinds and "attached" in kinds
    assert stat.S_IMODE(os.stat(trace).st_mode) == 0o600


def test_control_demo_example_runs(vkey_factory):
    """examples/control_demo.py, run as a user would, so it cannot rot."""
    key = vkey_factory("--ephemeral", "--uv")
    root = os.path.dirname(os.path.dirname(HERE))
    r = subprocess.run(
        [sys.executable, os.path.join(root, "examples", "control_demo.py"), "--usbip", f"{key.host}:{key.port}"],
        env=dict(os.environ, VKEY_CONTROL=key.control_path), capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "DEMO OK" in r.stdout, r.stdout


def _client(dev):
    from fido2.ctap2.extensions import LargeBlobExtension

    return fido_client(dev, PIN, "https://" + RP, [LargeBlobExtension()])


def _attested(cred_id, public_key):
    from fido2.cose import CoseKey
    from fido2.webauthn import Aaguid, AttestedCredentialData

    return AttestedCredentialData.create(Aaguid.NONE, cred_id, CoseKey.for_alg(-7).from_cryptography_key(public_key))


def _assert_with_large_blob(dev, cred, large_blob):
    """A WebAuthn get through python-fido2's LargeBlobExtension (`{"read": True}` or
    `{"write": bytes}`), verified by Fido2Server; its largeBlob client output."""
    from fido2.server import Fido2Server
    from fido2.webauthn import PublicKeyCredentialRpEntity

    server = Fido2Server(PublicKeyCredentialRpEntity(id=RP, name="Example"))
    options, state = server.authenticate_begin([cred], user_verification="required",
                                               extensions={"largeBlob": large_blob})
    response = _client(dev).get_assertion(options["publicKey"]).get_response(0)
    server.authenticate_complete(state, [cred], response)
    return response.client_extension_results.large_blob


def _cli(key, *args, stdin=""):
    from vkey_process import VKEY

    r = subprocess.run([VKEY, *args], env=dict(os.environ, VKEY_CONTROL=key.control_path), input=stdin,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def test_large_blob_is_shown_and_imported(vkey_factory, tmp_path):
    """CDP Credential.largeBlob: an imported blob is read by python-fido2's
    LargeBlobExtension and LargeBlobs over USB/IP; a blob python-fido2 writes shows in
    GET; refused imports change nothing; export → clear → `vkey cred add` round-trips."""
    import json

    from fido2.ctap2.blob import LargeBlobs
    from fido2.server import Fido2Server
    from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

    key = vkey_factory("--ephemeral", "--pin-file", pin_file(tmp_path, PIN))
    c = key.control()
    dev = key.device()
    ctap = Ctap2(dev)
    # Import a resident credential with a blob that spans a fragment once compressed.
    imported_key = ec.generate_private_key(ec.SECP256R1())
    blob = b"certificate " * 400 + os.urandom(3000)
    cid = b"lb-imported"
    added = c.post("credentials", import_body(imported_key, cid, largeBlob=b64(blob)))
    assert added["largeBlob"] == b64(blob)
    assert c.get("credentials/" + b64(cid))["largeBlob"] == b64(blob)
    cred = _attested(cid, imported_key.public_key())
    assert _assert_with_large_blob(dev, cred, {"read": True}).blob == blob
    # The same through the LargeBlobs class with the largeBlobKey of a raw assertion.
    _, a = ga(ctap, cid, extensions={"largeBlobKey": True})
    assert LargeBlobs(ctap).get_blob(a.large_blob_key) == blob

    # A credential made over USB/IP gets a blob written by python-fido2: GET shows it.
    server = Fido2Server(PublicKeyCredentialRpEntity(id=RP, name="Example"))
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=b"lb-user", name="lb", display_name="LB"),
        resident_key_requirement="required", user_verification="required",
        extensions={"largeBlob": {"support": "required"}})
    made = server.register_complete(state, _client(dev).make_credential(options["publicKey"]))
    made_id = made.credential_data.credential_id
    assert "largeBlob" not in c.get("credentials/" + b64(made_id)), "nothing written yet"
    written = os.urandom(100)
    assert _assert_with_large_blob(dev, made.credential_data, {"write": written}).written is True
    listed = {x["credentialId"]: x for x in c.get("credentials")}
    assert listed[b64(made_id)]["largeBlob"] == b64(written)
    assert listed[b64(cid)]["largeBlob"] == b64(blob), "the imported blob stays"
    assert len(LargeBlobs(ctap).read_blob_array()) == 2

    # Refused imports: each says why, and nothing changes (credentials, array).
    array = ctap.large_blobs(0, get=7000)[1]
    other = ec.generate_private_key(ec.SECP256R1())
    st, body = c.raw("POST", "credentials", import_body(other, b"lb-nonrk", resident=False, largeBlob=b64(b"x")))
    assert st == 400 and "resident" in body["error"], body
    st, body = c.raw("POST", "credentials", import_body(other, b"lb-bad", largeBlob="@@"))
    assert st == 400 and "largeBlob" in body["error"], body
    st, body = c.raw("POST", "credentials", import_body(other, b"lb-big", largeBlob=b64(os.urandom(17000))))
    assert st == 413 and "maxSerializedLargeBlobArray" in body["error"], body
    assert len(c.get("credentials")) == 2
    assert ctap.large_blobs(0, get=7000)[1] == array

    # Export (CLI) → clear → add (CLI): the blob comes back with the credential.
    exported = json.loads(_cli(key, "cred", "export", b64(cid)))
    assert exported["largeBlob"] == b64(blob)
    c.delete("credentials/" + b64(cid))
    assert len(LargeBlobs(ctap).read_blob_array()) == 1, "a deleted credential's blob goes with it"
    assert _cli(key, "cred", "add", stdin=json.dumps(exported)).startswith("added ")
    assert _assert_with_large_blob(dev, cred, {"read": True}).blob == blob
    assert c.delete("credentials")["deleted"] == 2
    assert LargeBlobs(ctap).read_blob_array() == []
    dev.close()

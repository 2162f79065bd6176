"""clientPIN, pinUvAuthToken, built-in UV, UV set up before creation, credential
management, authenticatorConfig and credProtect, with python-fido2 over USB/IP."""
import os

import pytest
from fido2.client import ClientError
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.config import Config
from fido2.ctap2.credman import CredentialManagement
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.server import Fido2Server
from fido2.utils import sha256
from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

from fido_helpers import fido_client, pin_file

ERR = CtapError.ERR
P = ClientPin.PERMISSION
PIN = "a1b2c3d4"
RP = PublicKeyCredentialRpEntity(id="example.com", name="Example RP")
PARAMS = [{"type": "public-key", "alg": -7}]


def with_pin(vkey_factory, tmp_path):
    """An ephemeral key started with --pin-file PIN: its device, CTAP2 and clientPIN."""
    key = vkey_factory("--ephemeral", "--pin-file", pin_file(tmp_path, PIN))
    dev = key.device()
    ctap = Ctap2(dev)
    return dev, ctap, ClientPin(ctap)


def mc(ctap, rk=False, token=None, protocol=None, rp="example.com", user=b"u", extensions=None):
    cdh = os.urandom(32)
    kw = {}
    if token is not None:
        kw = {"pin_uv_param": protocol.authenticate(token, cdh), "pin_uv_protocol": protocol.VERSION}
    return ctap.make_credential(
        cdh, {"id": rp}, {"id": user, "name": "alice"}, PARAMS,
        options={"rk": True} if rk else None, extensions=extensions, **kw,
    )


def raw_set_pin(ctap, protocol, pin_bytes):
    """setPIN by hand, for PINs python-fido2 refuses to send."""
    peer = ctap.client_pin(protocol.VERSION, ClientPin.CMD.GET_KEY_AGREEMENT)[1]
    key_agreement, shared = protocol.encapsulate(peer)
    enc = protocol.encrypt(shared, pin_bytes.ljust(64, b"\0"))
    return ctap.client_pin(protocol.VERSION, ClientPin.CMD.SET_PIN, key_agreement=key_agreement,
                           new_pin_enc=enc, pin_uv_param=protocol.authenticate(shared, enc))


def expect(code, fn, *a, **kw):
    with pytest.raises(CtapError) as e:
        fn(*a, **kw)
    assert e.value.code == code, f"{e.value.code!r} != {code!r}"


@pytest.mark.parametrize("proto", [PinProtocolV1, PinProtocolV2], ids=["protocol1", "protocol2"])
def test_set_change_retries_lockout_and_power_cycle(vkey, proto):
    dev = vkey.device()
    ctap = Ctap2(dev)
    pin = ClientPin(ctap, proto())
    assert ctap.info.options["clientPin"] is False
    assert ctap.info.pin_uv_protocols == [2, 1]
    expect(ERR.PIN_NOT_SET, pin.get_pin_token, PIN)
    for bad in (b"123", b"12\x0034", b"\xff\xfe\xfd\xfc"):
        expect(ERR.PIN_POLICY_VIOLATION, raw_set_pin, ctap, pin.protocol, bad)
    pin.set_pin(PIN)
    assert Ctap2(dev).get_info().options["clientPin"] is True
    expect(ERR.PIN_AUTH_INVALID, pin.set_pin, "other-pin")  # already set
    assert pin.get_pin_retries()[0] == 8
    token = pin.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
    att = mc(ctap, token=token, protocol=pin.protocol)
    assert att.auth_data.is_user_verified()
    pin.change_pin(PIN, "new-pin-1")
    expect(ERR.PIN_INVALID, pin.get_pin_token, PIN)
    assert pin.get_pin_retries() == (7, False)
    expect(ERR.PIN_INVALID, pin.get_pin_token, "wrong")
    # Third wrong PIN in a row: blocked until power cycle.
    expect(ERR.PIN_AUTH_BLOCKED, pin.get_pin_token, "wrong")
    assert pin.get_pin_retries() == (5, True)
    expect(ERR.PIN_AUTH_BLOCKED, pin.get_pin_token, "new-pin-1")
    dev.close()
    dev = vkey.device()  # re-import = power cycle
    pin = ClientPin(Ctap2(dev), proto())
    assert pin.get_pin_retries() == (5, False)
    pin.get_pin_token("new-pin-1")
    assert pin.get_pin_retries()[0] == 8  # a correct PIN restores the retries
    dev.close()


def test_pin_blocked_after_eight_wrong_pins_until_reset(vkey):
    dev = vkey.device()
    ClientPin(Ctap2(dev)).set_pin(PIN)
    wrong = 0
    while wrong < 8:
        pin = ClientPin(Ctap2(dev))
        for _ in range(min(2, 8 - wrong)):
            with pytest.raises(CtapError) as e:
                pin.get_pin_token("wrong-pin")
            wrong += 1
            assert e.value.code in (ERR.PIN_INVALID, ERR.PIN_BLOCKED)
        dev.close()
        dev = vkey.device()
    pin = ClientPin(Ctap2(dev))
    assert pin.get_pin_retries()[0] == 0
    expect(ERR.PIN_BLOCKED, pin.get_pin_token, PIN)
    Ctap2(dev).reset()  # within 10 s of the import
    assert Ctap2(dev).get_info().options["clientPin"] is False
    dev.close()


def test_permissions_and_rp_binding(vkey_factory, tmp_path):
    dev, ctap, pin = with_pin(vkey_factory, tmp_path)
    pin.get_pin_token(PIN, P.LARGE_BLOB_WRITE)  # large blobs are supported
    expect(ERR.UNAUTHORIZED_PERMISSION, pin.get_pin_token, PIN, P.BIO_ENROLL)
    ga_only = pin.get_pin_token(PIN, P.GET_ASSERTION, "example.com")
    expect(ERR.PIN_AUTH_INVALID, mc, ctap, token=ga_only, protocol=pin.protocol)
    bound = pin.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
    expect(ERR.PIN_AUTH_INVALID, mc, ctap, token=bound, protocol=pin.protocol, rp="other.example")
    # A discoverable credential on a PIN-protected key needs the token; a plain one not
    # (makeCredUvNotRqd).
    expect(ERR.PUAT_REQUIRED, mc, ctap, rk=True)
    assert not mc(ctap).auth_data.is_user_verified()
    # The zero-length pinUvAuthParam probe: a touch, then PIN_INVALID (a PIN is set).
    expect(ERR.PIN_INVALID, ctap.make_credential, os.urandom(32), {"id": "example.com"}, {"id": b"u"}, PARAMS,
           pin_uv_param=b"", pin_uv_protocol=2)
    # A token is used up by the makeCredential it authorised.
    token = pin.get_pin_token(PIN, P.MAKE_CREDENTIAL | P.GET_ASSERTION, "example.com")
    mc(ctap, token=token, protocol=pin.protocol)
    expect(ERR.PIN_AUTH_INVALID, mc, ctap, token=token, protocol=pin.protocol)
    dev.close()


def test_uv_before_creation_pin_file_passkey_flow(vkey_factory, tmp_path):
    """A key started with --pin-file: the first makeCredential from a client that uses
    the PIN has UV=1, the credential is discoverable, the assertion needs no username."""
    key = vkey_factory("--store", str(tmp_path / "store"), "--pin-file", pin_file(tmp_path, PIN))
    assert any("PIN set now" in line for line in key.stdout_lines)
    dev = key.device()
    info = Ctap2(dev).get_info()
    assert info.options["clientPin"] is True and "FIDO_2_1" in info.versions
    server = Fido2Server(RP)
    user = PublicKeyCredentialUserEntity(id=b"passkey-user", name="alice", display_name="Alice")
    options, state = server.register_begin(user, resident_key_requirement="required", user_verification="required")
    result = fido_client(dev, PIN).make_credential(options["publicKey"])
    auth_data = server.register_complete(state, result)
    assert auth_data.is_user_verified() and auth_data.is_user_present()
    assert result.client_extension_results.get("credProps", {}).get("rk") in (True, None)
    options, state = server.authenticate_begin(user_verification="required")  # no allowCredentials
    selection = fido_client(dev, PIN).get_assertion(options["publicKey"])
    response = selection.get_response(0)
    server.authenticate_complete(state, [auth_data.credential_data], response)
    assert response.response.user_handle == b"passkey-user"
    assert response.response.authenticator_data.is_user_verified()
    # A single account: the user id only (§6.2.2), so no account chooser is needed.
    assert selection.get_assertions()[0].user == {"id": b"passkey-user"}
    dev.close()
    # A restart with a different PIN is refused; with the same one it starts.
    key.stop()
    with pytest.raises(RuntimeError, match="different PIN"):
        key.args = ["--store", str(tmp_path / "store"), "--pin-file", pin_file(tmp_path / "..", "other-pin")]
        key.start()
    key.args = ["--store", str(tmp_path / "store"), "--pin-file", pin_file(tmp_path, PIN)]
    key.start()
    assert any("PIN matches" in line for line in key.stdout_lines)


def test_vkey_pin_environment_variable(vkey_factory):
    key = vkey_factory("--ephemeral", env={"VKEY_PIN": "env-pin-1"})
    dev = key.device()
    ClientPin(Ctap2(dev)).get_pin_token("env-pin-1")
    dev.close()


def test_built_in_uv(vkey_factory):
    key = vkey_factory("--ephemeral", "--uv")
    dev = key.device()
    ctap = Ctap2(dev)
    assert ctap.info.options["uv"] is True and ctap.info.options["clientPin"] is False
    pin = ClientPin(ctap)
    assert pin.get_uv_retries() == 8
    token = pin.get_uv_token(P.MAKE_CREDENTIAL, "example.com")
    assert mc(ctap, rk=True, token=token, protocol=pin.protocol).auth_data.is_user_verified()
    # Fido2Client with UV required uses built-in UV, no PIN.
    server = Fido2Server(RP)
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=b"uv-user", name="u"), resident_key_requirement="required",
        user_verification="required")
    result = fido_client(dev).make_credential(options["publicKey"])
    assert server.register_complete(state, result).is_user_verified()
    dev.close()

    failing = vkey_factory("--ephemeral", "--uv", "--uv-result", "fail", "--uv-retries", "2")
    dev = failing.device()
    pin = ClientPin(Ctap2(dev))
    assert pin.get_uv_retries() == 2
    expect(ERR.UV_INVALID, pin.get_uv_token, P.MAKE_CREDENTIAL, "example.com")
    expect(ERR.UV_BLOCKED, pin.get_uv_token, P.MAKE_CREDENTIAL, "example.com")
    expect(ERR.UV_BLOCKED, pin.get_uv_token, P.MAKE_CREDENTIAL, "example.com")
    assert pin.get_uv_retries() == 0
    dev.close()


def test_credential_management(vkey_factory, tmp_path):
    dev, ctap, pin = with_pin(vkey_factory, tmp_path)
    for rp, user in (("a.example", b"alice"), ("a.example", b"bob"), ("b.example", b"carol")):
        token = pin.get_pin_token(PIN, P.MAKE_CREDENTIAL, rp)
        mc(ctap, rk=True, token=token, protocol=pin.protocol, rp=rp, user=user,
           extensions={"credProtect": 2} if user == b"carol" else None)
    token = pin.get_pin_token(PIN, P.CREDENTIAL_MGMT)
    cm = CredentialManagement(ctap, pin.protocol, token)
    meta = cm.get_metadata()
    assert meta[1] == 3 and meta[2] == 100000 - 3
    rps = cm.enumerate_rps()
    assert sorted(r[3]["id"] for r in rps) == ["a.example", "b.example"]
    creds = cm.enumerate_creds(sha256(b"a.example"))
    assert sorted(c[6]["id"] for c in creds) == [b"alice", b"bob"]
    carol = cm.enumerate_creds(sha256(b"b.example"))
    assert carol[0][10] == 2  # credProtect
    bob = next(c for c in creds if c[6]["id"] == b"bob")
    cm.update_user_info(bob[7], {"id": b"bob", "name": "robert", "displayName": "Robert"})
    creds = cm.enumerate_creds(sha256(b"a.example"))
    assert next(c for c in creds if c[6]["id"] == b"bob")[6]["name"] == "robert"
    expect(ERR.INVALID_PARAMETER, cm.update_user_info, bob[7], {"id": b"mallory", "name": "x"})
    cm.delete_cred(bob[7])
    assert [c[6]["id"] for c in cm.enumerate_creds(sha256(b"a.example"))] == [b"alice"]
    assert cm.get_metadata()[1] == 2
    # The credentialMgmtPreview alias (0x41) works too.
    preview = Ctap2(dev)
    preview.CMD = Ctap2.CMD
    resp = ctap.send_cbor(0x41, {1: 1, 3: pin.protocol.VERSION, 4: pin.protocol.authenticate(token, b"\x01")})
    assert resp[1] == 2
    # Wrong permission: a token without cm.
    no_cm = CredentialManagement(ctap, pin.protocol, pin.get_pin_token(PIN, P.GET_ASSERTION, "a.example"))
    expect(ERR.PIN_AUTH_INVALID, no_cm.get_metadata)
    # RP-bound cm token: its own RP only.
    bound = CredentialManagement(ctap, pin.protocol, pin.get_pin_token(PIN, P.CREDENTIAL_MGMT, "a.example"))
    assert len(bound.enumerate_creds(sha256(b"a.example"))) == 1
    expect(ERR.PIN_AUTH_INVALID, bound.enumerate_creds, sha256(b"b.example"))
    expect(ERR.PIN_AUTH_INVALID, bound.get_metadata)
    expect(ERR.PIN_AUTH_INVALID, bound.enumerate_rps)
    expect(ERR.PIN_AUTH_INVALID, bound.delete_cred, carol[0][7])
    # An enumeration is over once another command intervenes.
    cm = CredentialManagement(ctap, pin.protocol, pin.get_pin_token(PIN, P.CREDENTIAL_MGMT))
    cm.enumerate_rps_begin()
    ctap.get_info()
    expect(ERR.NOT_ALLOWED, cm.enumerate_rps_next)
    # ...or another credentialManagement subcommand.
    assert cm.enumerate_rps_begin()[5] == 2
    cm.get_metadata()
    expect(ERR.NOT_ALLOWED, cm.enumerate_rps_next)
    # Uninterrupted, GetNext walks the rest.
    cm.enumerate_rps_begin()
    assert cm.enumerate_rps_next()[3]["id"] in ("a.example", "b.example")
    expect(ERR.NOT_ALLOWED, cm.enumerate_rps_next)
    dev.close()


def test_cred_protect_hides_credentials_without_uv(vkey_factory, tmp_path):
    dev, ctap, pin = with_pin(vkey_factory, tmp_path)
    ids = {}
    for level, user in ((1, b"one"), (2, b"two"), (3, b"three")):
        token = pin.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
        att = mc(ctap, rk=True, token=token, protocol=pin.protocol, user=user, extensions={"credProtect": level})
        assert att.auth_data.extensions == {"credProtect": level}
        ids[level] = att.auth_data.credential_data.credential_id
    # Without UV, no allowList: only level 1.
    a = ctap.get_assertion("example.com", os.urandom(32))
    assert a.user["id"] == b"one" and a.number_of_credentials == 1
    # Without UV, with an allowList: levels 1 and 2, never 3.
    allow = lambda lvl: [{"type": "public-key", "id": ids[lvl]}]  # noqa: E731
    assert ctap.get_assertion("example.com", os.urandom(32), allow(2)).credential["id"] == ids[2]
    expect(ERR.NO_CREDENTIALS, ctap.get_assertion, "example.com", os.urandom(32), allow(3))
    # With UV (a token with ga): all three, newest first.
    token = pin.get_pin_token(PIN, P.GET_ASSERTION, "example.com")
    cdh = os.urandom(32)
    a = ctap.get_assertion("example.com", cdh, pin_uv_param=pin.protocol.authenticate(token, cdh),
                           pin_uv_protocol=pin.protocol.VERSION)
    assert a.number_of_credentials == 3 and a.user["id"] == b"three"
    assert a.auth_data.is_user_verified()
    # Several accounts and UV: the names come along, for the platform's account chooser.
    assert a.user["name"] == "alice"
    assert ctap.get_next_assertion().user["name"] == "alice"
    # Fido2Client asks for credProtect with enforcement; the key honours it.
    server = Fido2Server(RP)
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=b"fc", name="fc"), resident_key_requirement="required",
        user_verification="required",
        extensions={"credentialProtectionPolicy": "userVerificationRequired",
                    "enforceCredentialProtectionPolicy": True})
    result = fido_client(dev, PIN).make_credential(options["publicKey"])
    assert server.register_complete(state, result).extensions == {"credProtect": 3}
    dev.close()


def test_authenticator_config(vkey_factory, tmp_path):
    dev, ctap, pin = with_pin(vkey_factory, tmp_path)
    expect(ERR.PUAT_REQUIRED, Config(ctap).toggle_always_uv)
    no_acfg = Config(ctap, pin.protocol, pin.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com"))
    expect(ERR.PIN_AUTH_INVALID, no_acfg.toggle_always_uv)
    cfg = Config(ctap, pin.protocol, pin.get_pin_token(PIN, P.AUTHENTICATOR_CFG))
    cfg.toggle_always_uv()
    info = ctap.get_info()
    assert info.options["alwaysUv"] is True and info.options["makeCredUvNotRqd"] is False
    expect(ERR.PUAT_REQUIRED, mc, ctap)  # even a non-discoverable credential needs UV now
    expect(ERR.PUAT_REQUIRED, ctap.get_assertion, "example.com", os.urandom(32))
    cfg.toggle_always_uv()
    mc(ctap)
    # setMinPINLength: the current 8-character PIN is fine for 8, a longer minimum forces a change.
    cfg.set_min_pin_length(8, rp_ids=["example.com"])
    assert ctap.get_info().min_pin_length == 8 and ctap.get_info().force_pin_change is False
    expect(ERR.PIN_POLICY_VIOLATION, cfg.set_min_pin_length, 6)
    cfg.set_min_pin_length(10)
    assert ctap.get_info().force_pin_change is True
    expect(ERR.PIN_INVALID, pin.get_pin_token, PIN)  # the right PIN, but it must change first
    expect(ERR.PIN_POLICY_VIOLATION, pin.change_pin, PIN, "short")
    pin.change_pin(PIN, "0123456789")
    assert ctap.get_info().force_pin_change is False
    token = pin.get_pin_token("0123456789", P.MAKE_CREDENTIAL, "example.com")
    att = mc(ctap, token=token, protocol=pin.protocol, extensions={"minPinLength": True})
    assert att.auth_data.extensions == {"minPinLength": 10}
    dev.close()

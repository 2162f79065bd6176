"""CTAP1/U2F over USB/IP with python-fido2's `Ctap1`: register, authenticate in the
three modes, version, every status word in short and extended encoding, manual
presence through the control interface, and one credential used by both protocols
(the appid extension's rpId swap) with one counter."""
import hashlib
import os
import struct
import time

import pytest
from fido2.cose import ES256
from fido2.ctap import CtapError
from fido2.ctap1 import ApduError, Ctap1, RegistrationData, SignatureData
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY, CTAPHID
from fido2.utils import sha256

from control_client import EventStream, b64

OK, NOT_SATISFIED, NOT_ALLOWED = 0x9000, 0x6985, 0x6986
WRONG_DATA, WRONG_LENGTH, CLA_NOT_SUPPORTED, INS_NOT_SUPPORTED = 0x6A80, 0x6700, 0x6E00, 0x6D00

APPID = "https://example.com/u2f-app-id.json"
APP = sha256(APPID.encode())


def raw(dev, apdu):
    """One CTAPHID_MSG round trip: (data, status word)."""
    resp = dev.call(CTAPHID.MSG, apdu)
    return resp[:-2], struct.unpack(">H", resp[-2:])[0]


def extended(ins, p1=0, data=b"", cla=0):
    return struct.pack(">BBBBBH", cla, ins, p1, 0, 0, len(data)) + data + b"\0\0"


def short(ins, p1=0, data=b"", cla=0):
    body = (bytes([len(data)]) + data if data else b"") + b"\0"
    return bytes([cla, ins, p1, 0]) + body


def auth_data(client, app, kh):
    return client + app + bytes([len(kh)]) + kh


def test_version_capabilities_and_get_info(vkey):
    dev = vkey.device()
    try:
        assert not dev.capabilities & CAPABILITY.NMSG
        assert Ctap1(dev).get_version() == "U2F_V2"
        assert "U2F_V2" in Ctap2(dev).get_info().versions
        # Every encoding of U2F_VERSION: header only, short Le, extended Le (libfido2).
        for apdu in (b"\0\x03\0\0", b"\0\x03\0\0\0", b"\0\x03\0\0\0\0\0", short(3)):
            assert raw(dev, apdu) == (b"U2F_V2", OK), apdu.hex()
    finally:
        dev.close()


def test_register_and_authenticate_in_the_three_modes(vkey):
    dev = vkey.device()
    try:
        ctap1 = Ctap1(dev)
        client = os.urandom(32)
        reg = ctap1.register(client, APP)
        reg.verify(APP, client)  # the fido-u2f attestation signature, by its certificate
        assert len(reg.key_handle) == 64

        sig = ctap1.authenticate(client, APP, reg.key_handle)
        assert (sig.user_presence, sig.counter) == (1, 1)
        sig.verify(APP, client, reg.public_key)

        with pytest.raises(ApduError) as e:
            ctap1.authenticate(client, APP, reg.key_handle, check_only=True)
        assert e.value.code == NOT_SATISFIED  # "this key handle is ours"

        # 0x08 dont-enforce-user-presence-and-sign: signed without the touch.
        sig = SignatureData(ctap1.send_apdu(ins=2, p1=0x08, data=auth_data(client, APP, reg.key_handle)))
        assert (sig.user_presence, sig.counter) == (0, 2)
        sig.verify(APP, client, reg.public_key)
    finally:
        dev.close()


def test_short_apdus_work_like_extended_ones(vkey):
    dev = vkey.device()
    try:
        client = os.urandom(32)
        data, sw = raw(dev, short(1, 0x03, client + APP))
        assert sw == OK
        reg = RegistrationData(data)
        reg.verify(APP, client)
        data, sw = raw(dev, short(2, 0x03, auth_data(client, APP, reg.key_handle)))
        assert sw == OK
        sig = SignatureData(data)
        assert sig.counter == 1
        sig.verify(APP, client, reg.public_key)
        # Short without Le, extended without Le (as libfido2 writes them).
        data, sw = raw(dev, bytes([0, 2, 8, 0, 129]) + auth_data(client, APP, reg.key_handle))
        assert sw == OK and SignatureData(data).counter == 2
        data, sw = raw(dev, struct.pack(">BBBBBH", 0, 2, 8, 0, 0, 129) + auth_data(client, APP, reg.key_handle))
        assert sw == OK and SignatureData(data).counter == 3
    finally:
        dev.close()


def test_every_status_word(vkey):
    dev = vkey.device()
    try:
        client = os.urandom(32)
        reg = Ctap1(dev).register(client, APP)
        kh = reg.key_handle
        other = sha256(b"https://other.example")
        cases = [
            ("wrong CLA", extended(3, cla=0x80), CLA_NOT_SUPPORTED),
            ("wrong CLA, short", short(1, data=client + APP, cla=0x01), CLA_NOT_SUPPORTED),
            ("unknown INS", extended(0x10), INS_NOT_SUPPORTED),
            ("vendor INS", extended(0x40, data=b"\1"), INS_NOT_SUPPORTED),
            ("register, 63 bytes", extended(1, data=client + APP[:31]), WRONG_LENGTH),
            ("register, 65 bytes", short(1, data=client + APP + b"\0"), WRONG_LENGTH),
            ("version with data", extended(3, data=b"x"), WRONG_LENGTH),
            ("lengths do not add up", b"\0\x01\0\0\0\0\x40" + client, WRONG_LENGTH),
            ("short Lc too long", bytes([0, 1, 0, 0, 200]) + client, WRONG_LENGTH),
            ("key handle length byte wrong", extended(2, 3, client + APP + bytes([63]) + kh), WRONG_LENGTH),
            ("header cut short", b"\0\x01\0", WRONG_LENGTH),
            ("other application", extended(2, 3, auth_data(client, other, kh)), WRONG_DATA),
            ("other application, check-only", extended(2, 7, auth_data(client, other, kh)), WRONG_DATA),
            ("forged key handle", extended(2, 8, auth_data(client, APP, kh[:-1] + bytes([kh[-1] ^ 1]))), WRONG_DATA),
            ("unknown control byte", extended(2, 0x05, auth_data(client, APP, kh)), WRONG_DATA),
            ("check-only, ours", extended(2, 7, auth_data(client, APP, kh)), NOT_SATISFIED),
            ("register", extended(1, data=client + APP), OK),
        ]
        for name, apdu, expected in cases:
            data, sw = raw(dev, apdu)
            assert sw == expected, f"{name}: {sw:#06x}, expected {expected:#06x}"
            if sw != OK:
                assert data == b"", name
        # The key still answers after all of that.
        assert Ctap1(dev).get_version() == "U2F_V2"
    finally:
        dev.close()


def test_deny_presence_never_gives_the_touch(vkey_factory):
    key = vkey_factory("--ephemeral", "--presence", "deny")
    dev = key.device()
    try:
        for _ in range(3):
            with pytest.raises(ApduError) as e:
                Ctap1(dev).register(os.urandom(32), APP)
            assert e.value.code == NOT_SATISFIED
    finally:
        dev.close()


def test_manual_presence_first_not_satisfied_then_approved(vkey_factory):
    key = vkey_factory("--ephemeral", "--presence", "manual")
    c = key.control()
    events = EventStream(c)
    assert events.ready.wait(30)
    dev = key.device()
    try:
        ctap1 = Ctap1(dev)
        client = os.urandom(32)
        with pytest.raises(ApduError) as e:
            ctap1.register(client, APP)
        assert e.value.code == NOT_SATISFIED  # answered at once, never blocks
        pending = c.get("presence/pending")
        assert len(pending) == 1 and pending[0]["command"] == "U2F_REGISTER"
        touch = pending[0]["id"]
        # Polling again is the same request.
        with pytest.raises(ApduError):
            ctap1.register(client, APP)
        assert [p["id"] for p in c.get("presence/pending")] == [touch]
        # The key is not blocked: control operations go on while the client polls.
        assert c.get("credentials") == []
        c.post("presence/approve", {"id": touch})
        assert c.get("presence/pending") == []
        reg = ctap1.register(client, APP)
        reg.verify(APP, client)
        # The touch was taken: the next one is asked for again, under a new number.
        with pytest.raises(ApduError) as e:
            ctap1.authenticate(client, APP, reg.key_handle)
        assert e.value.code == NOT_SATISFIED
        again = c.get("presence/pending")
        assert again[0]["command"] == "U2F_AUTHENTICATE" and again[0]["id"] > touch
        c.post("presence/approve", {"id": again[0]["id"]})
        sig = ctap1.authenticate(client, APP, reg.key_handle)
        assert (sig.user_presence, sig.counter) == (1, 1)
        sig.verify(APP, client, reg.public_key)
    finally:
        dev.close()
    assert events.wait_for("credentialAsserted")
    events.close()
    asked = [d for t, d in events.events if t == "presenceRequested"]
    assert [a["id"] for a in asked] == [touch, again[0]["id"]]
    assert all(a["command"].startswith("U2F_") and a["waits"] for a in asked)
    added = [d for t, d in events.events if t == "credentialAdded"][0]["credential"]
    assert added["credentialId"] == b64(reg.key_handle) and added["isResidentCredential"] is False
    asserted = [d for t, d in events.events if t == "credentialAsserted"][0]["credential"]
    assert asserted["signCount"] == 1
    requests = [d for t, d in events.events if t == "ctapRequest"]
    assert {"U2F_REGISTER", "U2F_AUTHENTICATE"} <= {r["command"] for r in requests}
    reg_req = [r for r in requests if r["command"] == "U2F_REGISTER"][0]["params"]
    assert reg_req["encoding"] == "extended" and reg_req["applicationParameter"] == b64(APP)
    statuses = {d["status"] for t, d in events.events if t == "ctapResponse"}
    assert {"SW_CONDITIONS_NOT_SATISFIED", "SW_NO_ERROR"} <= statuses


def test_delay_presence_gives_the_touch_after_the_delay(vkey_factory):
    key = vkey_factory("--ephemeral", "--presence", "delay:300")
    dev = key.device()
    try:
        ctap1 = Ctap1(dev)
        client = os.urandom(32)
        codes = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                ctap1.register(client, APP).verify(APP, client)
                break
            except ApduError as e:
                codes.append(e.code)
                time.sleep(0.05)
        else:
            raise AssertionError("the touch never came")
        assert codes and set(codes) == {NOT_SATISFIED}
    finally:
        dev.close()


def u2f_public_key(cose):
    return b"\x04" + cose[-2] + cose[-3]


def test_u2f_registration_then_ctap2_get_assertion_with_the_appid(vkey):
    """The appid extension as platforms do it: the allowList entry was made under the
    appid's hash, so the platform sends the appid as getAssertion's rpId."""
    dev = vkey.device()
    try:
        ctap1, ctap2 = Ctap1(dev), Ctap2(dev)
        client = os.urandom(32)
        reg = ctap1.register(client, APP)
        cose = ES256.from_ctap1(reg.public_key)
        assert ctap1.authenticate(client, APP, reg.key_handle).counter == 1
        allow = [{"type": "public-key", "id": reg.key_handle}]
        cdh = os.urandom(32)
        a = ctap2.get_assertion(APPID, cdh, allow_list=allow)
        a.verify(cdh, cose)
        assert a.auth_data.rp_id_hash == APP
        assert a.auth_data.flags & 0x01 and a.auth_data.counter == 2
        assert a.credential["id"] == reg.key_handle
        # Under the RP's own ID the credential is not found: the swap is needed.
        with pytest.raises(CtapError) as e:
            ctap2.get_assertion("example.com", cdh, allow_list=allow)
        assert e.value.code == CtapError.ERR.NO_CREDENTIALS
        sig = ctap1.authenticate(client, APP, reg.key_handle)
        assert sig.counter == 3
        sig.verify(APP, client, reg.public_key)
    finally:
        dev.close()


def test_ctap2_credential_then_u2f_authenticate(vkey):
    dev = vkey.device()
    try:
        ctap1, ctap2 = Ctap1(dev), Ctap2(dev)
        made = ctap2.make_credential(
            os.urandom(32), {"id": "example.com", "name": "Example"}, {"id": b"u2f-user", "name": "bob"},
            [{"type": "public-key", "alg": -7}],
        )
        cred = made.auth_data.credential_data
        app = sha256(b"example.com")
        client = os.urandom(32)
        sig = ctap1.authenticate(client, app, cred.credential_id)
        assert (sig.user_presence, sig.counter) == (1, 1)
        sig.verify(app, client, u2f_public_key(cred.public_key))
        cdh = os.urandom(32)
        a = ctap2.get_assertion("example.com", cdh, allow_list=[{"type": "public-key", "id": cred.credential_id}])
        a.verify(cdh, cred.public_key)
        assert a.auth_data.counter == 2
        sig = ctap1.authenticate(client, app, cred.credential_id)
        assert sig.counter == 3
        sig.verify(app, client, u2f_public_key(cred.public_key))
        # An EdDSA credential cannot sign over U2F.
        ed = ctap2.make_credential(
            os.urandom(32), {"id": "example.com", "name": "Example"}, {"id": b"ed-user", "name": "ed"},
            [{"type": "public-key", "alg": -8}],
        ).auth_data.credential_data.credential_id
        with pytest.raises(ApduError) as e:
            ctap1.authenticate(client, app, ed, check_only=True)
        assert e.value.code == WRONG_DATA
    finally:
        dev.close()


def test_no_u2f(vkey_factory, tmp_path):
    for args in (("--ephemeral", "--no-u2f"), ("--config", str(tmp_path / "keys.toml"))):
        (tmp_path / "keys.toml").write_text('[[key]]\nbusid = "1-1"\nephemeral = true\nu2f = false\n')
        key = vkey_factory(*args)
        dev = key.device()
        try:
            assert dev.capabilities & CAPABILITY.NMSG
            with pytest.raises(CtapError) as e:
                dev.call(CTAPHID.MSG, extended(3))
            assert e.value.code == CtapError.ERR.INVALID_COMMAND
            assert "U2F_V2" not in Ctap2(dev).get_info().versions
            assert Ctap2(dev).get_info().versions == ["FIDO_2_0", "FIDO_2_1"]
        finally:
            dev.close()
        key.stop()


def test_always_uv_switches_u2f_off(vkey_factory):
    from fido2.ctap2.config import Config
    from fido2.ctap2.pin import ClientPin

    key = vkey_factory("--ephemeral", env={"VKEY_PIN": "4321abcd"})
    dev = key.device()
    try:
        ctap1, ctap2 = Ctap1(dev), Ctap2(dev)
        client = os.urandom(32)
        reg = ctap1.register(client, APP)

        def toggle():
            pin = ClientPin(ctap2)
            token = pin.get_pin_token("4321abcd", ClientPin.PERMISSION.AUTHENTICATOR_CFG)
            Config(ctap2, pin.protocol, token).toggle_always_uv()

        toggle()
        info = ctap2.get_info()
        assert info.options["alwaysUv"] is True and "U2F_V2" not in info.versions
        for call in (
            ctap1.get_version,
            lambda: ctap1.register(client, APP),
            lambda: ctap1.authenticate(client, APP, reg.key_handle),
            lambda: ctap1.authenticate(client, APP, reg.key_handle, check_only=True),
        ):
            with pytest.raises(ApduError) as e:
                call()
            assert e.value.code == NOT_ALLOWED
        toggle()
        assert "U2F_V2" in ctap2.get_info().versions
        assert ctap1.authenticate(client, APP, reg.key_handle).counter == 1
    finally:
        dev.close()

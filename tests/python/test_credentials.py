"""python-fido2's Fido2Client + Fido2Server register and sign in with vkey over USB/IP.

Every signature is verified by Fido2Server against the attested public key; the packed
attestation chain is verified up to the store's attestation CA.
"""
import os
import threading

import pytest
from cryptography import x509
from fido2.attestation import AttestationVerifier, UntrustedAttestation
from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationObject,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
)

AAGUID = bytes.fromhex("8fc78583dabb4ce981c293b4322ab072")
ORIGIN = "https://example.com"
RP = PublicKeyCredentialRpEntity(id="example.com", name="Example RP")


class StoreCaVerifier(AttestationVerifier):
    """Trusts exactly the attestation CA of one vkey store."""

    def __init__(self, ca_der):
        super().__init__()
        self.ca_der = ca_der

    def ca_lookup(self, attestation_result, auth_data):
        return self.ca_der


def ca_der(store_dir):
    with open(os.path.join(store_dir, "attestation-ca.pem"), "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).public_bytes(
            encoding=__import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER
        )


def server_for(alg=None, verifier=None):
    s = Fido2Server(RP, attestation="direct", verify_attestation=verifier)
    if alg is not None:
        s.allowed_algorithms = [PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=alg)]
    return s


def client_for(dev):
    return Fido2Client(dev, DefaultClientDataCollector(ORIGIN))


def register(dev, server, user_id, resident, exclude=None):
    user = PublicKeyCredentialUserEntity(id=user_id, name=f"user-{user_id.hex()}", display_name="A User")
    options, state = server.register_begin(
        user,
        credentials=exclude,
        resident_key_requirement="required" if resident else "discouraged",
        user_verification="discouraged",
        authenticator_attachment="cross-platform",
    )
    result = client_for(dev).make_credential(options["publicKey"])
    return server.register_complete(state, result), result


def authenticate(dev, server, credentials, allow=True):
    options, state = server.authenticate_begin(credentials if allow else None, user_verification="discouraged")
    selection = client_for(dev).get_assertion(options["publicKey"])
    responses = selection.get_assertions()
    response = selection.get_response(0)
    server.authenticate_complete(state, credentials, response)
    return response, responses


@pytest.fixture
def store_key(vkey_factory, tmp_path):
    return vkey_factory("--store", str(tmp_path / "store")), str(tmp_path / "store")


@pytest.mark.parametrize("alg", [-7, -8], ids=["ES256", "EdDSA"])
@pytest.mark.parametrize("resident", [False, True], ids=["non-rk", "rk"])
def test_register_and_authenticate(store_key, alg, resident):
    key, store = store_key
    server = server_for(alg, StoreCaVerifier(ca_der(store)))
    dev = key.device()
    try:
        auth_data, reg = register(dev, server, os.urandom(16), resident)
        cred = auth_data.credential_data
        assert cred.aaguid == AAGUID
        assert cred.public_key[3] == alg
        assert auth_data.is_user_present() and not auth_data.is_user_verified()
        # The packed statement: x5c holds the batch certificate with the vkey AAGUID.
        att = AttestationObject(reg.response.attestation_object)
        assert att.fmt == "packed"
        leaf = x509.load_der_x509_certificate(att.att_stmt["x5c"][0])
        assert leaf.subject.rfc4514_string().find("OU=Authenticator Attestation") >= 0
        counters = []
        for _ in range(3):
            response, _ = authenticate(dev, server, [cred], allow=not resident)
            counters.append(response.response.authenticator_data.counter)
            if resident:
                assert response.response.user_handle is not None
        assert counters == sorted(counters) and len(set(counters)) == 3
    finally:
        dev.close()


def test_exclude_credentials(vkey):
    server = server_for()
    dev = vkey.device()
    try:
        auth_data, _ = register(dev, server, b"user-a", resident=False)
        with pytest.raises(ClientError) as e:
            register(dev, server, b"user-b", resident=False, exclude=[auth_data.credential_data])
        assert e.value.cause.code == CtapError.ERR.CREDENTIAL_EXCLUDED
    finally:
        dev.close()


def test_discoverable_accounts_and_get_next_assertion(vkey):
    server = server_for()
    dev = vkey.device()
    try:
        creds = [register(dev, server, uid, resident=True)[0].credential_data for uid in (b"u1", b"u2", b"u3")]
        response, responses = authenticate(dev, server, creds, allow=False)
        assert [r.user["id"] for r in responses] == [b"u3", b"u2", b"u1"]
    finally:
        dev.close()


def test_restart_keeps_discoverable_credential_and_counter(store_key):
    key, store = store_key
    server = server_for()
    dev = key.device()
    auth_data, _ = register(dev, server, b"persistent-user", resident=True)
    cred = auth_data.credential_data
    first, _ = authenticate(dev, server, [cred], allow=False)
    dev.close()
    key.restart()
    dev = key.device()
    try:
        second, _ = authenticate(dev, server, [cred], allow=False)
        assert second.response.user_handle == b"persistent-user"
        assert second.response.authenticator_data.counter > first.response.authenticator_data.counter
    finally:
        dev.close()


def test_presence_denied(vkey_factory):
    key = vkey_factory("--ephemeral", "--presence", "deny")
    dev = key.device()
    try:
        with pytest.raises(CtapError) as e:
            Ctap2(dev).make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"}, [{"type": "public-key", "alg": -7}])
        assert e.value.code == CtapError.ERR.OPERATION_DENIED
        with pytest.raises(CtapError) as e:
            Ctap2(dev).selection()
        assert e.value.code == CtapError.ERR.OPERATION_DENIED
    finally:
        dev.close()


def test_presence_delay_sends_keepalives_and_cancel_is_honoured(vkey_factory):
    key = vkey_factory("--ephemeral", "--presence", "delay:600")
    dev = key.device()
    try:
        seen = []
        # Granted after the delay; UPNEEDED keepalives meanwhile.
        Ctap2(dev).make_credential(
            os.urandom(32), {"id": "example.com"}, {"id": b"u"}, [{"type": "public-key", "alg": -7}],
            on_keepalive=seen.append,
        )
        assert seen and set(seen) == {2}, seen  # STATUS_UPNEEDED
        # CANCEL while waiting: the request ends with KEEPALIVE_CANCEL.
        key2 = vkey_factory("--ephemeral", "--presence", "delay:20000")
        dev2 = key2.device()
        event = threading.Event()
        with pytest.raises(CtapError) as e:
            Ctap2(dev2).make_credential(
                os.urandom(32), {"id": "example.com"}, {"id": b"u"}, [{"type": "public-key", "alg": -7}],
                event=event, on_keepalive=lambda s: event.set(),
            )
        assert e.value.code == CtapError.ERR.KEEPALIVE_CANCEL
        # The key still works afterwards.
        assert Ctap2(dev2).get_info().aaguid == AAGUID
        dev2.close()
    finally:
        dev.close()


def test_reset_within_ten_seconds_of_import_wipes_credentials(vkey):
    server = server_for()
    dev = vkey.device()
    register(dev, server, b"u", resident=True)
    dev.close()
    dev = vkey.device()  # re-import = power-up
    try:
        ctap = Ctap2(dev)
        ctap.reset()
        with pytest.raises(CtapError) as e:
            ctap.get_assertion("example.com", os.urandom(32))
        assert e.value.code == CtapError.ERR.NO_CREDENTIALS
        ctap.selection()
    finally:
        dev.close()


def test_get_info_grew_truthfully(vkey):
    dev = vkey.device()
    try:
        info = Ctap2(dev).get_info()
        assert info.versions == ["U2F_V2", "FIDO_2_0", "FIDO_2_1"]
        assert info.extensions == ["credBlob", "credProtect", "hmac-secret", "hmac-secret-mc", "largeBlobKey", "minPinLength"]
        assert info.options["rk"] and info.options["up"]
        # plat is absent, which means false (CTAP 2.1 §6.4).
        assert "plat" not in info.options
        assert info.options["clientPin"] is False  # supported, not set
        for opt in ("credMgmt", "pinUvAuthToken", "authnrCfg", "setMinPINLength", "makeCredUvNotRqd"):
            assert info.options[opt] is True, opt
        assert "uv" not in info.options  # no built-in UV unless --uv
        assert [a["alg"] for a in info.algorithms] == [-7, -8]
        assert info.max_creds_in_list == 64 and info.max_cred_id_length == 128
        assert info.pin_uv_protocols == [2, 1] and info.min_pin_length == 4
    finally:
        dev.close()


def test_attestation_from_another_store_is_untrusted(vkey_factory, tmp_path):
    a = vkey_factory("--store", str(tmp_path / "a"))
    vkey_factory("--store", str(tmp_path / "b"))
    server = server_for(verifier=StoreCaVerifier(ca_der(str(tmp_path / "b"))))
    dev = a.device()
    try:
        with pytest.raises(UntrustedAttestation):
            register(dev, server, b"u", resident=False)
    finally:
        dev.close()

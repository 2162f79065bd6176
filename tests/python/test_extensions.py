"""WebAuthn/CTAP extensions and authenticatorLargeBlobs over USB/IP, with python-fido2's
own extension classes (HmacSecretExtension in its hmac-secret and prf modes,
CredBlobExtension, LargeBlobExtension, CredProtectExtension, MinPinLengthExtension), its
LargeBlobs class, both PIN/UV auth protocols, raw CBOR for every error branch, and known
answers: the same salt gives the same output across a restart of the key, another one
without UV and another one for another credential."""
import os
import struct

import pytest
from fido2 import cbor
from fido2.client import ClientError
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.blob import LargeBlobs
from fido2.ctap2.config import Config
from fido2.ctap2.extensions import (
    CredBlobExtension,
    CredPropsExtension,
    CredProtectExtension,
    HmacSecretExtension,
    LargeBlobExtension,
    MinPinLengthExtension,
)
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.server import Fido2Server
from fido2.utils import sha256, websafe_encode
from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

from fido_helpers import fido_client, pin_file

ERR = CtapError.ERR
P = ClientPin.PERMISSION
PIN = "a1b2c3d4"
ORIGIN = "https://example.com"
RP = PublicKeyCredentialRpEntity(id="example.com", name="Example RP")
PARAMS = [{"type": "public-key", "alg": -7}]
PROTOCOLS = pytest.mark.parametrize("proto", [PinProtocolV1, PinProtocolV2], ids=["protocol1", "protocol2"])
EXTENSIONS = [
    HmacSecretExtension(allow_hmac_secret=True),
    LargeBlobExtension(),
    CredBlobExtension(),
    CredProtectExtension(),
    MinPinLengthExtension(),
    CredPropsExtension(),
]
SALT1, SALT2, SALT3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
# The serialized large-blob array of a fresh key: the empty CBOR array and its trailer.
INITIAL_ARRAY = bytes.fromhex("8076be8b528d0075f7aae98d6fa57a6d3c")


def client(dev, pin=PIN):
    return fido_client(dev, pin, ORIGIN, EXTENSIONS)


@pytest.fixture
def use_protocol(monkeypatch):
    """Makes Fido2Client negotiate only `proto` (it takes the first of ClientPin.PROTOCOLS
    that the key lists)."""

    def use(proto):
        monkeypatch.setattr(ClientPin, "PROTOCOLS", [proto])

    return use


@pytest.fixture
def pin_key(vkey_factory, tmp_path):
    """A key with a persistent store and the PIN set at start-up."""
    return vkey_factory("--store", str(tmp_path / "store"), "--pin-file", pin_file(tmp_path, PIN))


def register(dev, user_id, extensions, uv="required", rk="required"):
    server = Fido2Server(RP)
    user = PublicKeyCredentialUserEntity(id=user_id, name=f"user-{user_id.hex()}", display_name="U")
    options, state = server.register_begin(
        user, resident_key_requirement=rk, user_verification=uv, extensions=extensions
    )
    result = client(dev).make_credential(options["publicKey"])
    auth_data = server.register_complete(state, result)
    return auth_data, result.client_extension_results


def authenticate(dev, cred, extensions, uv="required"):
    server = Fido2Server(RP)
    options, state = server.authenticate_begin([cred], user_verification=uv, extensions=extensions)
    response = client(dev).get_assertion(options["publicKey"]).get_response(0)
    server.authenticate_complete(state, [cred], response)
    return response.response.authenticator_data, response.client_extension_results


def test_get_info_lists_the_extensions(vkey):
    dev = vkey.device()
    info = Ctap2(dev).get_info()
    assert info.extensions == ["credBlob", "credProtect", "hmac-secret", "hmac-secret-mc", "largeBlobKey", "minPinLength"]
    assert info.options["largeBlobs"] is True
    assert info.max_large_blob == 16384 and info.max_cred_blob_length == 32
    assert info.max_msg_size == 7609
    dev.close()


@PROTOCOLS
def test_hmac_secret_known_answers_per_credential_uv_and_restart(pin_key, use_protocol, proto):
    use_protocol(proto)
    dev = pin_key.device()
    creds, outputs = [], {}
    for user in (b"hmac-user-1", b"hmac-user-2"):
        auth_data, results = register(dev, user, {"hmacCreateSecret": True})
        assert results.hmac_create_secret is True
        assert auth_data.extensions == {"hmac-secret": True}
        creds.append(auth_data.credential_data)
    salts = {"hmacGetSecret": {"salt1": SALT1, "salt2": SALT2}}
    for n, cred in enumerate(creds):
        for uv in ("required", "discouraged"):
            auth_data, results = authenticate(dev, cred, salts, uv=uv)
            assert auth_data.is_user_verified() == (uv == "required")
            out = results.hmac_get_secret
            assert len(out.output1) == 32 and len(out.output2) == 32 and out.output1 != out.output2
            outputs[(n, uv)] = (out.output1, out.output2)
            # The same salts again: the same outputs.
            _, again = authenticate(dev, cred, salts, uv=uv)
            assert (again.hmac_get_secret.output1, again.hmac_get_secret.output2) == outputs[(n, uv)]
    assert len({o for pair in outputs.values() for o in pair}) == 8, "per credential, per UV, per salt"
    # The persistent store: a restart gives the same outputs.
    dev.close()
    pin_key.restart()
    dev = pin_key.device()
    for (n, uv), expected in outputs.items():
        _, results = authenticate(dev, creds[n], salts, uv=uv)
        assert (results.hmac_get_secret.output1, results.hmac_get_secret.output2) == expected
    dev.close()


@PROTOCOLS
def test_prf_at_creation_and_assertion(pin_key, use_protocol, proto):
    """prf maps to hmac-secret; with hmac-secret-mc the results come at creation too."""
    use_protocol(proto)
    dev = pin_key.device()
    auth_data, results = register(dev, b"prf-user", {"prf": {"eval": {"first": b"first salt"}}})
    assert results.prf.enabled is True
    at_creation = results.prf.results.first
    assert len(at_creation) == 32 and not results.prf.results.second
    assert set(auth_data.extensions) == {"hmac-secret", "hmac-secret-mc"}
    cred = auth_data.credential_data
    _, results = authenticate(dev, cred, {"prf": {"eval": {"first": b"first salt", "second": b"second"}}})
    assert results.prf.results.first == at_creation
    second = results.prf.results.second
    assert len(second) == 32 and second != at_creation
    # evalByCredential overrides eval for the credential it names.
    by_cred = {"prf": {"eval": {"first": b"other"}, "evalByCredential": {websafe_encode(cred.credential_id): {"first": b"second"}}}}
    _, results = authenticate(dev, cred, by_cred)
    assert results.prf.results.first == second
    dev.close()


def test_cred_blob_extension(vkey):
    dev = vkey.device()
    for rk in ("required", "discouraged"):
        blob = os.urandom(32)
        auth_data, _ = register(dev, b"blob-" + rk.encode(), {"credBlob": blob}, uv="discouraged", rk=rk)
        assert auth_data.extensions == {"credBlob": True}
        cred = auth_data.credential_data
        got, _ = authenticate(dev, cred, {"getCredBlob": True}, uv="discouraged")
        assert got.extensions == {"credBlob": blob}
        got, _ = authenticate(dev, cred, {}, uv="discouraged")
        assert got.extensions is None, "not asked: no output"
    # Over maxCredBlobLength: python-fido2 does not send it; raw, the output says false.
    ctap = Ctap2(dev)
    att = ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"}, PARAMS, extensions={"credBlob": bytes(33)})
    assert att.auth_data.extensions == {"credBlob": False}
    cred_id = att.auth_data.credential_data.credential_id
    a = ctap.get_assertion("example.com", os.urandom(32), [{"type": "public-key", "id": cred_id}], extensions={"credBlob": True})
    assert a.auth_data.extensions == {"credBlob": b""}
    dev.close()


@PROTOCOLS
def test_large_blob_extension_writes_with_lbw_and_reads(pin_key, use_protocol, proto):
    use_protocol(proto)
    dev = pin_key.device()
    creds = []
    for user in (b"lb-user-1", b"lb-user-2"):
        auth_data, results = register(dev, user, {"largeBlob": {"support": "required"}})
        assert results.large_blob.supported is True
        assert auth_data.extensions is None, "largeBlobKey is not an authData output"
        creds.append(auth_data.credential_data)
    data = [os.urandom(64), b"certificate " * 300]
    for cred, blob in zip(creds, data):
        _, results = authenticate(dev, cred, {"largeBlob": {"write": blob}})
        assert results.large_blob.written is True
    for cred, blob in zip(creds, data):
        _, results = authenticate(dev, cred, {"largeBlob": {"read": True}})
        assert results.large_blob.blob == blob
    # Two entries in the array, each sealed with its credential's largeBlobKey.
    assert len(LargeBlobs(Ctap2(dev)).read_blob_array()) == 2
    dev.close()


def lbw_token(ctap, proto):
    pin = ClientPin(ctap, proto())
    return pin.protocol, pin.get_pin_token(PIN, P.LARGE_BLOB_WRITE)


@PROTOCOLS
def test_large_blobs_class_fragments_and_errors(vkey_factory, tmp_path, proto):
    key = vkey_factory("--ephemeral", "--pin-file", pin_file(tmp_path, PIN))
    dev = key.device()
    ctap = Ctap2(dev)
    assert LargeBlobs(ctap).read_blob_array() == []
    assert ctap.large_blobs(0, get=100)[1] == INITIAL_ARRAY
    protocol, token = lbw_token(ctap, proto)
    blobs = LargeBlobs(ctap, protocol, token)
    # Larger than one message: written and read in two fragments each.
    entries = [{1: os.urandom(6000), 2: os.urandom(12), 3: 6000}, {1: os.urandom(3000), 2: os.urandom(12), 3: 1}]
    blobs.write_blob_array(entries)
    assert len(cbor.encode(entries)) > blobs.max_fragment_length
    assert blobs.read_blob_array() == entries
    # Per-credential blobs with keys: put, get, replace, delete.
    k1, k2 = os.urandom(32), os.urandom(32)
    blobs.write_blob_array([])
    blobs.put_blob(k1, b"one")
    blobs.put_blob(k2, b"two" * 1000)
    blobs.put_blob(k1, b"uno")
    assert blobs.get_blob(k1) == b"uno" and blobs.get_blob(k2) == b"two" * 1000
    blobs.delete_blob(k1)
    assert blobs.get_blob(k1) is None and len(blobs.read_blob_array()) == 1

    def set_raw(offset, fragment, length=None, token=token, version=protocol.VERSION):
        msg = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", offset) + sha256(fragment)
        param = protocol.authenticate(token, msg) if token else None
        return ctap.large_blobs(offset, set=fragment, length=length,
                                pin_uv_protocol=version if token else None, pin_uv_param=param)

    def expect(code, fn, *a, **kw):
        with pytest.raises(CtapError) as e:
            fn(*a, **kw)
        assert e.value.code == code, f"{e.value.code!r} != {code!r}"

    stored = ctap.large_blobs(0, get=blobs.max_fragment_length)[1]
    good = cbor.encode([]) + sha256(cbor.encode([]))[:16]
    expect(ERR.PUAT_REQUIRED, set_raw, 0, good, len(good), token=None)
    expect(ERR.PIN_AUTH_INVALID, set_raw, 0, good, len(good), token=os.urandom(32))
    _, ga_token = protocol, ClientPin(ctap, proto()).get_pin_token(PIN, P.GET_ASSERTION, "example.com")
    expect(ERR.PIN_AUTH_INVALID, set_raw, 0, good, len(good), token=ga_token)
    protocol, token = lbw_token(ctap, proto)
    expect(ERR.INTEGRITY_FAILURE, set_raw, 0, bytes(17), 17, token=token)
    expect(ERR.LARGE_BLOB_STORAGE_FULL, set_raw, 0, bytes(10), 16385, token=token)
    expect(ERR.INVALID_PARAMETER, set_raw, 0, bytes(10), None, token=token)
    expect(ERR.INVALID_SEQ, set_raw, 10, bytes(10), None, token=token)
    set_raw(0, bytes(10), 100, token=token)
    expect(ERR.INVALID_SEQ, set_raw, 11, bytes(10), None, token=token)
    expect(ERR.INVALID_LENGTH, ctap.large_blobs, 0, get=blobs.max_fragment_length + 1)
    expect(ERR.INVALID_PARAMETER, ctap.large_blobs, len(stored) + 1, get=1)
    assert ctap.large_blobs(0, get=blobs.max_fragment_length)[1] == stored, "failed writes change nothing"
    dev.close()


def test_cred_protect_and_min_pin_length_extensions(pin_key):
    dev = pin_key.device()
    ctap = Ctap2(dev)
    # minPinLength is reported only to the RP IDs setMinPINLength named.
    pin = ClientPin(ctap)
    token = pin.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
    Config(ctap, pin.protocol, token).set_min_pin_length(min_pin_length=6, rp_ids=["example.com"])
    ext = {"credentialProtectionPolicy": "userVerificationRequired", "enforceCredentialProtectionPolicy": True,
           "minPinLength": True, "credProps": True}
    auth_data, results = register(dev, b"protected", ext)
    assert auth_data.extensions == {"credProtect": 3, "minPinLength": 6}
    assert results.cred_props.rk is True
    cred = auth_data.credential_data
    authenticate(dev, cred, {}, uv="required")
    with pytest.raises(ClientError) as e:
        authenticate(dev, cred, {}, uv="discouraged")
    assert e.value.cause.code == ERR.NO_CREDENTIALS
    dev.close()


def test_outputs_only_when_asked_for(vkey):
    dev = vkey.device()
    ctap = Ctap2(dev)
    att = ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"}, PARAMS, options={"rk": True})
    assert att.auth_data.extensions is None and att.large_blob_key is None
    cred_id = att.auth_data.credential_data.credential_id
    a = ctap.get_assertion("example.com", os.urandom(32), [{"type": "public-key", "id": cred_id}])
    assert a.auth_data.extensions is None and a.large_blob_key is None
    # Asked for, but the credential has none: still no output.
    a = ctap.get_assertion("example.com", os.urandom(32), [{"type": "public-key", "id": cred_id}],
                           extensions={"largeBlobKey": True})
    assert a.large_blob_key is None
    att = ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"v"}, PARAMS, options={"rk": True},
                               extensions={"largeBlobKey": True, "credProtect": 1})
    assert att.auth_data.extensions == {"credProtect": 1} and len(att.large_blob_key) == 32
    a = ctap.get_assertion("example.com", os.urandom(32), extensions={"largeBlobKey": True})
    assert a.large_blob_key == att.large_blob_key
    dev.close()


def hmac_input(ctap, proto, salt_enc=None, salts=SALT1, salt_auth=None, protocol_member=True):
    """A raw hmac-secret input: keyAgreement, saltEnc, saltAuth, pinUvAuthProtocol."""
    key_agreement, shared = ClientPin(ctap, proto())._get_shared_secret()
    protocol = proto()
    if salt_enc is None:
        salt_enc = protocol.encrypt(shared, salts)
    m = {1: key_agreement, 2: salt_enc, 3: salt_auth or protocol.authenticate(shared, salt_enc)}
    if protocol_member:
        m[4] = protocol.VERSION
    return m, protocol, shared


@PROTOCOLS
def test_hmac_secret_error_branches_raw(vkey, proto):
    dev = vkey.device()
    ctap = Ctap2(dev)
    att = ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"}, PARAMS,
                               extensions={"hmac-secret": True})
    assert att.auth_data.extensions == {"hmac-secret": True}
    allow = [{"type": "public-key", "id": att.auth_data.credential_data.credential_id}]

    def ga(hs, options=None):
        return ctap.get_assertion("example.com", os.urandom(32), allow, extensions={"hmac-secret": hs}, options=options)

    def expect(code, hs, options=None):
        with pytest.raises(CtapError) as e:
            ga(hs, options)
        assert e.value.code == code, f"{e.value.code!r} != {code!r}"

    m, protocol, shared = hmac_input(ctap, proto, salts=SALT1 + SALT2)
    out = protocol.decrypt(shared, ga(m).auth_data.extensions["hmac-secret"])
    assert len(out) == 64
    m, _, _ = hmac_input(ctap, proto)
    m[3] = bytes(len(m[3]))
    expect(ERR.PIN_AUTH_INVALID, m)
    iv = 16 if proto is PinProtocolV2 else 0
    for n in (0, 16, 31, 33, 65):
        # A salt that decrypts to 16 bytes, or a saltEnc that is no whole number of blocks.
        expect(ERR.INVALID_PARAMETER, hmac_input(ctap, proto, salt_enc=os.urandom(iv + n))[0])
    m, _, _ = hmac_input(ctap, proto)
    m[4] = 3
    expect(ERR.INVALID_PARAMETER, m)
    for member in (1, 2, 3):
        m, _, _ = hmac_input(ctap, proto)
        del m[member]
        expect(ERR.MISSING_PARAMETER, m)
    m, _, _ = hmac_input(ctap, proto)
    m[2] = "not bytes"
    expect(ERR.CBOR_UNEXPECTED_TYPE, m)
    expect(ERR.CBOR_UNEXPECTED_TYPE, b"not a map")
    # Without pinUvAuthProtocol the protocol is 1.
    m, _, _ = hmac_input(ctap, proto, protocol_member=False)
    if proto is PinProtocolV1:
        ga(m)
    else:
        expect(ERR.PIN_AUTH_INVALID, m)
    # hmac-secret needs user presence.
    expect(ERR.UNSUPPORTED_OPTION, hmac_input(ctap, proto)[0], options={"up": False})
    # A credential without hmac-secret: no output, no error.
    plain = ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"p"}, PARAMS)
    a = ctap.get_assertion("example.com", os.urandom(32),
                           [{"type": "public-key", "id": plain.auth_data.credential_data.credential_id}],
                           extensions={"hmac-secret": hmac_input(ctap, proto)[0]})
    assert a.auth_data.extensions is None
    # largeBlobKey must be true.
    with pytest.raises(CtapError) as e:
        ctap.get_assertion("example.com", os.urandom(32), allow, extensions={"largeBlobKey": False})
    assert e.value.code == ERR.INVALID_OPTION
    dev.close()


def test_enumerated_credentials_carry_their_large_blob_key(pin_key):
    dev = pin_key.device()
    ctap = Ctap2(dev)
    pin = ClientPin(ctap)
    token = pin.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
    cdh = os.urandom(32)
    att = ctap.make_credential(cdh, {"id": "example.com"}, {"id": b"u", "name": "u"}, PARAMS, options={"rk": True},
                               extensions={"largeBlobKey": True},
                               pin_uv_param=pin.protocol.authenticate(token, cdh), pin_uv_protocol=pin.protocol.VERSION)
    from fido2.ctap2.credman import CredentialManagement

    token = pin.get_pin_token(PIN, P.CREDENTIAL_MGMT)
    creds = CredentialManagement(ctap, pin.protocol, token).enumerate_creds(sha256(b"example.com"))
    assert creds[0][CredentialManagement.RESULT.LARGE_BLOB_KEY] == att.large_blob_key
    dev.close()


def _encodings(secret):
    """How a secret could show in JSON: hex, and base64url / base64 at each of the three
    alignments it could have inside a longer byte string (the last, partial character
    dropped)."""
    import base64

    forms = {secret.hex()}
    for i in range(3):
        part = secret[i:]
        for enc in (base64.urlsafe_b64encode, base64.b64encode):
            text = enc(part).decode().rstrip("=")
            forms.add(text[:-1] if len(part) % 3 else text)
    return forms


@PROTOCOLS
def test_trace_and_events_redact_extension_secrets(vkey_factory, tmp_path, proto):
    """The decoded trace (--trace FILE) and the event stream show hmac-secret salts,
    saltEnc, saltAuth and outputs, credBlob, largeBlobKey and large-blob array bytes only
    as `<redacted: N bytes>`, for makeCredential (hmac-secret-mc, credBlob,
    largeBlobKey), getAssertion, credentialManagement and largeBlobs get/set."""
    import json

    from fido2.ctap2.credman import CredentialManagement

    from control_client import EventStream

    trace = tmp_path / "trace.jsonl"
    key = vkey_factory("--ephemeral", "--pin-file", pin_file(tmp_path, PIN), "--trace", str(trace))
    events = EventStream(key.control())
    assert events.ready.wait(10)
    dev = key.device()
    ctap = Ctap2(dev)
    pin = ClientPin(ctap, proto())
    secrets = []
    token = pin.get_pin_token(PIN, P.MAKE_CREDENTIAL | P.GET_ASSERTION, "example.com")
    secrets.append(token)
    cred_blob = os.urandom(32)
    salts = os.urandom(64)
    mc_salts, mc_protocol, mc_shared = hmac_input(ctap, proto, salts=salts)
    cdh = os.urandom(32)
    att = ctap.make_credential(
        cdh, {"id": "example.com"}, {"id": b"trace-user", "name": "t"}, PARAMS, options={"rk": True},
        extensions={"hmac-secret": True, "hmac-secret-mc": mc_salts, "credBlob": cred_blob, "largeBlobKey": True},
        pin_uv_param=pin.protocol.authenticate(token, cdh), pin_uv_protocol=pin.protocol.VERSION)
    ext = att.auth_data.extensions
    assert ext["credBlob"] is True and ext["hmac-secret"] is True
    mc_output = ext["hmac-secret-mc"]
    secrets += [salts, mc_salts[2], mc_salts[3], mc_output, mc_protocol.decrypt(mc_shared, mc_output),
                cred_blob, att.large_blob_key]
    cred_id = att.auth_data.credential_data.credential_id
    ga_salts, ga_protocol, ga_shared = hmac_input(ctap, proto, salts=salts[:32])
    a = ctap.get_assertion("example.com", os.urandom(32), [{"type": "public-key", "id": cred_id}],
                           extensions={"hmac-secret": ga_salts, "credBlob": True, "largeBlobKey": True})
    assert a.auth_data.extensions["credBlob"] == cred_blob and a.large_blob_key == att.large_blob_key
    ga_output = a.auth_data.extensions["hmac-secret"]
    secrets += [ga_salts[2], ga_salts[3], ga_output, ga_protocol.decrypt(ga_shared, ga_output)]
    cm_token = pin.get_pin_token(PIN, P.CREDENTIAL_MGMT)
    secrets.append(cm_token)
    listed = CredentialManagement(ctap, pin.protocol, cm_token).enumerate_creds(sha256(b"example.com"))
    assert listed[0][CredentialManagement.RESULT.LARGE_BLOB_KEY] == att.large_blob_key
    protocol, lbw = lbw_token(ctap, proto)
    secrets.append(lbw)
    blob = os.urandom(200)
    blobs = LargeBlobs(ctap, protocol, lbw)
    blobs.put_blob(att.large_blob_key, blob)
    assert blobs.get_blob(att.large_blob_key) == blob
    array = ctap.large_blobs(0, get=1000)[1]
    secrets += [blob, array]
    dev.close()
    assert events.wait_for("detached")
    deadline = __import__("time").monotonic() + 10
    while "largeBlobs" not in trace.read_text() and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.05)
    events.close()
    trace_text = trace.read_text()
    for name, text in (("trace file", trace_text), ("event stream", events.text)):
        for s in secrets:
            assert len(s) >= 16
            for form in _encodings(s):
                assert form not in text, f"{name}: a secret of {len(s)} bytes shows as {form[:16]}…"
    # Each secret member shows as its redaction marker with its length.
    lines = [json.loads(l) for l in trace_text.splitlines()]

    def member(kind, command, *path):
        found = []
        for l in lines:
            if l["type"] == kind and l["command"] == command:
                v = l["params" if kind == "ctapRequest" else "response"]
                for p in path:
                    v = v.get(p) if isinstance(v, dict) else None
                if v is not None:
                    found.append(v)
        assert found, (kind, command, path)
        return found

    iv = 16 if proto is PinProtocolV2 else 0
    tag = 32 if proto is PinProtocolV2 else 16
    mc_ext = member("ctapRequest", "makeCredential", "extensions")[0]
    assert mc_ext["hmac-secret-mc"]["saltEnc"] == f"<redacted: {iv + 64} bytes>"
    assert mc_ext["hmac-secret-mc"]["saltAuth"] == f"<redacted: {tag} bytes>"
    assert isinstance(mc_ext["hmac-secret-mc"]["keyAgreement"], dict), "public: shown"
    assert mc_ext["credBlob"] == "<redacted: 32 bytes>"
    assert mc_ext["largeBlobKey"] is True
    mc_out = member("ctapResponse", "makeCredential", "authData", "extensions")[0]
    assert mc_out["hmac-secret-mc"] == f"<redacted: {iv + 64} bytes>" and mc_out["credBlob"] is True
    assert member("ctapResponse", "makeCredential", "largeBlobKey") == ["<redacted: 32 bytes>"]
    ga_ext = member("ctapRequest", "getAssertion", "extensions")[0]
    assert ga_ext["hmac-secret"]["saltEnc"] == f"<redacted: {iv + 32} bytes>"
    ga_out = member("ctapResponse", "getAssertion", "authData", "extensions")[0]
    assert ga_out == {"hmac-secret": f"<redacted: {iv + 32} bytes>", "credBlob": "<redacted: 32 bytes>"}
    assert member("ctapResponse", "getAssertion", "largeBlobKey") == ["<redacted: 32 bytes>"]
    assert "<redacted: 32 bytes>" in member("ctapResponse", "credentialManagement", "largeBlobKey")
    sets = member("ctapRequest", "largeBlobs", "set")
    assert sets and all(s.startswith("<redacted: ") for s in sets)
    assert f"<redacted: {len(array)} bytes>" in member("ctapResponse", "largeBlobs", "config")

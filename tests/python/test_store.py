"""The store under a real client: migration of a store written by the format-2 release,
a full disk, a passphrase, and the crash test (SIGKILL at random moments while a client
makes discoverable credentials, assertions and PIN attempts)."""
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import threading
import time

import pytest
from fido2 import cbor
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.credman import CredentialManagement
from fido2.ctap2.pin import ClientPin, PinProtocolV2

from conftest import ROOT, VkeyProcess
from fido_helpers import pin_file

ERR = CtapError.ERR
P = ClientPin.PERMISSION
FIXTURE = os.path.join(ROOT, "fixtures", "store-v2")
ES256 = [{"type": "public-key", "alg": -7}]


def private_copy(src, dst):
    shutil.copytree(src, dst)
    os.chmod(dst, 0o700)
    for f in os.listdir(dst):
        os.chmod(os.path.join(dst, f), 0o600)


def verify(cred_pk_hex, assertion, cdh):
    CoseKey.parse(cbor.decode(bytes.fromhex(cred_pk_hex))).verify(assertion.auth_data + cdh, assertion.signature)


def assert_with(ctap, pin, pin_value, rp, cred_id):
    """getAssertion with an allowList of one, with a fresh PIN token."""
    token = pin.get_pin_token(pin_value, P.GET_ASSERTION, rp)
    cdh = os.urandom(32)
    a = ctap.get_assertion(rp, cdh, allow_list=[{"type": "public-key", "id": cred_id}],
                           pin_uv_param=pin.protocol.authenticate(token, cdh), pin_uv_protocol=2)
    return a, cdh


def test_a_store_written_by_the_format_2_release_opens_with_everything(vkey_factory, tmp_path):
    desc = json.load(open(os.path.join(FIXTURE, "store.json")))
    store = tmp_path / "store"
    private_copy(os.path.join(FIXTURE, "store"), store)
    key = vkey_factory("--store", str(store))
    assert f"serial {desc['serial']}," in key.stdout_lines[0], key.stdout_lines
    assert sorted(os.listdir(store)) == ["attestation-ca.pem", "vkey-store.dat", "vkey-store.key", "vkey.lock"]
    dev = key.device()
    try:
        ctap = Ctap2(dev)
        info = ctap.get_info()
        assert info.options["clientPin"] is True
        assert info.min_pin_length == desc["min_pin_length"]
        assert info.remaining_disc_creds == desc["remaining_discoverable_credentials"]
        pin = ClientPin(ctap, PinProtocolV2())
        # The retries spent before the upgrade stay spent.
        assert pin.get_pin_retries()[0] == desc["pin_retries"]
        cm = CredentialManagement(ctap, pin.protocol, pin.get_pin_token(desc["pin"], P.CREDENTIAL_MGMT))
        resident = [c for c in desc["credentials"] if c["resident"]]
        assert cm.get_metadata()[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == len(resident)
        rps = {r[CredentialManagement.RESULT.RP]["id"] for r in cm.enumerate_rps()}
        assert rps == {c["rp_id"] for c in resident}
        for c in resident:
            listed = cm.enumerate_creds(hashlib.sha256(c["rp_id"].encode()).digest())
            mine = [x for x in listed if x[CredentialManagement.RESULT.CREDENTIAL_ID]["id"].hex() == c["credential_id"]]
            assert len(mine) == 1, c["rp_id"]
            user = mine[0][CredentialManagement.RESULT.USER]
            assert user["id"].hex() == c["user_id"]
            assert user.get("name") == c["user_name"]
            assert user.get("displayName") == c["user_display_name"]
            assert mine[0].get(CredentialManagement.RESULT.CRED_PROTECT, 1) == c["cred_protect"]
        # Every credential (discoverable or not) signs, with the key recorded before the
        # upgrade, and its counter is past the last one seen.
        for c in desc["credentials"]:
            a, cdh = assert_with(ctap, pin, desc["pin"], c["rp_id"], bytes.fromhex(c["credential_id"]))
            verify(c["public_key_cose"], a, cdh)
            assert a.auth_data.counter > c["last_counter"], c
    finally:
        dev.close()
    # And once more after a restart of the migrated (format 3) store.
    key.restart()
    dev = key.device()
    try:
        ctap = Ctap2(dev)
        pin = ClientPin(ctap, PinProtocolV2())
        c = desc["credentials"][0]
        a, cdh = assert_with(ctap, pin, desc["pin"], c["rp_id"], bytes.fromhex(c["credential_id"]))
        verify(c["public_key_cose"], a, cdh)
        assert a.auth_data.counter > c["last_counter"] + 1
    finally:
        dev.close()


def test_rp_id_over_256_bytes_is_refused(vkey_factory, tmp_path):
    key = vkey_factory("--store", str(tmp_path / "store"))
    dev = key.device()
    try:
        ctap = Ctap2(dev)
        long_rp = "a" * 250 + ".example"
        with pytest.raises(CtapError) as e:
            ctap.make_credential(os.urandom(32), {"id": long_rp}, {"id": b"u", "name": "u"}, ES256,
                                 options={"rk": True})
        assert e.value.code == ERR.INVALID_LENGTH
        ok_rp = "a" * 248 + ".example"  # exactly 256 bytes
        ctap.make_credential(os.urandom(32), {"id": ok_rp}, {"id": b"u", "name": "u"}, ES256, options={"rk": True})
    finally:
        dev.close()


def test_max_credentials_is_truthful_and_full_is_key_store_full(vkey_factory, tmp_path):
    key = vkey_factory("--store", str(tmp_path / "store"), "--max-credentials", "3")
    dev = key.device()
    try:
        ctap = Ctap2(dev)
        for i in range(3):
            assert ctap.get_info().remaining_disc_creds == 3 - i
            ctap.make_credential(os.urandom(32), {"id": "full.example"}, {"id": bytes([i]), "name": "u"}, ES256,
                                 options={"rk": True})
        assert ctap.get_info().remaining_disc_creds == 0
        with pytest.raises(CtapError) as e:
            ctap.make_credential(os.urandom(32), {"id": "full.example"}, {"id": b"new", "name": "u"}, ES256,
                                 options={"rk": True})
        assert e.value.code == ERR.KEY_STORE_FULL
        # Replacing a user's credential still works when full.
        ctap.make_credential(os.urandom(32), {"id": "full.example"}, {"id": bytes([0]), "name": "u"}, ES256,
                             options={"rk": True})
    finally:
        dev.close()


def test_passphrase_store(vkey_factory, tmp_path):
    store = tmp_path / "store"
    pf = tmp_path / "passphrase"
    pf.write_text("correct horse battery staple\n")
    key = vkey_factory("--store", str(store), "--passphrase-file", str(pf))
    assert not (store / "vkey-store.key").exists()
    dev = key.device()
    att = Ctap2(dev).make_credential(os.urandom(32), {"id": "p.example"}, {"id": b"u", "name": "u"}, ES256,
                                     options={"rk": True})
    dev.close()
    key.stop()
    raw = (store / "vkey-store.dat").read_bytes()
    assert b"p.example" not in raw and att.auth_data.credential_data.credential_id not in raw
    # The environment variable works too; a wrong or missing passphrase is one line.
    key2 = vkey_factory("--store", str(store), env={"VKEY_PASSPHRASE": "correct horse battery staple"})
    dev = key2.device()
    a = Ctap2(dev).get_assertion("p.example", os.urandom(32))
    assert a.credential["id"] == att.auth_data.credential_data.credential_id
    dev.close()
    key2.stop()
    raw = (store / "vkey-store.dat").read_bytes()
    for env, needle in [({"VKEY_PASSPHRASE": "wrong"}, "wrong passphrase"), ({}, "protected by a passphrase")]:
        with pytest.raises(RuntimeError) as e:
            VkeyProcess("--store", str(store), env=env)
        assert needle in str(e.value) and str(e.value).count("vkey: error:") == 1, str(e.value)
    assert (store / "vkey-store.dat").read_bytes() == raw


def _set_fsize_limit(limit):
    def f():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return f


def test_a_full_disk_loses_nothing_acknowledged(tmp_path):
    """ENOSPC in the middle of writes: a small tmpfs if this machine can mount one
    (root), else (or with VKEY_TEST_NO_MOUNT=1) a file size limit (RLIMIT_FSIZE: EFBIG,
    the same partial write)."""
    store = tmp_path / "store"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = os.geteuid() == 0 and not os.environ.get("VKEY_TEST_NO_MOUNT") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mnt)], capture_output=True).returncode == 0
    if mounted:
        store = mnt / "store"
    pre = None if mounted else _set_fsize_limit(200_000)
    started = []

    def _start(args, preexec=None):
        k = _Key(args, preexec)
        started.append(k)
        return k
    try:
        key = _start(["--store", str(store)], preexec=pre)
        dev = key.device()
        ctap = Ctap2(dev)
        made, failures = [], 0
        for i in range(2000):
            try:
                att = ctap.make_credential(os.urandom(32), {"id": "full.example"},
                                           {"id": i.to_bytes(4, "big"), "name": "n" * 60, "displayName": "d" * 60},
                                           ES256, options={"rk": True})
                made.append(att.auth_data.credential_data.credential_id)
            except CtapError as e:
                assert e.code == ERR.OTHER, e
                failures += 1
                if failures >= 5:
                    break
        assert failures >= 5 and made, (len(made), failures)
        # The key keeps answering from what it has (an assertion, which must store its
        # counter first, may fail while the disk is full).
        assert ctap.get_info().remaining_disc_creds == 100_000 - len(made)
        dev.close()
        key.proc.kill()
        key.proc.wait()
        # Restarted on the full disk: everything acknowledged is there.
        key = _start(["--store", str(store)], preexec=pre)
        dev = key.device()
        assert Ctap2(dev).get_info().remaining_disc_creds == 100_000 - len(made)
        dev.close()
        key.stop()
        # Room again: the credentials are usable, all of them.
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=4m", str(mnt)], check=True)
        key = _start(["--store", str(store)])
        dev = key.device()
        a = Ctap2(dev).get_assertion("full.example", os.urandom(32))
        assert a.number_of_credentials == len(made)
        dev.close()
        key.stop()
    finally:
        for k in started:
            if k.proc.poll() is None:
                k.proc.kill()
                k.proc.wait()
        if mounted:
            subprocess.run(["umount", str(mnt)])


class _Key(VkeyProcess):
    def __init__(self, args, preexec=None):
        self.preexec = preexec
        super().__init__(*args)

    def start(self):
        if self.preexec is None:
            return super().start()
        real = subprocess.Popen

        def popen(*a, **kw):
            return real(*a, preexec_fn=self.preexec, **kw)
        subprocess.Popen = popen
        try:
            super().start()
        finally:
            subprocess.Popen = real


# ---------------------------------------------------------------------------- crash test

CRASH_PIN = "crash-pin-1234"
CRASH_RP = "crash.example"


class Ledger:
    """What the client saw acknowledged: credentials (id → public key), the last counter
    per credential, the last PIN retries value, and what was in flight at the kill."""

    def __init__(self):
        self.creds = {}
        self.counters = {}
        self.retries = 8
        self.in_flight = None
        # Credentials whose makeCredential landed but was never acknowledged.
        self.unacknowledged = 0


def crash_round(key, ledger, rng, deadline, killed):
    dev = None
    i = 0
    try:
        dev = key.device()
        ctap = Ctap2(dev)
        pin = ClientPin(ctap, PinProtocolV2())
        while time.monotonic() < deadline:
            i += 1
            ledger.in_flight = "correct-pin"
            token = pin.get_pin_token(CRASH_PIN, P.MAKE_CREDENTIAL, CRASH_RP)
            ledger.retries = 8
            ledger.in_flight = "mc"
            cdh = os.urandom(32)
            user = os.urandom(8)
            att = ctap.make_credential(cdh, {"id": CRASH_RP}, {"id": user, "name": "u"}, ES256,
                                       options={"rk": True},
                                       pin_uv_param=pin.protocol.authenticate(token, cdh), pin_uv_protocol=2)
            cd = att.auth_data.credential_data
            ledger.creds[cd.credential_id] = cbor.encode(cd.public_key).hex()
            ledger.counters[cd.credential_id] = 0
            ledger.in_flight = "correct-pin"
            cred_id = rng.choice(list(ledger.creds))
            a, cdh = assert_with(ctap, pin, CRASH_PIN, CRASH_RP, cred_id)
            ledger.retries = 8
            verify(ledger.creds[cred_id], a, cdh)
            assert a.auth_data.counter > ledger.counters[cred_id]
            ledger.counters[cred_id] = a.auth_data.counter
            if i % 3 == 0:
                ledger.in_flight = "wrong-pin"
                try:
                    pin.get_pin_token("not-the-pin-0000", P.GET_ASSERTION, CRASH_RP)
                    raise AssertionError("a wrong PIN was accepted")
                except CtapError as e:
                    assert e.code == ERR.PIN_INVALID, e
                ledger.retries -= 1
            ledger.in_flight = None
    except Exception as e:  # the connection dies with the process, in any call
        if not killed.wait(10):
            tail = "".join(key.stderr[-20:])
            raise AssertionError(f"the key failed before it was killed: {e!r}\n{tail}") from e
    finally:
        if dev is not None:
            dev.close()


def crash_check(key, ledger, rng):
    """After a restart: every acknowledged credential there (a sample signs), counters
    past the last seen, PIN retries not restored."""
    dev = key.device()
    try:
        ctap = Ctap2(dev)
        pin = ClientPin(ctap, PinProtocolV2())
        retries = pin.get_pin_retries()[0]
        if ledger.in_flight == "correct-pin":
            assert retries in (ledger.retries - 1, ledger.retries, 8), (retries, ledger.retries)
        else:
            # Never more than the client last saw; one less if a wrong PIN was in flight.
            assert retries <= ledger.retries, (retries, ledger.retries, ledger.in_flight)
        ledger.retries = retries
        sample = rng.sample(list(ledger.creds), min(5, len(ledger.creds)))
        for cred_id in sample:
            a, cdh = assert_with(ctap, pin, CRASH_PIN, CRASH_RP, cred_id)
            ledger.retries = 8
            verify(ledger.creds[cred_id], a, cdh)
            assert a.auth_data.counter > ledger.counters[cred_id], "a counter went back"
            ledger.counters[cred_id] = a.auth_data.counter
        token = pin.get_pin_token(CRASH_PIN, P.CREDENTIAL_MGMT)
        cm = CredentialManagement(ctap, pin.protocol, token)
        existing = cm.get_metadata()[CredentialManagement.RESULT.EXISTING_CRED_COUNT]
        # An unacknowledged makeCredential may have landed too.
        known = len(ledger.creds) + ledger.unacknowledged
        allowed = (known, known + 1) if ledger.in_flight == "mc" else (known,)
        assert existing in allowed, (existing, known, ledger.in_flight)
        ledger.unacknowledged = existing - len(ledger.creds)
        ledger.in_flight = None
        return existing
    finally:
        dev.close()


def test_crash_sigkill_at_random_moments(tmp_path):
    """VKEY_CRASH_KILLS (default 200) kills; VKEY_CRASH_KILLS=2000 for a soak."""
    kills = int(os.environ.get("VKEY_CRASH_KILLS", "200"))
    rng = random.Random(int(os.environ.get("VKEY_CRASH_SEED", "1234")))
    store = tmp_path / "store"
    pf = pin_file(tmp_path, CRASH_PIN)
    ledger = Ledger()
    key = VkeyProcess("--store", str(store), "--pin-file", pf)
    for k in range(kills):
        delay = rng.uniform(0.01, 0.4)
        killed = threading.Event()
        proc = key.proc

        def kill():
            proc.kill()
            killed.set()
        killer = threading.Timer(delay, kill)
        killer.start()
        crash_round(key, ledger, rng, time.monotonic() + 5, killed)
        killer.join()
        key.proc.wait()
        key.start()
        crash_check(key, ledger, rng)
    # At the end, every acknowledged credential is listed.
    dev = key.device()
    try:
        ctap = Ctap2(dev)
        pin = ClientPin(ctap, PinProtocolV2())
        cm = CredentialManagement(ctap, pin.protocol, pin.get_pin_token(CRASH_PIN, P.CREDENTIAL_MGMT))
        listed = {c[CredentialManagement.RESULT.CREDENTIAL_ID]["id"]
                  for c in cm.enumerate_creds(hashlib.sha256(CRASH_RP.encode()).digest())}
        missing = set(ledger.creds) - listed
        assert not missing, f"{len(missing)} acknowledged credentials lost"
    finally:
        dev.close()
        key.stop()
    print(f"crash test: {kills} SIGKILLs, {len(ledger.creds)} acknowledged credentials all present")

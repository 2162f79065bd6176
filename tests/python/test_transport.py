"""python-fido2 against vkey over USB/IP: CTAPHID and getInfo."""
import os
import socket
import struct

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY, CTAPHID

from usbip_hid import UsbIpConnection, UsbIpError, list_devices

AAGUID = bytes.fromhex("8fc78583dabb4ce981c293b4322ab072")


def test_devlist_shows_the_key(vkey):
    assert list_devices(vkey.host, vkey.port) == [("1-1", 0x1209, 0x0001)]


def test_descriptors_identify_a_fido_key(vkey):
    conn = UsbIpConnection(vkey.host, vkey.port)
    try:
        # Usage page 0xF1D0, usage 0x01: what libfido2 and systemd's fido_id look for.
        assert conn.report_descriptor[:5] == bytes([0x06, 0xD0, 0xF1, 0x09, 0x01])
        assert "vkey" in conn.product
        assert conn.serial and conn.serial.isalnum()
    finally:
        conn.close()


def test_init_capabilities_and_ping(vkey):
    dev = vkey.device()
    try:
        assert dev.capabilities & CAPABILITY.CBOR
        assert dev.capabilities & CAPABILITY.WINK
        assert not dev.capabilities & CAPABILITY.NMSG  # CTAP1/U2F is served (test_u2f.py)
        for size in (0, 1, 64, 1024, 7609):
            msg = os.urandom(size)
            assert dev.ping(msg) == msg
        dev.wink()
        dev.lock(1)
        dev.lock(0)
    finally:
        dev.close()


def test_get_info(vkey):
    dev = vkey.device()
    try:
        info = Ctap2(dev).get_info()
        assert info.aaguid == AAGUID
        assert info.max_msg_size == 7609
        assert info.transports == ["usb"]
        assert info.pin_uv_protocols == [2, 1]
    finally:
        dev.close()


def test_unknown_ctap_command(vkey):
    dev = vkey.device()
    try:
        assert dev.call(CTAPHID.CBOR, b"\x55") == bytes([CtapError.ERR.INVALID_COMMAND])
        with pytest.raises(CtapError) as e:
            Ctap2(dev).send_cbor(0x55)
        assert e.value.code == CtapError.ERR.INVALID_COMMAND
    finally:
        dev.close()


def test_second_import_refused_until_first_detaches(vkey):
    dev = vkey.device()
    with pytest.raises(UsbIpError, match="refused"):
        UsbIpConnection(vkey.host, vkey.port)
    dev.close()
    # Detach = the host closes the connection; the key can be imported again.
    dev2 = vkey.device()
    assert Ctap2(dev2).get_info().aaguid == AAGUID
    dev2.close()


def test_hostile_peer_is_dropped_and_others_keep_working(vkey):
    dev = vkey.device()
    try:
        s = socket.create_connection((vkey.host, vkey.port))
        s.sendall(b"\xde\xad\xbe\xef" * 20)
        s.settimeout(10)
        assert s.recv(100) == b""  # closed by the server
        s.close()
        assert dev.ping(b"still here") == b"still here"
    finally:
        dev.close()
    assert vkey.wait_stderr("closing connection")

#!/usr/bin/env python3
"""Runs python-fido2's own device test suite (`tests/device` of the fido2 sdist of the
installed version) unattended against vkey over USB/IP.

Their tests are not copied here: the sdist is fetched with `pip download` into a cache
directory the first time and its `tests/` tree is run as it is. What a person does for
those tests is done by the hooks python-fido2 itself offers:

* the key: `fido2.hid`'s backend functions (`list_descriptors`, `get_descriptor`,
  `open_connection`) are pointed at a USB/IP "bus" holding one vkey, reached through
  `usbip_hid.UsbIpConnection` (a host that behaves like vhci-hcd + usbhid);
* plugging and touching: their `--controller URL` option drives a "Pico controller"
  (a test jig that switches a USB port's power and presses the key) over HTTP. This
  script serves that small HTTP API on 127.0.0.1: `power/off` drops the USB/IP
  connection, `power/on` lets the next import happen, which vkey treats as a fresh
  power-up (PIN_AUTH_BLOCKED cleared, the 10 s reset window opened again); `touch/*`
  has nothing to do, as the key runs with `--presence auto`;
* the PIN: their suite sets `a1b2c3d4` itself on a key without one (a fresh
  `--ephemeral` key).

    run.py [PYTEST-ARGS...]         e.g. run.py -q, run.py -k clientpin -x

Environment: VKEY_BIN (default target/release/vkey), VKEY_TEST_CACHE (default
${XDG_CACHE_HOME:-~/.cache}/vkey-tests) for the sdist.
"""
import http.server
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fido2.hid  # noqa: E402
from fido2.hid.base import HidDescriptor  # noqa: E402
from usbip_hid import UsbIpConnection, UsbIpError, list_devices  # noqa: E402
from vkey_process import VkeyProcess  # noqa: E402

PICO_PORT = 6  # their default --pico-port; any number works, it only names the route


def cache_dir():
    base = os.environ.get("VKEY_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vkey-tests"
    )
    os.makedirs(base, exist_ok=True)
    return base


def fetch_device_tests():
    """The `tests/` tree of the fido2 sdist whose version is installed (downloaded once)."""
    version = importlib.metadata.version("fido2")
    base = cache_dir()
    tree = os.path.join(base, f"fido2-{version}")
    if os.path.isfile(os.path.join(tree, "tests", "device", "conftest.py")):
        return tree
    sdist = os.path.join(base, f"fido2-{version}.tar.gz")
    if not os.path.isfile(sdist):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
             "--no-deps", f"fido2=={version}", "-d", base],
            check=True,
        )
    tmp = tree + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"fido2-{version}/tests/")
                   or m.name == f"fido2-{version}/pyproject.toml"]
        tar.extractall(tmp, members=members, filter="data")
    shutil.rmtree(tree, ignore_errors=True)
    os.rename(os.path.join(tmp, f"fido2-{version}"), tree)
    shutil.rmtree(tmp, ignore_errors=True)
    return tree


class UsbIpBus:
    """One USB port with vkey behind it. Powered: the key is listed and may be opened
    (imported); unpowered: it is not listed and its open connections are closed."""

    def __init__(self, host, port, busid):
        self.host, self.port, self.busid = host, port, busid
        self.lock = threading.Lock()
        self.powered = True
        self.plug = 0  # counts power-ups: a new path per plug, like a new hidraw node
        self.connections = []
        devices = [d for d in list_devices(host, port) if d[0] == busid]
        if len(devices) != 1:
            raise RuntimeError(f"bus id {busid} not exported by {host}:{port}: {devices}")
        _busid, self.vid, self.pid = devices[0]

    def path(self):
        return f"usbip://{self.host}:{self.port}/{self.busid}#{self.plug}"

    # --- fido2.hid backend ----------------------------------------------------------
    def list_descriptors(self):
        with self.lock:
            if not self.powered:
                return []
            return [HidDescriptor(self.path(), self.vid, self.pid, 64, 64, None, None)]

    def get_descriptor(self, path):
        for d in self.list_descriptors():
            if d.path == path:
                return d
        raise ValueError(f"no such device: {path}")

    def open_connection(self, descriptor):
        with self.lock:
            if descriptor.path != self.path() or not self.powered:
                raise OSError(f"device gone: {descriptor.path}")
            # After a power cycle vkey may still be ending the previous session: a
            # second import is refused until it has; retry for a while.
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = UsbIpConnection(self.host, self.port, self.busid)
                    break
                except (UsbIpError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self.connections.append(conn)
            return conn

    # --- the controller -------------------------------------------------------------
    def power(self, on):
        with self.lock:
            if on and not self.powered:
                self.plug += 1
            self.powered = on
            if not on:
                for c in self.connections:
                    c.close()
                self.connections.clear()


def serve_controller(bus):
    """The HTTP API of python-fido2's PicoController, on a free loopback port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            parts = self.path.strip("/").split("/")
            ok = self.path == "/"
            if len(parts) == 3 and parts[0] == f"usb{PICO_PORT}":
                if parts[1] == "power" and parts[2] in ("on", "off"):
                    bus.power(parts[2] == "on")
                    ok = True
                elif parts[1] == "touch" and parts[2] in ("on", "off"):
                    ok = True  # --presence auto: every touch is already granted
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok" if ok else b"no")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# Tests that fail on vkey only because a feature they use is not there yet, with the
# getInfo option whose arrival makes them run for real (they then must pass). Marked
# xfail(strict): a pass while the feature is still missing fails the run too.
NEEDS_FEATURE = {
    # The token is asked with the lbw permission, which CTAP 2.1 §6.5.5.7 refuses with
    # UNAUTHORIZED_PERMISSION on a key without largeBlobs; the test wants the token and
    # then PIN_AUTH_INVALID from credentialManagement.
    "test_credman.py::test_missing_permissions": "largeBlobs",
}


class VkeyPlugin:
    def __init__(self, info):
        self.info = info

    def pytest_report_header(self):
        return [f"vkey getInfo: versions {self.info.versions}, extensions "
                f"{self.info.extensions}, options {dict(self.info.options)}"]

    def pytest_collection_modifyitems(self, items):
        import pytest

        for item in items:
            for test, option in NEEDS_FEATURE.items():
                if test in item.nodeid and not self.info.options.get(option):
                    item.add_marker(pytest.mark.xfail(
                        reason=f"needs the {option} option, which vkey does not have yet",
                        strict=True))


def key_info(bus):
    from fido2.ctap2 import Ctap2
    from fido2.hid import CtapHidDevice

    desc = bus.list_descriptors()[0]
    dev = CtapHidDevice(desc, bus.open_connection(desc))
    try:
        return Ctap2(dev).info
    finally:
        bus.power(False)  # drop the import again: their suite starts from a fresh plug
        bus.power(True)


def main(argv):
    tree = fetch_device_tests()
    key = VkeyProcess("--ephemeral", "--presence", "auto")
    try:
        bus = UsbIpBus(key.host, key.port, "1-1")
        fido2.hid.list_descriptors = bus.list_descriptors
        fido2.hid.get_descriptor = bus.get_descriptor
        fido2.hid.open_connection = bus.open_connection
        info = key_info(bus)
        server = serve_controller(bus)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        print(f"python-fido2 {importlib.metadata.version('fido2')} device tests from {tree}")
        print(f"vkey on {key.host}:{key.port}, controller {url}", flush=True)

        import pytest

        code = pytest.main([
            "--rootdir", tree, "-c", os.path.join(tree, "pyproject.toml"),
            "-p", "no:cacheprovider",
            # "--opt=value": pytest finds the conftest that defines them from the
            # positional paths, which a separate value would be mistaken for.
            f"--controller={url}", f"--pico-port={PICO_PORT}",
            "-rsx",  # the reason of every skip and xfail in the summary
            *argv,
            os.path.join(tree, "tests", "device"),
        ], plugins=[VkeyPlugin(info)])
        server.shutdown()
        return int(code)
    finally:
        key.stop()
        if key.proc.returncode not in (0, -15):
            print(f"vkey exited with {key.proc.returncode}:\n{''.join(key.stderr)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

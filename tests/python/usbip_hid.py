"""A python-fido2 `CtapHidConnection` that speaks USB/IP, the way Linux's vhci-hcd +
usbhid do: import the device, enumerate it, keep one interrupt-IN URB outstanding at all
times and write reports to interrupt OUT. With it, `fido2.hid.CtapHidDevice` and
everything above it (Ctap2, ClientPin, Fido2Client) run against vkey over a real
USB/IP connection, without a kernel.
"""
import collections
import socket
import struct

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

USBIP_VERSION = 0x0111
OP_REQ_DEVLIST, OP_REP_DEVLIST = 0x8005, 0x0005
OP_REQ_IMPORT, OP_REP_IMPORT = 0x8003, 0x0003
CMD_SUBMIT, CMD_UNLINK, RET_SUBMIT, RET_UNLINK = 1, 2, 3, 4
DIR_OUT, DIR_IN = 0, 1


class UsbIpError(Exception):
    pass


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise UsbIpError("connection closed by the server")
        buf += chunk
    return bytes(buf)


def list_devices(host, port):
    """OP_REQ_DEVLIST: [(busid, vid, pid)]."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(struct.pack(">HHI", USBIP_VERSION, OP_REQ_DEVLIST, 0))
        _ver, code, status, n = struct.unpack(">HHII", _recv_exact(s, 12))
        assert code == OP_REP_DEVLIST and status == 0
        out = []
        for _ in range(n):
            rec = _recv_exact(s, 312)
            busid = rec[256:288].split(b"\0")[0].decode()
            vid, pid = struct.unpack(">HH", rec[300:304])
            _recv_exact(s, 4 * rec[311])
            out.append((busid, vid, pid))
        return out


class UsbIpConnection(CtapHidConnection):
    def __init__(self, host, port, busid="1-1", timeout=60):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.seq = 0
        self.reports = collections.deque()
        self.in_seq = None
        self.sock.sendall(struct.pack(">HHI", USBIP_VERSION, OP_REQ_IMPORT, 0) + busid.encode().ljust(32, b"\0"))
        _ver, code, status = struct.unpack(">HHI", _recv_exact(self.sock, 8))
        if code != OP_REP_IMPORT or status != 0:
            self.sock.close()
            raise UsbIpError(f"import of {busid} refused (status {status})")
        rec = _recv_exact(self.sock, 312)
        self.busid = rec[256:288].split(b"\0")[0].decode()
        self.vid, self.pid = struct.unpack(">HH", rec[300:304])
        # Enumerate as Linux does, then read the strings we need.
        self.device_descriptor = self.control_in(0x80, 6, 0x0100, 0, 18)
        self.config_descriptor = self.control_in(0x80, 6, 0x0200, 0, 255)
        self.product = self._string(2)
        self.serial = self._string(3)
        self.control_out(0x00, 9, 1, 0)  # SET_CONFIGURATION(1)
        self.control_out(0x21, 0x0A, 0, 0)  # SET_IDLE
        self.report_descriptor = self.control_in(0x81, 6, 0x2200, 0, 34)
        self._submit_in()

    # --- URB plumbing -------------------------------------------------------------
    def _next_seq(self):
        self.seq += 1
        return self.seq

    def submit(self, ep, direction, setup=b"\0" * 8, length=0, data=b""):
        seq = self._next_seq()
        hdr = struct.pack(">IIIII", CMD_SUBMIT, seq, 0x00010002, direction, ep)
        hdr += struct.pack(">IiiiI", 0, length, 0, 0, 0) + setup
        self.sock.sendall(hdr + data)
        return seq

    def unlink(self, victim):
        seq = self._next_seq()
        self.sock.sendall(struct.pack(">IIIIII", CMD_UNLINK, seq, 0x00010002, 0, 0, victim) + b"\0" * 24)
        return seq

    def _recv_reply(self, in_seqs):
        hdr = _recv_exact(self.sock, 48)
        cmd, seq, _devid, _dir, _ep, status, actual = struct.unpack(">IIIIIiI", hdr[:28])
        if cmd == RET_SUBMIT:
            data = _recv_exact(self.sock, actual) if seq in in_seqs else b""
            return ("submit", seq, status, actual, data)
        if cmd == RET_UNLINK:
            return ("unlink", seq, status, 0, b"")
        raise UsbIpError(f"unexpected reply {cmd:#x}")

    def wait(self, seq, in_seqs=()):
        """Waits for the reply to `seq`; interrupt-IN completions met on the way are
        queued as reports and the IN URB resubmitted, as usbhid does."""
        while True:
            ins = set(in_seqs) | ({self.in_seq} if self.in_seq is not None else set())
            kind, rseq, status, actual, data = self._recv_reply(ins)
            if rseq == self.in_seq and kind == "submit":
                if status != 0:
                    raise UsbIpError(f"interrupt IN failed: {status}")
                self.reports.append(data)
                self._submit_in()
                if seq is None:
                    return
                continue
            if rseq == seq:
                return kind, status, actual, data
            raise UsbIpError(f"reply for unknown seqnum {rseq}")

    def _submit_in(self):
        self.in_seq = self.submit(1, DIR_IN, length=64)

    def control_in(self, rtype, req, value, index, length):
        setup = struct.pack("<BBHHH", rtype, req, value, index, length)
        seq = self.submit(0, DIR_IN, setup, length)
        _k, status, _a, data = self.wait(seq, in_seqs=(seq,))
        if status != 0:
            raise UsbIpError(f"control IN {req:#x} stalled ({status})")
        return data

    def control_out(self, rtype, req, value, index, data=b""):
        setup = struct.pack("<BBHHH", rtype, req, value, index, len(data))
        seq = self.submit(0, DIR_OUT, setup, len(data), data)
        _k, status, actual, _d = self.wait(seq)
        if status != 0:
            raise UsbIpError(f"control OUT {req:#x} stalled ({status})")
        return actual

    def _string(self, index):
        d = self.control_in(0x80, 6, 0x0300 | index, 0x0409, 255)
        return d[2:].decode("utf-16-le")

    # --- CtapHidConnection ----------------------------------------------------------
    def write_packet(self, data):
        data = bytes(data).ljust(64, b"\0")
        seq = self.submit(1, DIR_OUT, length=len(data), data=data)
        _k, status, actual, _d = self.wait(seq)
        if status != 0 or actual != len(data):
            raise UsbIpError(f"interrupt OUT: status {status}, actual {actual}")

    def read_packet(self):
        while not self.reports:
            self.wait(None)
        return self.reports.popleft()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def open_device(host, port, busid="1-1"):
    """A python-fido2 CtapHidDevice on vkey over USB/IP."""
    conn = UsbIpConnection(host, port, busid)
    desc = HidDescriptor(f"usbip://{host}:{port}/{busid}", conn.vid, conn.pid, 64, 64, conn.product, conn.serial)
    return CtapHidDevice(desc, conn)

"""A small client for vkey's control interface (HTTP/1.1 + JSON over a Unix socket),
standard library only."""
import base64
import http.client
import json
import socket
import threading


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("vkey", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class ControlError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Control:
    def __init__(self, path, busid="1-1"):
        self.path = path
        self.busid = busid

    def raw(self, method, route, body=None):
        """(status, parsed JSON or None) for `route` (absolute, or relative to the key)."""
        if not route.startswith("/"):
            route = f"/v1/keys/{self.busid}/{route}" if route else f"/v1/keys/{self.busid}"
        conn = UnixHTTPConnection(self.path)
        try:
            data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
            conn.request(method, route, body=data, headers={"content-type": "application/json"})
            r = conn.getresponse()
            text = r.read()
            try:
                return r.status, json.loads(text) if text else None
            except ValueError:
                return r.status, text
        finally:
            conn.close()

    def call(self, method, route, body=None):
        status, v = self.raw(method, route, body)
        if status >= 300:
            raise ControlError(status, v)
        return v

    def get(self, route=""):
        return self.call("GET", route)

    def post(self, route, body=None):
        return self.call("POST", route, body if body is not None else {})

    def delete(self, route):
        return self.call("DELETE", route)


class EventStream:
    """Collects the key's Server-Sent Events in a thread: `.events` is a list of
    (event name, data dict); `.text` all raw bytes received."""

    def __init__(self, control):
        self.events = []
        self.text = ""
        self.ready = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(control.path)
        self.sock.sendall(f"GET /v1/keys/{control.busid}/events HTTP/1.1\r\nHost: vkey\r\n\r\n".encode())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            self.text += chunk.decode(errors="replace")
            buf += chunk
            # Whole lines only; chunked-encoding size lines are not "data:" lines.
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                if not line:
                    self.ready.set()  # the end of the response head
                if line.startswith("data:"):
                    try:
                        d = json.loads(line[5:].strip())
                    except ValueError:
                        continue
                    self.events.append((d.get("type"), d))

    def types(self):
        return [t for t, _ in self.events]

    def wait_for(self, kind, timeout=30):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if kind in self.types():
                return True
            time.sleep(0.05)
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

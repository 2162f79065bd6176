"""`vkey serve` as a child process on a free loopback port, for the pytest suites and
the python-fido2 device-suite runner."""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from usbip_hid import open_device  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
VKEY = os.environ.get("VKEY_BIN", os.path.join(TARGET, "release", "vkey"))


class VkeyProcess:
    """`vkey serve` on 127.0.0.1:<free port>; its stderr is kept for assertions."""

    def __init__(self, *args, env=None):
        self.args = list(args)
        if "--control" not in self.args:
            # Each key its own control socket, so that tests can run side by side.
            self.control_dir = tempfile.mkdtemp(prefix="vkey-ctl-")
            self.args += ["--control", os.path.join(self.control_dir, "control.sock")]
        self.control_path = self.args[self.args.index("--control") + 1]
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.stderr = []
        self.start()

    def start(self):
        cmd = [VKEY, "serve", "--listen", "127.0.0.1:0", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        self.stdout_lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read()
                raise RuntimeError(f"vkey exited before listening: {err}")
            self.stdout_lines.append(line)
            m = re.match(r"listening on ([\d.]+):(\d+) ", line)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                break
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def _drain(self, proc):
        for line in proc.stderr:
            self.stderr.append(line)
        for line in proc.stdout:
            self.stdout_lines.append(line)

    def wait_stderr(self, text, timeout=30):
        """Whether a line containing `text` reaches vkey's stderr within `timeout` s.
        The log is read by a thread, so a line may arrive after the event behind it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.stderr):
                return True
            time.sleep(0.05)
        return False

    def device(self, busid="1-1"):
        return open_device(self.host, self.port, busid)

    def control(self, busid="1-1"):
        from control_client import Control

        return Control(self.control_path, busid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self):
        self.stop()
        self.start()

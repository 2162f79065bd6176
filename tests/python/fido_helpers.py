"""python-fido2 helpers shared by the suites: the person at the keyboard (a PIN, UV
allowed), a client that asks them, and a PIN file vkey will accept."""
import os

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction


class PinInteraction(UserInteraction):
    """What Fido2Client asks of a person: the PIN (`pin`), and UV, which is allowed."""

    def __init__(self, pin):
        self.pin = pin

    def request_pin(self, permissions, rp_id):
        return self.pin

    def request_uv(self, permissions, rp_id):
        return True


def fido_client(dev, pin=None, origin="https://example.com", extensions=None):
    """A Fido2Client on `dev` whose user knows `pin`; python-fido2's default extensions
    unless `extensions` is given."""
    kw = {} if extensions is None else {"extensions": extensions}
    return Fido2Client(dev, DefaultClientDataCollector(origin), user_interaction=PinInteraction(pin), **kw)


def pin_file(tmp_path, pin):
    """`pin` in a file only its owner may read (vkey refuses others), as --pin-file takes it."""
    f = tmp_path / "pin"
    f.write_text(pin + "\n")
    os.chmod(f, 0o600)
    return str(f)

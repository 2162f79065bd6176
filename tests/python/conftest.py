"""Fixtures: a real `vkey serve` process on a free loopback port."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from vkey_process import ROOT, TARGET, VKEY, VkeyProcess  # noqa: E402, F401 (tests import them from here)


@pytest.fixture
def vkey():
    p = VkeyProcess("--ephemeral")
    yield p
    p.stop()


@pytest.fixture
def vkey_factory():
    procs = []

    def make(*args, env=None):
        p = VkeyProcess(*args, env=env)
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.stop()

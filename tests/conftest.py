"""Suite-wide settings: one math thread per test process.

pytest-xdist already runs one worker per core; letting torch/OpenMP in each worker spread over every core as
well oversubscribes a small machine many times over (seen here: a model test taking 47 s instead of 3 s).
Subprocesses started by tests inherit the environment variable.
"""

import os
import socket
from collections.abc import Callable

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def pick_free_ports(n: int) -> list[int]:
    """n distinct TCP ports on loopback that were free a moment ago (all held open together while picking)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def free_ports() -> Callable[[int], list[int]]:
    """Tests that start servers on fixed ports (real processes) take their ports from here."""
    return pick_free_ports

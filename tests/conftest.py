"""Suite-wide settings: one math thread per test process.

pytest-xdist already runs one worker per core; letting torch/OpenMP in each worker spread over every core as
well oversubscribes a small machine many times over (seen here: a model test taking 47 s instead of 3 s).
Subprocesses started by tests inherit the environment variable.
"""

import os
from collections.abc import Callable

import pytest

from tests.helpers.ports import free_ports as pick_free_ports

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture
def free_ports() -> Callable[[int], list[int]]:
    """Tests that start servers on fixed ports (real processes) take their ports from here."""
    return pick_free_ports

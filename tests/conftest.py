"""Suite-wide settings: one math thread per test process.

pytest-xdist already runs one worker per core; letting torch/OpenMP in each worker spread over every core as
well oversubscribes a small machine many times over (seen here: a model test taking 47 s instead of 3 s).
Subprocesses started by tests inherit the environment variable.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

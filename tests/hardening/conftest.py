"""Puts this folder on sys.path so ``live_stack`` imports by bare name under any pytest import mode, and hands its
fixtures (``live``, ``shared_live``) to the probes."""

import pathlib
import sys

_HERE = str(pathlib.Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from live_stack import live, shared_live  # noqa: E402, F401

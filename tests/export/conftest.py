"""Make this folder's helper module importable under any pytest import mode (the suite uses importlib)."""

import pathlib
import sys

_HERE = str(pathlib.Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

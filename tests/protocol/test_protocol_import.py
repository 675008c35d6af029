"""The protocol package must stay torch-free: actors import it, and the actor image has no torch."""

from __future__ import annotations

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_import_protocol_leaves_torch_out():
    code = (
        "import sys, protocol, protocol.sockets, protocol.curve, protocol.codec, protocol.validate\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'tensorboard') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

"""Every runnable benchmark answers ``--help`` with its usage and writes nothing.

A benchmark without an argument parser runs in full when asked for help (minutes of work) and overwrites its
committed results with numbers from whatever machine asked: that happened once with ``bench.gradient_flow``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def _runnable() -> list[str]:
    """Every bench module (as a ``-m`` name) whose source has a ``__main__`` block."""
    names = []
    for path in sorted([*BENCH.glob("*.py"), *BENCH.glob("*/*.py")]):  # not rglob: the peer's venv lies below
        if "__main__" not in path.read_text():
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        names.append(".".join(rel.parts[:-1] if rel.name == "__main__" else rel.parts))
    return names


def _snapshot() -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in (BENCH / "results").rglob("*") if p.is_file()}


def test_the_benchmarks_are_found() -> None:
    found = _runnable()
    assert {"bench.gradient_flow", "bench.step_latency", "bench.peer.run", "bench.run_all"} <= set(found), found


@pytest.mark.parametrize("module", _runnable())
def test_help_prints_usage_and_runs_nothing(module: str) -> None:
    before = _snapshot()
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:"), proc.stdout[:500]
    assert _snapshot() == before, "asking for help changed bench/results"

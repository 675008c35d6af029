"""docker/check_torch_variant.py, the learner build's guard against a CUDA torch in a `cpu` image (pip falls back to
PyPI's CUDA wheel when the CPU index cannot be reached). The script runs here as the build runs it, against this
environment's torch and against stand-in torch packages that report the builds this machine does not have."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import compose as dt

SCRIPT = dt.DOCKER_DIR / "check_torch_variant.py"


def _module():
    spec = importlib.util.spec_from_file_location("check_torch_variant", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("variant", "version", "cuda", "hip", "ok"),
    [
        ("cpu", "2.13.0+cpu", None, None, True),
        ("cpu", "2.13.0", None, None, True),  # macOS / aarch64 wheels carry no local version
        ("cpu", "2.13.0+cu130", "13.0", None, False),
        ("cpu", "2.13.0", "12.8", None, False),  # PyPI's Linux wheel: CUDA without a +cu suffix
        ("cpu", "2.13.0+rocm6.4", None, "6.4", False),
        ("cuda", "2.13.0", "12.8", None, True),
        ("cuda", "2.13.0+cpu", None, None, False),
        ("cu128", "2.13.0+cu128", "12.8", None, True),
        ("cu128", "2.13.0+cu126", "12.6", None, False),
        ("rocm6.4", "2.13.0+rocm6.4", None, "6.4", True),
        ("rocm6.4", "2.13.0+cpu", None, None, False),
        ("metal", "2.13.0", None, None, False),
    ],
)
def test_variant_mismatch(variant, version, cuda, hip, ok):
    problem = _module().variant_mismatch(variant, version, cuda, hip)
    assert (problem is None) == ok, problem
    if not ok:
        assert variant in problem


def _run(variant: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dt.process_env({"PYTHONPATH": str(pythonpath)} if pythonpath else {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), variant], capture_output=True, text=True, timeout=300, env=env, cwd="/"
    )


def _stand_in_torch(root: Path, version: str, cuda: str | None) -> Path:
    package = root / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = {version!r}\nfrom torch import version\n")
    (package / "version.py").write_text(f"cuda = {cuda!r}\nhip = None\n")
    return root


def test_a_cuda_torch_fails_a_cpu_build(tmp_path):
    result = _run("cpu", _stand_in_torch(tmp_path, "2.13.0+cu130", "13.0"))
    assert result.returncode == 1
    assert "TORCH_VARIANT=cpu installed torch 2.13.0+cu130, a CUDA 13.0 build" in result.stderr
    assert _run("cu130", tmp_path).returncode == 0


def test_this_environments_torch_passes_as_what_it_is():
    import torch

    variant = "cpu" if torch.version.cuda is None else "cuda"
    result = _run(variant)
    assert result.returncode == 0, result.stderr
    assert f"torch {torch.__version__}" in result.stdout
    assert _run("rocm6.4").returncode == 1


def test_usage_error():
    assert _run("").returncode == 1  # an empty variant is unknown
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage" in result.stderr

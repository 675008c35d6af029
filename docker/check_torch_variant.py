"""Fail the learner image build when the installed torch is not the build that TORCH_VARIANT asked for.

pip takes torch from several places (the variant's index, PyPI or a mirror of it, a local wheel folder) and picks
the best match among them. When the variant's index cannot be reached, pip gives up on it and quietly installs
PyPI's Linux wheel, which is a multi-gigabyte CUDA build: a `cpu` image built that way still works, so nothing but
a check after the install notices. Run by docker/learner.Dockerfile right after `pip install`:

    python check_torch_variant.py VARIANT      # cpu, cuda, cu126, cu128, ..., rocm6.4, ...

Exit status 0 when torch matches (the version is printed), 1 with the reason on stderr otherwise.
Standard library only apart from torch itself, which is imported only by main().
"""

from __future__ import annotations

import sys


def variant_mismatch(variant: str, version: str, cuda: str | None, hip: str | None) -> str | None:
    """None when torch ``version`` (built against CUDA ``cuda`` / ROCm ``hip``) is a build of ``variant``, else why
    not. ``cpu``: neither CUDA nor ROCm, and no +cu/+rocm local version; ``cuda`` and ``cuNNN``: a CUDA build
    (``cuNNN`` also that CUDA version); ``rocm...``: a ROCm build."""
    local = version.partition("+")[2]
    if variant == "cpu":
        if cuda is not None or hip is not None or local.startswith(("cu", "rocm")):
            built = f"CUDA {cuda}" if cuda is not None else f"ROCm {hip}" if hip is not None else local
            return (
                f"TORCH_VARIANT=cpu installed torch {version}, a {built} build: the CPU index was not used "
                "(unreachable? set TORCH_INDEX_URL to a mirror, or put a CPU torch wheel in docker/wheels/)"
            )
        return None
    if variant == "cuda" or variant.startswith("cu"):
        if cuda is None:
            return f"TORCH_VARIANT={variant} installed torch {version}, which is not a CUDA build"
        wanted = variant[2:]
        if wanted.isdigit() and cuda.replace(".", "") != wanted:
            return f"TORCH_VARIANT={variant} installed torch {version}, built for CUDA {cuda}"
        return None
    if variant.startswith("rocm"):
        if hip is None:
            return f"TORCH_VARIANT={variant} installed torch {version}, which is not a ROCm build"
        return None
    return f"unknown TORCH_VARIANT={variant} (cpu, cuda, cu126, cu128, ..., rocm...)"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_torch_variant.py VARIANT", file=sys.stderr)
        return 2
    import torch

    cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)
    problem = variant_mismatch(argv[0], torch.__version__, cuda, hip)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"torch {torch.__version__} (CUDA {cuda}, ROCm {hip}) matches TORCH_VARIANT={argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Print the project's requirements (the core set, plus the extras named as arguments) one per line, read from
pyproject.toml in the current directory.

The images install these before they copy the sources, so that a change to the code reuses the layer holding the
dependencies (torch alone is ~200 MB) instead of installing them all again; the project itself follows with
``pip install --no-deps`` and ``pip check`` confirms nothing is missing. Standard library only (runs before any
install):

    python project_requirements.py            # the core set (the actor image)
    python project_requirements.py learner    # the core set and the learner extra (the learner image)
    ONNXRUNTIME_PACKAGE=onnxruntime-gpu python project_requirements.py   # the GPU actor image's core set

``ONNXRUNTIME_PACKAGE`` swaps the ONNX Runtime build (onnxruntime-gpu has the CUDA execution provider): the two
packages install the same module, so they must never both be installed, and an extra could only add one.
"""

from __future__ import annotations

import os
import sys
import tomllib

ONNXRUNTIME_BUILDS = ("onnxruntime", "onnxruntime-gpu")


def requirements(project: dict, extras: list[str], onnxruntime: str = "onnxruntime") -> list[str]:
    if onnxruntime not in ONNXRUNTIME_BUILDS:
        raise SystemExit(
            f"error: ONNXRUNTIME_PACKAGE must be one of {', '.join(ONNXRUNTIME_BUILDS)}, got {onnxruntime!r}"
        )
    found = [
        onnxruntime + req[len("onnxruntime") :] if _name(req) == "onnxruntime" else req
        for req in project.get("dependencies", [])
    ]
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"error: pyproject.toml has no extra {extra!r} (it has {', '.join(sorted(optional))})")
        found += optional[extra]
    return found


def _name(requirement: str) -> str:
    """The distribution name at the start of a requirement string (``onnxruntime>=1.20`` -> ``onnxruntime``)."""
    end = len(requirement)
    for i, ch in enumerate(requirement):
        if not (ch.isalnum() or ch in "-_."):
            end = i
            break
    return requirement[:end].lower()


def main(argv: list[str]) -> int:
    with open("pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    print("\n".join(requirements(project, argv, os.environ.get("ONNXRUNTIME_PACKAGE", "onnxruntime"))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

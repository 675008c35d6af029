"""Print the project's requirements (the core set, plus the extras named as arguments) one per line, read from
pyproject.toml in the current directory.

The images install these before they copy the sources, so that a change to the code reuses the layer holding the
dependencies (torch alone is ~200 MB) instead of installing them all again; the project itself follows with
``pip install --no-deps`` and ``pip check`` confirms nothing is missing. Standard library only (runs before any
install):

    python project_requirements.py            # the core set (the actor image)
    python project_requirements.py learner    # the core set and the learner extra (the learner image)
"""

from __future__ import annotations

import sys
import tomllib


def requirements(project: dict, extras: list[str]) -> list[str]:
    found = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"error: pyproject.toml has no extra {extra!r} (it has {', '.join(sorted(optional))})")
        found += optional[extra]
    return found


def main(argv: list[str]) -> int:
    with open("pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    print("\n".join(requirements(project, argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

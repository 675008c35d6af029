#!/usr/bin/env bash
# Create bench/peer/.venv-sf with Sample Factory 2.1.1 (pinned by sf-constraints.txt) for the side-by-side
# benchmark. It is a virtual environment of its own: Sample Factory needs gymnasium 0.29 and numpy 1.x, the
# project's .venv has gymnasium 1.x and numpy 2.x. Idempotent: a finished install is left alone.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SF_VENV:-$here/.venv-sf}"
python="${PYTHON:-python3}"
stamp="$venv/.installed"
if [[ -f "$stamp" && "$stamp" -nt "$here/sf-constraints.txt" ]]; then
  echo "Sample Factory environment ready: $venv"
  exit 0
fi
test -x "$venv/bin/python" || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$here/sf-constraints.txt")
# torch first and pinned, so nothing resolves an unpinned (CUDA, multi-GB) build.
"${pip[@]}" torch==2.13.0
"${pip[@]}" sample-factory==2.1.1 popgym pygame
# minigrid asks for pygame-ce, which installs over pygame's module of the same name: take it without its pins.
"${pip[@]}" --no-deps minigrid
touch "$stamp"
echo "Sample Factory environment ready: $venv"

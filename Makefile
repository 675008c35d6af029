# The two front-door commands: `make train` and `make test`. Each creates .venv and installs the pinned
# dependency set (constraints.txt) on first use, so a fresh clone needs nothing but python3 and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# Parallel test workers: the suite is sized for 2 cores.
TEST_WORKERS ?= 2

.PHONY: install test check train bench extras clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[learner,dev]'
	@# memory-gym (Mystery Path) pins gymnasium 0.29 but runs on gymnasium 1.x: installed without its pins.
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt pygame
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt memory-gym
	@# memory-maze (Memory Maze) renders with MuJoCo through OSMesa: Debian's libosmesa6, installed when missing
	@# and apt-get is usable (as root); without it the Memory Maze tests skip, saying why.
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt memory-maze mujoco gym
	@# POPGym (card memory tasks) and MiniGrid (Memory): minigrid asks for pygame-ce, which would replace pygame's
	@# module of the same name, so it is installed without its pins (it runs on pygame).
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt popgym
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt minigrid
	@# A fresh Debian machine has no package lists until `apt-get update` has run once: update, then install.
	-@ldconfig -p 2>/dev/null | grep -q libOSMesa || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libosmesa6 >/dev/null 2>&1 || \
		echo "note: libosmesa6 is not installed; the Memory Maze tests will skip"; }
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned learner + dev dependency set

check: $(STAMP)  ## static checks (settings in pyproject.toml): ruff lint and format, mypy, the layout's import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: $(STAMP)  ## run the whole test suite
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

train: $(STAMP)  ## train AGaLiTe on T-Maze with the local stack (learner + actors); ARGS="--help" lists options
	$(PY) -m learner.launch $(ARGS)

bench: $(STAMP)  ## run the benchmarks in bench/ (writes bench/results/)
	$(PY) -m bench.run_all

extras: $(STAMP)  ## (re)install the optional environment packages into an existing .venv
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt pygame
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt memory-gym
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt memory-maze mujoco gym
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt popgym
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt minigrid

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache

"""Run the benchmark scripts in ``bench/`` one after another (``make bench``), each as its own process.

    python -m bench.run_all                      # every script, in the order below
    python -m bench.run_all --list               # what would run
    python -m bench.run_all e2e_throughput policy_update_latency
    python -m bench.run_all --skip learning_curve
    python -m bench.run_all --args "learning_curve=--minutes 25" --args "step_latency=--quick"

Scripts are found by file: every ``bench/*.py`` with a ``main`` function (not this file, ``machine.py`` or
``__init__.py``). One at a time, never in parallel: they measure the machine and must not compete with each other.
A failing script is reported and the rest still run; the exit status is non-zero when any failed. Each script
writes its own results to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NOT_SCRIPTS = {"__init__", "run_all", "machine"}
#: Quick, self-contained measurements first; the long end-to-end runs (learning curves: an hour by default) last.
ORDER = [
    "model_costs",
    "r_approximation",
    "agalite_scan",
    "step_latency",
    "model_throughput",
    "policy_update_latency",
    "e2e_throughput",
    "ddp_learner",
    "gradient_flow",
    "value_source",
    "solved_stability",
    "memory_sweep",
    "learning_curve",
]


def discover() -> list[str]:
    found = []
    for path in sorted(BENCH.glob("*.py")):
        if path.stem in NOT_SCRIPTS:
            continue
        try:
            tree = ast.parse(path.read_text())
        except SyntaxError:
            continue
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            found.append(path.stem)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda n: (rank.get(n, len(ORDER)), n))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scripts", nargs="*", help="run only these (names without .py; default: all)")
    ap.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="leave these out")
    ap.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra command-line arguments for one script (repeatable)",
    )
    ap.add_argument("--list", action="store_true", help="print the scripts that would run and stop")
    ap.add_argument(
        "--keep-going",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the remaining scripts after one fails (default: yes)",
    )
    args = ap.parse_args(argv)

    available = discover()
    unknown = sorted((set(args.scripts) | set(args.skip)) - set(available))
    if unknown:
        ap.error(f"unknown scripts {unknown}; available: {', '.join(available)}")
    extra: dict[str, list[str]] = {}
    for item in args.args:
        name, sep, rest = item.partition("=")
        if not sep or name not in available:
            ap.error(f"--args wants NAME=ARGS with NAME one of {', '.join(available)}; got {item!r}")
        extra.setdefault(name, []).extend(shlex.split(rest))
    todo = [n for n in (args.scripts or available) if n not in set(args.skip)]
    if args.list:
        for name in todo:
            print(" ".join(["python", "-m", f"bench.{name}", *extra.get(name, [])]))
        return 0

    results: list[tuple[str, int, float]] = []
    for name in todo:
        cmd = [sys.executable, "-m", f"bench.{name}", *extra.get(name, [])]
        print(f"\n=== bench.{name} ({' '.join(cmd[3:]) or 'defaults'}); load {os.getloadavg()[0]:.2f} ===", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        results.append((name, rc, time.monotonic() - t0))
        if rc != 0 and not args.keep_going:
            break
    print("\n=== summary ===")
    for name, rc, secs in results:
        print(f"  {name:24s} {'ok' if rc == 0 else f'FAILED (exit {rc})':16s} {secs:7.1f} s")
    return 0 if all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())

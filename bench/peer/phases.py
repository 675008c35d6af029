"""Split each stored T-Maze run into its two phases: finding the junction, then learning the memory.

Run: ``python -m bench.peer.phases`` (reads ``bench/results/peer_<task>.json``, writes
``bench/results/peer_phases.md``; seconds, no training).

Why: on the long corridors the env steps to the threshold add up two different things. Until the first episodes
reach the junction every episode times out with the same return, so nothing teaches the walk and a near-uniform
policy reaches position 99 only by luck; once episodes arrive regularly, the success rate climbs from guessing (0.5
of the arrivals) to the threshold as fast as the model learns to carry the cue. The first phase is exploration and
says little about the memory model; the second is what the memory model changes. A run's arrival is the first
logged point where its success rate reaches ``ARRIVAL`` (0.3: arrivals are regular and half of them guessed right);
its memory phase is from there to the task's threshold.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

from bench.peer.run import RESULTS, load
from bench.peer.tasks import TASKS
from bench.report import write_with_notes

#: Success rate that marks regular arrivals at the junction (about half of them right: the agent is guessing).
ARRIVAL = 0.3
PHASE_TASKS = ("tmaze_20", "tmaze_50", "tmaze_100")
#: Runners compared by default: our GRU-128, the default AGaLiTe before and with the full first write.
RUNNERS = ("ours-gru", "ours-agalite-r2distinct", "ours-agalite-firstwrite")


def phases(curve: Sequence[Sequence[float]], threshold: float) -> tuple[float | None, float | None]:
    """(env steps at arrival, env steps from arrival to the threshold) for one run's (step, success) curve.

    None where the run never arrived, or arrived and never reached the threshold."""
    arrival = next((step for step, value in curve if value >= ARRIVAL), None)
    if arrival is None:
        return None, None
    reached = next((step for step, value in curve if step >= arrival and value >= threshold), None)
    return arrival, None if reached is None else reached - arrival


def _k(x: float | None) -> str:
    return "never" if x is None else f"{x / 1000:,.0f}k"


def _median(values: list[float | None]) -> str:
    """Median over the runs with a value, and how many had one."""
    known = [v for v in values if v is not None]
    if not known:
        return f"- (0/{len(values)})"
    return f"{_k(statistics.median(known))} ({len(known)}/{len(values)})"


def table(tasks: Sequence[str], runners: Sequence[str], results: Path) -> list[str]:
    lines = [
        f"| task | runner | seeds | arrival (success first >= {ARRIVAL}), per seed "
        "| memory phase (arrival to threshold), per seed | median arrival | median memory phase |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in tasks:
        task = TASKS[name]
        stored = load(task, results)["runs"]
        for runner in runners:
            runs = sorted((r for r in stored.values() if r["runner"] == runner), key=lambda r: int(r["seed"]))
            if not runs:
                continue
            split = [phases(r.get("curve") or [], task.threshold) for r in runs]
            arrivals, memory = [a for a, _ in split], [m for _, m in split]
            seeds = ", ".join(str(r["seed"]) for r in runs)
            lines.append(
                f"| {name} | `{runner}` | {seeds} | {' / '.join(map(_k, arrivals))} | {' / '.join(map(_k, memory))} "
                f"| {_median(arrivals)} | {_median(memory)} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(PHASE_TASKS), help="comma-separated peer task names")
    parser.add_argument("--runners", default=",".join(RUNNERS), help="comma-separated runner names, in row order")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where peer_<task>.json lie")
    parser.add_argument("--out", type=Path, default=None, help="the page to write (default: <results-dir>/...)")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(sorted(TASKS))}")
    out = args.out or args.results_dir / "peer_phases.md"
    lines = [
        "# T-Maze runs in two phases: finding the junction, then learning the memory",
        "",
        "Written by `python -m bench.peer.phases` from the stored curves of `peer_<task>.json` (its docstring says "
        f"why). Arrival: the first logged point where the success rate (100-episode window) reached {ARRIVAL}; "
        "memory phase: env steps from there to the task's threshold. `never`: the run did not get there within its "
        "budget. `ours-agalite-r2distinct`: the default AGaLiTe with the gated first write (the default preset "
        "until 2026-12-02); `ours-agalite-firstwrite`: with the full first write.",
        "",
        *table(tasks, [r for r in args.runners.split(",") if r], args.results_dir),
        "",
    ]
    write_with_notes(out, "\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

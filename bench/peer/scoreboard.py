"""The issue's targets, task by task, from the side-by-side results: who learns each memory task in fewer env steps.

    python -m bench.peer.scoreboard     # writes bench/results/peer_scoreboard.md from bench/results/peer_*.json
    python -m bench.peer.scoreboard --candidate="--segment-length 128"   # the page if those flags were the default

Why: the ``peer_<task>.md`` reports keep every run ever made (ablations, earlier defaults, one-seed looks), which is
what a diagnosis needs and what a reader asking "does the default beat the peer?" cannot use. This page answers that
question only, per task: Sample Factory's better config (median over its seeds), and our GRU-128 and AGaLiTe **at
today's defaults**, which are the stored runs whose resolved settings (model, PPO, segment, batch) equal what
``bench.peer.run`` would launch at this commit. A run made at an earlier default is left out even where its runner
has the same name, so the page goes stale honestly (a task with no run at today's defaults says so) instead of
quoting an old default as today's. Targets: our GRU at most Sample Factory's better median, and our AGaLiTe at most
our GRU's wherever the env declares a memory horizon of 20 steps or more.

A run at today's defaults may also be stored under another runner name when it was made by flag before its setting
became the default (``ALIASES``); its settings are checked the same way. ``--candidate`` writes the page as if some
flags were added to the defaults (to peer_scoreboard_candidate.md), counting runs of any of our runner names made at
those settings: which tasks still need runs before a setting can become the default.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.peer.run import RESULTS, RUNS, cut_short, family, median_or_none, ours_command, resolved_settings, summarise
from bench.peer.tasks import TASKS, Task
from bench.report import write_with_notes
from envs.registry import check_env
from learner.cli import parse_config

#: Runner names under which runs at what is now the default were stored (made by flag before the change).
ALIASES: dict[str, tuple[str, ...]] = {
    "ours-agalite": ("ours-agalite-r2distinct", "ours-agalite-firstwrite", "ours-agalite-pv", "ours-agalite-ent003"),
    "ours-gru": ("ours-gru-1pass",),
}
#: The AGaLiTe-versus-GRU target covers memories at least this long (env steps, as the env declares them).
LONG_MEMORY = 20


def todays_settings(task: Task, runner: str, candidate: Sequence[str] = ()) -> dict[str, Any]:
    """What ``bench.peer.run`` would launch for ``runner`` on ``task`` now (with the ``candidate`` flags added),
    flattened as the stored runs are."""
    argv = ours_command(task, runner, 1, RUNS / "scoreboard", list(candidate))[3:]  # without "python -m learner.launch"
    return resolved_settings({"config": parse_config(argv, "scoreboard").to_dict()})


def runs_at_defaults(
    runs: dict[str, Any], runner: str, today: dict[str, Any], any_name: bool = False
) -> dict[str, Any]:
    """The stored runs of ``runner`` (or its aliases; with ``any_name``, of any of our runners) made at ``today``'s
    settings."""
    names = (runner, *ALIASES.get(runner, ()))
    return {
        k: r
        for k, r in runs.items()
        if (r["runner"] in names or (any_name and family(r["runner"]) == "ours")) and resolved_settings(r) == today
    }


@dataclass(frozen=True)
class Side:
    """One runner's runs on one task: env steps to the threshold per run, and what qualifies them."""

    steps: tuple[float | None, ...]  # env steps to the threshold per run (None: never)
    final: float | None  # median final value, shown where the threshold was never reached
    stopped_early: int  # runs ended before the budget without reaching the threshold (run.cut_short)

    @property
    def runs(self) -> int:
        return len(self.steps)

    @property
    def reached(self) -> int:
        return sum(x is not None for x in self.steps)

    @property
    def median(self) -> float | None:
        """Median env steps to the threshold over the runs (None: never), never counting as the worst."""
        return median_or_none(list(self.steps), self.runs)


def side(runs: dict[str, Any], budget: int) -> Side:
    finals = [r["final"] for r in runs.values() if r.get("final") is not None]
    early = sum(cut_short(r, budget) for r in runs.values())
    return Side(
        tuple(r["steps_to_threshold"] for r in runs.values()),
        statistics.median(finals) if finals else None,
        early,
    )


def ahead_share(a: Side, b: Side) -> float | None:
    """The share of seed pairs (one run of a, one of b) in which a reached the threshold in fewer env steps.

    Never counts as worse than any number, equal counts (never against never included) as half. With 3-5 seeds whose
    env steps spread 3-10x, two medians can differ while most pairs split either way; this says how often one side's
    seed actually beats the other's (0.5: no difference to see).
    """
    if not a.steps or not b.steps:
        return None
    inf = float("inf")
    wins = 0.0
    for x in a.steps:
        for y in b.steps:
            xs, ys = inf if x is None else x, inf if y is None else y
            wins += 1.0 if xs < ys else 0.5 if xs == ys else 0.0
    return wins / (a.runs * b.runs)


def _cell(s: Side) -> str:
    if s.runs == 0:
        return "no run"
    if s.median is not None:
        return f"{s.median / 1000:,.0f}k ({s.reached}/{s.runs})"
    final = "" if s.final is None else f"; final {s.final:.2f}"
    early = f"; {s.stopped_early} stopped early" if s.stopped_early else ""
    return f"never ({s.reached}/{s.runs}{final}{early})"


def _at_most(a: Side, b: Side) -> str:
    """Whether median a <= median b, where never counts as worse than any number; '?' without runs on both sides."""
    if a.runs == 0 or b.runs == 0:
        return "?"
    if a.median is None:
        return "no" if b.median is not None else "tie (neither)"
    return "yes" if b.median is None or a.median <= b.median else "no"


def board_row(task: Task, data: dict[str, Any], candidate: Sequence[str] = ()) -> dict[str, Any]:
    """One task's row; with ``candidate`` flags, as if they were the defaults (runs of any of our runner names whose
    settings equal the defaults plus those flags count)."""
    runs = data.get("runs", {})
    horizon = check_env(task.env_id, task.env_kwargs).memory_horizon
    preview = bool(candidate)
    gru = side(runs_at_defaults(runs, "ours-gru", todays_settings(task, "ours-gru", candidate), preview), task.budget)
    agalite = side(
        runs_at_defaults(runs, "ours-agalite", todays_settings(task, "ours-agalite", candidate), preview), task.budget
    )
    summary = summarise(task, runs)
    better = summary.get("sf_better")
    sf_runs = {k: r for k, r in runs.items() if better and r["runner"] == better}
    sf = side(sf_runs, task.budget)
    long_memory = horizon is not None and horizon >= LONG_MEMORY
    return {
        "task": task.name,
        "horizon": horizon,
        "sf": (better, sf),
        "gru": gru,
        "agalite": agalite,
        "gru_vs_sf": _at_most(gru, sf),
        "agalite_vs_gru": _at_most(agalite, gru) if long_memory else "not covered",
        "agalite_ahead": ahead_share(agalite, gru) if long_memory else None,
    }


def write(rows: list[dict[str, Any]], out: Path, candidate: Sequence[str] = ()) -> None:
    flags = " ".join(candidate)
    title = (
        f"# Scoreboard if `{flags}` were the default"
        if candidate
        else "# Scoreboard: today's defaults against Sample Factory"
    )
    preview = (
        [
            f'A preview, written by `python -m bench.peer.scoreboard --candidate="{flags}"`: the same page with '
            "today's defaults plus these flags, counting runs of any of our runner names made at those settings. "
            "It says which tasks still need runs before the flags can become the default.",
            "",
        ]
        if candidate
        else []
    )
    lines = [
        title,
        "",
        *preview,
        "Written by `python -m bench.peer.scoreboard` from `bench/results/peer_*.json` (see its docstring). Per task: "
        "median env steps to the task's threshold over the seeds run (reached/run in brackets; `never` counts as "
        "worse than any number), Sample Factory's better config, and our GRU-128 and small AGaLiTe at **today's "
        "defaults** only: runs made at an earlier default are left out (they stay in each task's own report). "
        f"Targets: our GRU <= the peer; our AGaLiTe <= our GRU where the env's memory horizon is {LONG_MEMORY} "
        "steps or more.",
        "",
        "| task | memory horizon | Sample Factory (better config) | our GRU-128 | our AGaLiTe | GRU <= peer | "
        "AGaLiTe <= GRU | AGaLiTe seed ahead of a GRU seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        better, sf = row["sf"]
        sf_cell = f"{_cell(sf)}, `{better}`" if better else "no run"
        horizon = "not declared" if row["horizon"] is None else str(row["horizon"])
        share = row["agalite_ahead"]
        pairs = row["agalite"].runs * row["gru"].runs
        ahead = "-" if share is None else f"{share:.2f} of {pairs} pair{'' if pairs == 1 else 's'}"
        lines.append(
            f"| [{row['task']}](peer_{row['task']}.md) | {horizon} | {sf_cell} | {_cell(row['gru'])} | "
            f"{_cell(row['agalite'])} | {row['gru_vs_sf']} | {row['agalite_vs_gru']} | {ahead} |"
        )

    def tally(key: str) -> str:
        judged = [r[key] for r in rows]
        met, missed, ties = (sum(v == x for v in judged) for x in ("yes", "no", "tie (neither)"))
        return (
            f"met on {met} of the {met + missed} tasks that someone solved, missed on {missed}; {ties} where nobody did"
        )

    lines += [
        "",
        f"GRU <= peer: {tally('gru_vs_sf')}. AGaLiTe <= GRU (long memories): {tally('agalite_vs_gru')}. "
        "`?`: a side has no run at today's defaults; `tie (neither)`: neither median reached the threshold "
        "(the median final value of the measure is shown instead); `stopped early`: a time limit ended the run before "
        "its budget. The last column: in what share of the (AGaLiTe seed, GRU seed) pairs the AGaLiTe's run reached "
        "the threshold in fewer env steps (never: worse than any number; equal: half); 0.5 is no difference, and "
        "with three to five seeds a median's lead backed by a share near 0.5 is within the seeds' spread.",
        "",
    ]
    write_with_notes(out, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where peer_<task>.json lie")
    parser.add_argument("--out", type=Path, default=None, help="the page to write (default: <results-dir>/...)")
    parser.add_argument(
        "--candidate",
        default="",
        help='learner flags to preview as defaults, one string (e.g. "--segment-length 128"): writes '
        "peer_scoreboard_candidate.md instead",
    )
    args = parser.parse_args(argv)
    candidate = shlex.split(args.candidate)
    rows = []
    for task in TASKS.values():
        path = args.results_dir / f"peer_{task.name}.json"
        if path.exists():
            rows.append(board_row(task, json.loads(path.read_text()), candidate))
    name = "peer_scoreboard_candidate.md" if candidate else "peer_scoreboard.md"
    out = args.out or args.results_dir / name
    write(rows, out, candidate)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

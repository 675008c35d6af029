"""Learning vs memory length: AGaLiTe, GTrXL and LSTM at small sizes on the T-Maze as the corridor grows.

    python -m bench.memory_sweep [--corridors 16 48] [--budgets 500000 1500000] [--seeds 1] [--extra 48:2]
    python -m bench.memory_sweep --resume --extra 48:2     # add rows to an existing result, rerun nothing else
    python -m bench.memory_sweep --report-only             # rewrite the .md / .png from the .json

Why: the project claims that AGaLiTe learns as well as GTrXL ("equal or better learning"). This benchmark measures
it directly: success rate against env steps for the three memory models on the same T-Maze, for a short and a long
corridor (the cue must be held for ``corridor_length - 1`` steps), with the same PPO settings and the same budget
in env steps for every model of one corridor length.

What: every run is the whole local stack (``python -m learner.launch``: learner + 2 actor processes over ZeroMQ)
from the default small preset ``tmaze-agalite`` (PPO lr 1e-3, 2 epochs x 2 minibatches, entropy 0.01; 2 actors x
8 envs, 16 env rows per update), overridden by flags:

* AGaLiTe: the preset's model (L2, d_model 64, 2 heads x 32, d_ffc 64, eta 4, r 2);
* GTrXL: the same trunk (L2, d_model 64, 2 heads x 32, d_ffc 64), memory 64 of layer inputs (``memory_form inputs``);
* LSTM: one layer of 128 units (the same encoder and heads);
* all: ``--segment-length 64`` (the truncated-BPTT window covers the whole corridor, so the cue can get a gradient),
  ``--env.kwargs {"corridor_length": N}`` (6 distractor bits, the env default), ``--seed S``, and
  ``--total-steps B`` so the learner stops itself at the budget (it overshoots by at most one update).

Budgets are in env steps, not wall time; wall time and steps/s are recorded but depend on the machine and its load.
Progress is read from the run's ``status.json``; the curves come from its TensorBoard scalars
(``charts/success_rate`` and ``charts/episodic_return``, both over the last 100 episodes). One training stack runs at
a time. Results are saved after every run (``--resume`` skips runs already saved with the same flags and budget).
Writes bench/results/memory_sweep.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.learning_curve import first_at_or_above, fresh_run_dir, launch, read_scalars, stays_at_or_above_from, stop
from bench.machine import machine_info, machine_markdown
from bench.report import write_with_notes

RESULTS = Path(__file__).resolve().parent / "results"
PRESET = "tmaze-agalite"
SEGMENT_LENGTH = 64
LEVEL = 0.9
JUNCTION_LEVEL = 0.4  # success at about chance or better: most episodes walk the corridor to the junction
WINDOW = 100  # the learner's success rate and return are over its last 100 finished episodes
COMMON_FLAGS = ["--segment-length", str(SEGMENT_LENGTH)]
MODELS: dict[str, tuple[str, list[str]]] = {
    "agalite": ("AGaLiTe L2 d64 eta4 r2", ["--model.kind", "agalite"]),
    "gtrxl": (
        "GTrXL L2 d64 M64",
        ["--model.kind", "gtrxl", "--model.memory-len", "64", "--model.memory-form", "inputs"],
    ),
    "lstm": ("LSTM 128", ["--model.kind", "lstm", "--model.rnn-hidden", "128"]),
}
TAGS = ("charts/success_rate", "charts/episodic_return", "charts/SPS")
COLORS = {"agalite": "tab:blue", "gtrxl": "tab:orange", "lstm": "tab:green"}


def run_flags(model: str, corridor: int, seed: int, budget: int) -> list[str]:
    """The override flags of one run (after ``--preset tmaze-agalite``)."""
    return [
        *MODELS[model][1],
        *COMMON_FLAGS,
        "--env.kwargs",
        json.dumps({"corridor_length": corridor}),
        "--seed",
        str(seed),
        "--total-steps",
        str(budget),
    ]


def stays_from_step(pts: list[list[float]], level: float) -> int | None:
    """The env step from which the ``[step, value]`` curve stays at or above ``level`` to the end of the run."""
    i = stays_at_or_above_from([v for _, v in pts], level)
    return None if i is None else int(pts[i][0])


def window_full_from(trace: list[list[int]], window: int = WINDOW) -> int | None:
    """The env steps of the first status poll at which ``window`` episodes had finished: from there on the logged
    success rate is over a full window. An upper bound on the true step (polls are about a second apart), so
    crossings judged on it are conservative."""
    return next((steps for steps, episodes in trace if episodes >= window), None)


def first_full_window(record: dict[str, Any], level: float) -> int | None:
    """The first env step with success >= ``level`` among the points logged over a full episode window."""
    start = record.get("window_full_from")
    if start is None:
        return None
    return first_at_or_above([p for p in record["success_rate"] if p[0] >= start], level)


def _status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def run_one(model: str, corridor: int, seed: int, budget: int, max_minutes: float, keep: bool) -> dict[str, Any]:
    """One training run to ``budget`` env steps; returns its record (curves included)."""
    flags = run_flags(model, corridor, seed, budget)
    name = f"memory-sweep-{model}-c{corridor}-s{seed}"
    run_dir = fresh_run_dir(name)
    log_path = run_dir.parent / f"{name}.log"
    load_before = os.getloadavg()
    t0 = time.time()
    proc = launch(PRESET, run_dir, extra=flags, log_path=log_path)
    print(
        f"[memory_sweep] {model} corridor {corridor} seed {seed}: {budget:,} steps in {run_dir} (pid {proc.pid})",
        flush=True,
    )
    deadline = time.monotonic() + max_minutes * 60.0
    reached_at: float | None = None
    last_print = time.monotonic()
    stopped_by = "learner (total steps reached)"
    episodes_trace: list[list[int]] = []  # [env_steps, episodes finished so far] from status.json, about every second
    while proc.poll() is None:
        time.sleep(1.0)
        st = _status(run_dir)
        steps = int(st.get("env_steps", 0))
        if "episodes" in st and (not episodes_trace or episodes_trace[-1] != [steps, int(st["episodes"])]):
            episodes_trace.append([steps, int(st["episodes"])])
        if steps >= budget and reached_at is None:
            reached_at = time.monotonic()
        if reached_at is not None and time.monotonic() - reached_at > 120.0:  # the learner should have stopped itself
            stopped_by = "stop() after the budget (learner did not exit)"
            break
        if time.monotonic() > deadline:
            stopped_by = f"stop() at the {max_minutes:g}-minute safety limit"
            break
        if time.monotonic() - last_print > 60.0:
            last_print = time.monotonic()
            print(
                f"  {time.time() - t0:6.0f} s  steps {steps:,}  success {st.get('success_rate')}  "
                f"return {st.get('mean_return')}  v{st.get('policy_version')}",
                flush=True,
            )
    rc = stop(proc)
    wall = time.time() - t0
    load_after = os.getloadavg()
    scalars = read_scalars(run_dir / "tb", TAGS)
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}

    def series(tag: str) -> list[list[float]]:
        return [[e["step"], round(e["value"], 4)] for e in scalars.get(tag, [])]

    success, ret = series("charts/success_rate"), series("charts/episodic_return")
    window_full = window_full_from(episodes_trace)
    sps = [e["value"] for e in scalars.get("charts/SPS", [])]
    env_steps = int(summary.get("env_steps", _status(run_dir).get("env_steps", 0)))
    train_s = summary.get("seconds")
    record = {
        "model": model,
        "label": MODELS[model][0],
        "corridor_length": corridor,
        "seed": seed,
        "budget_env_steps": budget,
        "preset": PRESET,
        "flags": flags,
        "command": " ".join(["python", "-m", "learner.launch", "--preset", PRESET, *flags]),
        "env_steps": env_steps,
        "updates": summary.get("updates"),
        "episodes": summary.get("episodes"),
        "final_success": success[-1][1] if success else None,
        "final_return": ret[-1][1] if ret else None,
        "window_full_from": window_full,
        "first_step_success_ge_0_4": None,  # filled in by save() (first_full_window)
        "first_step_success_ge_0_9": None,
        "first_step_success_ge_0_9_any_window": first_at_or_above(success, LEVEL),
        "stays_ge_0_9_from": stays_from_step(success, LEVEL),
        "wall_s": round(wall, 1),
        "train_s": round(train_s, 1) if isinstance(train_s, (int, float)) else None,
        "mean_sps": round(env_steps / train_s, 1) if train_s else None,
        "mean_logged_sps": round(sum(sps) / len(sps), 1) if sps else None,
        "stopped_by": stopped_by,
        "exit_code": rc,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "model_config": config.get("model"),
        "episodes_trace": episodes_trace,
        "success_rate": success,
        "episodic_return": ret,
    }
    print(
        f"[memory_sweep] {model} corridor {corridor} seed {seed}: {env_steps:,} steps in {wall / 60:.1f} min, "
        f"final success {record['final_success']}, "
        f"first >= {LEVEL} (any window) at {record['first_step_success_ge_0_9_any_window']}, "
        f"exit {rc}",
        flush=True,
    )
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
        log_path.unlink(missing_ok=True)
    return record


# ---- report ---------------------------------------------------------------------------------------------------------
def _fmt_steps(v: int | None) -> str:
    return "not reached" if v is None else f"{v:,}"


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def write_markdown(result: dict[str, Any], path: Path) -> None:
    runs = sorted(result["runs"], key=lambda r: (r["corridor_length"], r["seed"], list(MODELS).index(r["model"])))
    lines = [
        "# Memory sweep: AGaLiTe vs GTrXL vs LSTM on the T-Maze as the corridor grows",
        "",
        machine_markdown(result["machine"]),
        "",
        f"Generated by `python -m bench.memory_sweep` (`bench/memory_sweep.py`). Every run: "
        f"`python -m learner.launch --preset {PRESET}` (learner + 2 actor processes x 8 envs, 16 env rows per "
        f"update; PPO lr 1e-3, 2 epochs x 2 minibatches, entropy 0.01) with `{' '.join(COMMON_FLAGS)}`, the model "
        "flags below, `--env.kwargs '{\"corridor_length\": N}'` (6 distractor bits), `--seed S` and "
        "`--total-steps B`. Success rate and return are over the last 100 episodes (TensorBoard "
        "`charts/success_rate`, `charts/episodic_return`). Optimal return: 4 - 0.1 (N - 1) (2.5 at N 16, -0.7 at "
        "N 48); an agent that walks the corridor but ignores the cue succeeds about half the time.",
        "",
        "Models (trunk as in the preset where it applies): "
        + "; ".join(f"**{m}** = {lab}: `{' '.join(fl)}`" for m, (lab, fl) in MODELS.items())
        + ".",
        "",
        "| corridor | seed | model | budget (env steps) | env steps | final success | final return | "
        f"first step success >= {JUNCTION_LEVEL} | first step success >= {LEVEL} | stays >= {LEVEL} from | "
        "wall (min) | mean SPS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['corridor_length']} | {r['seed']} | {r['label']} | {r['budget_env_steps']:,} | {r['env_steps']:,} | "
            f"{_fmt(r['final_success'])} | {_fmt(r['final_return'], 2)} | "
            f"{_fmt_steps(r['first_step_success_ge_0_4'])} | {_fmt_steps(r['first_step_success_ge_0_9'])} | "
            f"{_fmt_steps(r['stays_ge_0_9_from'])} | "
            f"{r['wall_s'] / 60:.1f} | {_fmt(r['mean_sps'], 0)} |"
        )
    lines += [
        "",
        f"First step success >= {JUNCTION_LEVEL}: when most episodes first reach the junction (an agent that "
        f"walks the corridor but ignores the cue scores about 0.5; episodes that time out at 1000 steps score 0), "
        f"i.e. the exploration part of the task. "
        f"First step success >= {LEVEL}: the first logged point at or above {LEVEL} once at least {WINDOW} "
        f"episodes had finished (so the window is full; judged from `status.json` polled about every second, "
        f"so it is conservative by at most a few thousand steps; the raw first crossing, which can be an early "
        f"window of a handful of lucky episodes, is `first_step_success_ge_0_9_any_window` in the JSON; "
        f"both 'first step' columns use the same full-window rule). "
        f"Stays >= {LEVEL} from: the point from which the curve never drops below {LEVEL} again within the run. "
        "Wall time is from the launch to the exit of the stack (start-up, ONNX export and final checkpoint "
        "included); mean SPS is env steps over the learner's training-loop time. Both are indicative only (see "
        "the notes). Curves: `memory_sweep.png`; the full series and every run's flags: `memory_sweep.json`.",
        "",
    ]
    notes = result.get("notes") or []
    if notes:
        lines += ["## Notes", "", *[f"{i}. {n}" for i, n in enumerate(notes, 1)], ""]
    write_with_notes(path, "\n".join(lines))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corridors = sorted({r["corridor_length"] for r in result["runs"]})
    fig, axes = plt.subplots(2, len(corridors), figsize=(5.5 * len(corridors), 7), squeeze=False)
    styles = ["-", "--", ":", "-."]
    seeds = sorted({r["seed"] for r in result["runs"]})
    for c, corridor in enumerate(corridors):
        for r in sorted(result["runs"], key=lambda r: (r["seed"], list(MODELS).index(r["model"]))):
            if r["corridor_length"] != corridor:
                continue
            ls = styles[seeds.index(r["seed"]) % len(styles)]
            flat = all(v <= 0.05 for _, v in r["success_rate"][len(r["success_rate"]) // 10 :])
            label = f"{r['label']} (seed {r['seed']})" + (": success 0 (overlapping lines)" if flat else "")
            for row, key in enumerate(("success_rate", "episodic_return")):
                pts = r[key]
                axes[row][c].plot(
                    [p[0] for p in pts], [p[1] for p in pts], ls, lw=1.1, color=COLORS[r["model"]], label=label
                )
        axes[0][c].axhline(LEVEL, color="grey", lw=0.6, ls=":")
        axes[0][c].axhline(0.5, color="grey", lw=0.6, ls="--")
        axes[1][c].axhline(4 - 0.1 * (corridor - 1), color="grey", lw=0.6, ls=":")
        axes[0][c].set_title(f"T-Maze corridor {corridor} (cue held {corridor - 1} steps)", fontsize=10)
        axes[0][c].set_ylim(-0.02, 1.02)
        axes[1][c].set_xlabel("env steps")
        for row in range(2):
            axes[row][c].grid(alpha=0.3)
        axes[0][c].legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("success rate (last 100 episodes)")
    axes[1][0].set_ylabel("return (last 100 episodes)")
    fig.suptitle(
        f"{PRESET} + overrides, segment length {SEGMENT_LENGTH}, 2 actors x 8 envs; dotted: success "
        f"{LEVEL} / optimal return, dashed: chance (0.5)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def default_notes(result: dict[str, Any]) -> list[str]:
    """Facts every report states; the interpretation is added by whoever ran the sweep (``--note``)."""
    budgets = ", ".join(
        f"{b:,} env steps at corridor {c}" for c, b in sorted(result["budgets"].items(), key=lambda kv: int(kv[0]))
    )
    seeds = sorted({(r["corridor_length"], r["seed"]) for r in result["runs"]})
    per_corridor: dict[int, list[int]] = {}
    for c, s in seeds:
        per_corridor.setdefault(c, []).append(s)
    seed_text = "; ".join(
        f"corridor {c}: seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}" for c, s in per_corridor.items()
    )
    return [
        f"Budgets: {budgets}, the same for every model of one corridor length.",
        f"Seeds: {seed_text}. Few seeds per setting: differences between models smaller than the spread "
        "between seeds mean nothing, and a curve that does not reach 0.9 within the budget may still reach it later.",
        "Machine: 2 CPU cores shared with other work (tests, another engineer); the learner and both actors share "
        "them, so wall times and SPS depend on the load (1-minute load average before/after each run is in the "
        "JSON) and are indicative only. Learning is compared against env steps, which the load does not change.",
    ]


def load_existing(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def save(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for r in result["runs"]:
        r["first_step_success_ge_0_4"] = first_full_window(r, JUNCTION_LEVEL)
        r["first_step_success_ge_0_9"] = first_full_window(r, LEVEL)
    result["notes"] = default_notes(result) + list(result.get("extra_notes", []))
    (out / "memory_sweep.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, out / "memory_sweep.md")
    plot(result, out / "memory_sweep.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corridors", type=int, nargs="+", default=[16, 48], help="T-Maze corridor lengths")
    ap.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=[500_000, 1_500_000],
        help="env-step budget per corridor length, in the order of --corridors",
    )
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds run at every corridor length")
    ap.add_argument(
        "--extra",
        nargs="*",
        default=[],
        metavar="CORRIDOR:SEED",
        help="additional (corridor, seed) runs for every model, e.g. 48:2",
    )
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=30.0,
        help="safety limit per run: stop() it after this long even if the budget is not reached",
    )
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep runs already in the output JSON with the same flags and budget; run only the rest",
    )
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md and .png from the existing JSON")
    ap.add_argument(
        "--note",
        action="append",
        default=None,
        help="a note for the Markdown report (repeatable); replaces the notes stored in the JSON",
    )
    ap.add_argument("--keep-runs", action="store_true", help="keep the run directories under runs/bench/")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if len(args.budgets) != len(args.corridors):
        ap.error("--budgets needs one value per --corridors value")
    budgets = dict(zip(args.corridors, args.budgets, strict=True))
    existing = load_existing(args.out / "memory_sweep.json")

    if args.report_only:
        if existing is None:
            ap.error(f"no {args.out / 'memory_sweep.json'} to report from")
        if args.note is not None:
            existing["extra_notes"] = args.note
        save(existing, args.out)
        return 0

    todo: list[tuple[str, int, int]] = [(m, c, s) for c in args.corridors for s in args.seeds for m in args.models]
    for item in args.extra:
        c_text, s_text = item.split(":")
        c, s = int(c_text), int(s_text)
        if c not in budgets:
            ap.error(f"--extra {item}: corridor {c} has no budget (add it to --corridors/--budgets)")
        todo += [(m, c, s) for m in args.models if (m, c, s) not in todo]

    result: dict[str, Any] = {
        "benchmark": "memory_sweep",
        "preset": PRESET,
        "runs": [],
        "budgets": {str(c): b for c, b in budgets.items()},
    }
    if args.resume and existing is not None:
        result = existing
        result["budgets"] = {**existing.get("budgets", {}), **{str(c): b for c, b in budgets.items()}}
    if args.note is not None:
        result["extra_notes"] = args.note
    result.setdefault("machine", machine_info())
    done = {(r["model"], r["corridor_length"], r["seed"]): r for r in result["runs"]}

    for model, corridor, seed in todo:
        old = done.get((model, corridor, seed))
        flags = run_flags(model, corridor, seed, budgets[corridor])
        if old is not None and old["flags"] == flags:
            print(f"[memory_sweep] {model} corridor {corridor} seed {seed}: kept from the existing JSON", flush=True)
            continue
        result["machine"] = machine_info()  # the machine (and commit) of the latest measured run
        record = run_one(model, corridor, seed, budgets[corridor], args.max_minutes, args.keep_runs)
        result["runs"] = [
            r for r in result["runs"] if (r["model"], r["corridor_length"], r["seed"]) != (model, corridor, seed)
        ] + [record]
        done[(model, corridor, seed)] = record
        save(result, args.out)  # after every run, so an interrupted sweep keeps what it measured
    save(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Side by side with Sample Factory: env steps to a success threshold on memory tasks, same envs, model size, budget.

    python -m bench.peer.run --tasks delayed_recall_k4_d20 --seeds 1 2 3            # SF (both configs) + ours
    python -m bench.peer.run --tasks delayed_recall_k4_d20 --only ours --rerun      # ours again (new defaults)
    python -m bench.peer.run --tasks delayed_recall_k4_d20 --report-only            # rewrite .md/.png from .json
    python -m bench.peer.run --list                                                 # the task suite

Why: the question is not "does it learn" but "does it learn as fast per env step as the framework a user would pick
instead". Both stacks train on the same gymnasium id with the same kwargs, 2 workers/actors x 8 envs, the same
env-step budget and seeds, a GRU with 128 units. Runners:

* ``sf-default``: Sample Factory 2.1.1 with its defaults (``bench/peer/sf_train.py``, in ``bench/peer/.venv-sf``,
  made by ``bench/peer/setup_sf.sh`` on first use);
* ``sf-tuned``: Sample Factory with lr 1e-3 and a 64-step rollout;
* ``ours-gru``: ``python -m learner.launch`` at today's defaults (whatever ``make train ARGS="--env.id X"`` uses)
  with ``--model.kind gru --model.rnn-hidden 128``;
* ``ours-agalite``: the same with the default AGaLiTe (not run unless named with ``--runners``).

Curves: the task's measure (``bench/peer/tasks.py``) over the last 100 episodes against env steps, from the runs'
TensorBoard summaries. Per run: env steps to the threshold (the first logged point at or above it), the final value,
env steps/s (logged steps over logged wall time: the steady rate, start-up excluded) and wall time; after training,
the final policy plays 200 episodes (ours: ``actor.play`` on the exported ONNX policy; Sample Factory: its final
checkpoint, loaded by ``sf_train.py``). Per runner: medians over seeds. The machine's 1-minute load average is
sampled during every run and recorded: this benchmark shares 2 cores with whatever else runs.

One training stack at a time. Results are saved after every run (a rerun skips runs already saved unless
``--rerun``). Writes ``bench/results/peer_<task>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.learning_curve import first_at_or_above, free_ports, windowed_curve
from bench.machine import machine_info, machine_markdown
from bench.peer.tasks import TASKS, Task
from bench.report import write_with_notes
from learner.config import ppo_from_saved
from models.config import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = ROOT / "bench" / "results"
DEFAULT_RUNS = ROOT / "runs" / "peer"
RESULTS, RUNS = DEFAULT_RESULTS, DEFAULT_RUNS  # where this process writes (main() sets them from its flags)
SF_PYTHON = ROOT / "bench" / "peer" / ".venv-sf" / "bin" / "python"
SF_RUNNERS = ("sf-default", "sf-tuned")
OURS_RUNNERS = ("ours-gru", "ours-agalite")
DEFAULT_RUNNERS = ("sf-default", "sf-tuned", "ours-gru")
OURS_MODEL_FLAGS = {
    "ours-gru": ["--model.kind", "gru", "--model.rnn-hidden", "128"],
    "ours-agalite": ["--model.kind", "agalite"],
}
TAGS = {
    "ours": {"success": "charts/success_rate", "return": "charts/episodic_return"},
    "sf": {"success": "policy_stats/avg_success", "return": "reward/reward"},
}
EVAL_EPISODES = 200
COLORS = {
    "sf-default": "tab:gray",
    "sf-tuned": "tab:orange",
    "ours-gru": "tab:blue",
    "ours-agalite": "tab:green",
    # variants (--label seg64 --ours-args="--segment-length 64"; the older ones were renamed in the .json by hand)
    "ours-gru-seg64": "tab:cyan",
    "ours-agalite-seg64": "tab:olive",
    # encoder and gate-init ablations (--ours-args="--model.encoder mlp --model.encoder-hidden 512", and
    # "--model.memory-init default")
    "ours-gru-mlp512": "plum",
    "ours-gru-initdefault": "tab:brown",
    # the MLP-512 encoder with the episode-start input (--ours-args="--model.encoder mlp --model.encoder-hidden 512")
    "ours-gru-mlp512-epstart": "tab:purple",
    # earlier defaults, renamed in the .json: before the episode-start input, and before the segment rule (32 steps)
    "ours-gru-noepstart": "tab:pink",
    "ours-agalite-noepstart": "tab:red",
    "ours-gru-seg32": "navy",
    "ours-agalite-seg32": "darkgreen",
    # the episode-start input's first form (a random input column for the flag, before it started at zero)
    "ours-gru-randcol": "lightskyblue",
    "ours-agalite-randcol": "yellowgreen",
    # the zero flag column at 2 minibatches (the default before 4)
    "ours-gru-mb2": "slategray",
    "ours-agalite-mb2": "peru",
    # PPO ablations (--ours-args="--ppo.clip-coef 0.1" / "0.3", "--ppo.minibatches 1" / "8")
    "ours-gru-clip01": "gold",
    "ours-gru-clip03": "orange",
    "ours-gru-mb1": "teal",
    "ours-gru-mb8": "black",
    "ours-agalite-clip01": "darkkhaki",
    "ours-agalite-clip03": "salmon",
    "ours-agalite-mb1": "orchid",
    "ours-agalite-mb8": "dimgray",
    # AGaLiTe ablations on T-Maze 20 (--ours-args="--model.memory-horizon 20" / "256", "--model.num-layers 1",
    # "--model.d-model 128 --model.d-head 64 --model.d-ffc 128", both of those, "--model.num-heads 4 --model.d-head 16",
    # "--ppo.lr-kl-target 0.008" / "0.002", "--ppo.ent-coef 0.03")
    "ours-agalite-horizon20": "lightcoral",
    "ours-agalite-horizon256": "mediumseagreen",
    "ours-agalite-horizon128": "darkseagreen",
    "ours-agalite-1layer": "steelblue",
    "ours-agalite-d128": "darkviolet",
    "ours-agalite-1layer-d128": "sienna",
    "ours-agalite-4heads": "crimson",
    "ours-agalite-kl008": "darkcyan",
    "ours-agalite-kl002": "lightseagreen",
    "ours-agalite-ent003": "goldenrod",
    # without the episode-start input at today's other defaults (--ours-args="--model.no-episode-start-input")
    "ours-agalite-noepstart-mb4": "firebrick",
    # more AGaLiTe ablations on T-Maze 20: "--model.gru-bias 1" / "0", "--model.r 4 --model.frequencies distinct" /
    # "r 8", "--segment-length 64" (ours-agalite-seg64, above); two patches, not kept: the trunk's output scaled by
    # 0.1 before the heads, and each head's read-out scaled to unit RMS instead of divided by the key normaliser
    "ours-agalite-gatebias1": "olive",
    "ours-agalite-gatebias0": "yellowgreen",
    "ours-agalite-r4distinct": "slateblue",
    "ours-agalite-r8distinct": "navy",
    "ours-agalite-out01": "hotpink",
    "ours-agalite-rmsreadout": "darkkhaki",
    # eight heads of 8 (same width, state and MACs as two of 32): "--model.num-heads 8 --model.d-head 8"
    "ours-agalite-8heads": "darkorange",
    # the distinct frequency grid at r 2 (omega 0 and pi; the reference grid's -pi and pi give one component twice):
    # "--model.frequencies distinct"
    "ours-agalite-r2distinct": "teal",
    # the episode's first step written whole into the emptied state: "--model.first-write full"
    "ours-agalite-firstwrite": "lime",
    # 128-step segments where the env's horizon picks 64 (T-Maze 50): "--segment-length 128"
    "ours-gru-seg128": "skyblue",
    "ours-agalite-seg128": "lightgreen",
    # the value head rescaled with the return statistics (PopArt's output preservation): "--ppo.preserve-values"; the
    # AGaLiTe's default since these runs (the scoreboard counts them, bench.peer.scoreboard.ALIASES), not the GRU's
    "ours-gru-pv": "deepskyblue",
    "ours-agalite-pv": "forestgreen",
    # MiniGrid S7 seen as pixels: one gradient pass per batch ("--ppo.epochs 1 --ppo.minibatches 1"), images
    # standardised per pixel ("--model.normalize-images", Sample Factory's default), the CNN's dense layer at 512
    # units as Sample Factory's ("--model.encoder-hidden 512"), entropy coefficient 0.03 ("--ppo.ent-coef 0.03")
    "ours-gru-1pass": "mediumpurple",
    "ours-gru-normimg": "darkturquoise",
    "ours-gru-enc512": "indigo",
    "ours-gru-ent003": "chocolate",
    # MiniGrid S7 pixels, closer to Sample Factory's run: its PPO settings ("--segment-length 64 --ppo.epochs 1
    # --ppo.minibatches 1 --ppo.lr 1e-3 --ppo.lr-kl-target None --ppo.ent-coef 0.003 --ppo.clip-coef 0.1");
    # its CNN's layout (ELU, a third layer of 128 channels at stride 2, "--model.encoder-hidden 512"), a patch of
    # models/encoders.py not kept; and both with the images standardised per pixel ("--model.normalize-images")
    "ours-gru-sfppo": "maroon",
    "ours-gru-sfcnn": "darkgoldenrod",
    "ours-gru-sflike": "magenta",
    # and, on top of sflike, the GRU's default initialisation and no episode-start input ("--model.memory-init default
    # --model.no-episode-start-input"): the closest to Sample Factory's run that flags and the encoder patch give
    "ours-gru-sfreplica": "darkred",
    # and, on top of sfreplica, the rest of Sample Factory's learner (--label sffull, with "--ppo.max-grad-norm 4
    # --ppo.adam-eps 1e-6 --ppo.vf-coef 1.0": its value loss is 0.5 (v - R)^2 where ours is 0.25 (v - R)^2 at the same
    # coefficient) and a patch not kept: linear heads (--model.head-hidden 0) and every layer's orthogonal gain 1
    "ours-gru-sffull": "deeppink",
    # our defaults with only Sample Factory's value-loss weight (--label vf1 --ours-args="--ppo.vf-coef 1.0")
    "ours-gru-vf1": "cadetblue",
}


def family(runner: str) -> str:
    return "sf" if runner.startswith("sf-") else "ours"


def sf_command(task: Task, runner: str, seed: int, run_dir: Path, stop_after: int | None) -> list[str]:
    stop = []
    if stop_after is not None:
        measure = "success" if task.measure == "success" else "reward"
        stop = ["--stop-measure", measure, "--stop-level", str(task.threshold), "--stop-after", str(stop_after)]
    return [
        str(SF_PYTHON),
        str(ROOT / "bench" / "peer" / "sf_train.py"),
        "--env-id",
        task.env_id,
        "--env-kwargs",
        json.dumps(task.env_kwargs),
        "--config",
        runner.removeprefix("sf-"),
        "--seed",
        str(seed),
        "--steps",
        str(task.budget),
        "--train-dir",
        str(run_dir.parent.relative_to(ROOT)),  # relative (Sample Factory runs in ROOT): no machine's paths saved
        "--experiment",
        run_dir.name,
        "--eval-episodes",
        str(EVAL_EPISODES),
        *stop,
    ]


def ours_command(task: Task, runner: str, seed: int, run_dir: Path, extra: list[str]) -> list[str]:
    traj, pol, ctl = free_ports(3)
    return [
        sys.executable,
        "-m",
        "learner.launch",
        "--env.id",
        task.env_id,
        "--env.kwargs",
        json.dumps(task.env_kwargs),
        *OURS_MODEL_FLAGS[runner],
        "--num-actors",
        "2",
        "--envs-per-actor",
        "8",
        "--seed",
        str(seed),
        "--total-steps",
        str(task.budget),
        "--run-dir",
        str(run_dir.relative_to(ROOT)),  # relative (the learner runs in ROOT): results hold no machine's paths
        "--checkpoint-interval-s",
        "100000",
        "--net.trajectory-port",
        str(traj),
        "--net.policy-port",
        str(pol),
        "--net.control-port",
        str(ctl),
        *extra,
    ]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc; empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def equal_priority(pid: int) -> None:
    """Put ``pid`` and its descendants at niceness 0.

    Sample Factory nices its rollout workers by +10 and its inference worker by +2 so that its learner wins on a
    dedicated machine; on a shared machine that starves them behind every other process, while our actors run at
    0. Both stacks are measured with all their processes at 0 (lowering a niceness needs root; where it fails,
    Sample Factory runs as it set itself, and the run records that).
    """
    for p in (pid, *descendants(pid)):
        with contextlib.suppress(OSError):
            if os.getpriority(os.PRIO_PROCESS, p) != 0:
                os.setpriority(os.PRIO_PROCESS, p, 0)


def past_threshold(summary_dir: Path, tag: str, level: float, extra_steps: int) -> bool:
    """Whether the logged ``tag`` reached ``level`` and the run has gone ``extra_steps`` env steps beyond that."""
    points = windowed_curve(summary_dir, tag)
    if not points:
        return False
    crossed = first_at_or_above([(p["step"], p["value"]) for p in points], level)
    return crossed is not None and points[-1]["step"] >= crossed + extra_steps


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def run_process(
    cmd: list[str],
    log_path: Path,
    timeout_s: float,
    env: dict[str, str],
    stop_when: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run ``cmd`` to its end (SIGTERM at ``timeout_s``, or once ``stop_when()``), sampling the load every 10 s.

    The run gets a process group of its own, and stops go to the whole group: Sample Factory's workers outlived a
    SIGTERM sent to its main process alone and went on stepping for an hour, slowing every run after it. Whatever
    of the group is left once the run ends is killed, and Ctrl-C on the harness stops the run the same way.
    """
    loads: list[float] = []
    stopped_early = False
    t0 = time.time()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        timed_out = False
        try:
            while proc.poll() is None:
                loads.append(os.getloadavg()[0])
                equal_priority(proc.pid)
                if stop_when is not None and not stopped_early and stop_when():
                    stopped_early = True
                    _signal_group(proc.pid, signal.SIGTERM)  # the learner checkpoints, exports and stops its actors
                if time.time() - t0 > timeout_s:
                    timed_out = True
                    _signal_group(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=120)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        except KeyboardInterrupt:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
            raise
        finally:
            _signal_group(proc.pid, signal.SIGKILL)  # nothing of the run outlives it
    return {
        "niceness": "every process of the run reset to 0 every 10 s",
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "stopped_after_threshold": stopped_early,
        "wall_s": time.time() - t0,
        "load1_mean": statistics.fmean(loads) if loads else os.getloadavg()[0],
        "load1_max": max(loads) if loads else os.getloadavg()[0],
    }


def evaluate_ours(task: Task, run_dir: Path, seed: int) -> dict[str, Any] | None:
    """``actor.play`` on the exported policy: the same judge a user has, without torch."""
    policy = run_dir / "policy.onnx"
    if not policy.exists():
        return None
    cmd = [
        sys.executable,
        "-m",
        "actor.play",
        str(policy),
        "--env",
        task.env_id,
        "--env-kwargs",
        json.dumps(task.env_kwargs),
        "--episodes",
        str(EVAL_EPISODES),
        "--seed",
        str(seed + 10_000),
        "--threads",
        "1",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    (run_dir / "eval.log").write_text(out.stdout + out.stderr)
    last = [line for line in out.stdout.splitlines() if "success" in line or "return" in line]
    if out.returncode != 0 or not last:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    line = last[-1]
    ret = re.search(r"return\s+(-?[\d.]+)", line)
    suc = re.search(r"success\s+([\d.]+)", line)
    return {
        "episodes": EVAL_EPISODES,
        "greedy": False,
        "mean_return": float(ret.group(1)) if ret else None,
        "success": float(suc.group(1)) if suc else None,
    }


def curve_stats(points: list[dict[str, float]], threshold: float) -> dict[str, Any]:
    curve = [[int(p["step"]), float(p["value"])] for p in points]
    reached = first_at_or_above(curve, threshold)
    rate = None
    if len(points) >= 2 and points[-1]["wall_time"] > points[0]["wall_time"]:
        rate = (points[-1]["step"] - points[0]["step"]) / (points[-1]["wall_time"] - points[0]["wall_time"])
    return {
        "curve": curve,
        "steps_to_threshold": reached,
        "final": curve[-1][1] if curve else None,
        "best": max((v for _, v in curve), default=None),
        "env_steps_per_s": rate,
        "last_step": curve[-1][0] if curve else None,
    }


def code_state() -> dict[str, Any]:
    """The commit our stack ran from, and the tracked files of the stack that differed from it (uncommitted work)."""
    parts = ["learner", "models", "configs", "actor", "export", "envs", "policy", "protocol"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", *parts], cwd=ROOT, capture_output=True, text=True
    )
    return {"commit": commit.stdout.strip() or None, "modified": [line[3:] for line in status.stdout.splitlines()]}


def run_one(
    task: Task,
    runner: str,
    seed: int,
    extra: list[str],
    timeout_s: float,
    stop_after: int | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """One seed of one runner; ``name`` (default: the runner's) names its row, run directory and log, so that a
    variant made with extra flags stands apart from the runner's default runs."""
    name = name or runner
    run_dir = RUNS / task.name / f"{name}-s{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if family(runner) == "sf":
        if not SF_PYTHON.exists() or not (SF_PYTHON.parent.parent / ".installed").exists():
            subprocess.run(["bash", str(ROOT / "bench" / "peer" / "setup_sf.sh")], check=True)
        env["PYTHONPATH"] = str(ROOT)
        cmd = sf_command(task, runner, seed, run_dir, stop_after)
        stop_when = None  # Sample Factory stops itself (sf_train.py's StopAfterThreshold)
    else:
        cmd = ours_command(task, runner, seed, run_dir, extra)
        tag = TAGS["ours"][task.measure]
        stop_when = None
        if stop_after is not None:

            def stop_when() -> bool:
                return past_threshold(run_dir / "tb", tag, task.threshold, stop_after)

    code = code_state()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    log_path = RUNS / task.name / f"{name}-s{seed}.log"
    print(f"[peer] {task.name} {name} seed {seed}: {' '.join(cmd[1:4])} ... (log {log_path})", flush=True)
    proc = run_process(cmd, log_path, timeout_s, env, stop_when)
    if family(runner) == "sf":
        summary_dir = run_dir / ".summary" / "0"
        eval_file = run_dir / "eval.json"
        evaluation = json.loads(eval_file.read_text()).get("eval") if eval_file.exists() else None
        config = {"sf_argv": cmd[2:]}
    else:
        summary_dir = run_dir / "tb"
        evaluation = evaluate_ours(task, run_dir, seed)
        cfg_file = run_dir / "config.json"
        config = json.loads(cfg_file.read_text()) if cfg_file.exists() else {"argv": cmd[3:]}
    tag = TAGS[family(runner)][task.measure]
    stats = curve_stats(windowed_curve(summary_dir, tag), task.threshold)
    result = {
        "runner": name,
        "seed": seed,
        "started_utc": started,
        "tag": tag,
        **proc,
        **stats,
        "eval": evaluation,
        "config": config,
        "code": code,
        "stop_after_threshold": stop_after,
    }
    print(
        f"[peer]   -> rc {proc['returncode']}  to threshold {stats['steps_to_threshold']}  final {stats['final']}  "
        f"{(stats['env_steps_per_s'] or 0):.0f} steps/s  {proc['wall_s']:.0f} s  load {proc['load1_mean']:.2f}  "
        f"eval {evaluation}",
        flush=True,
    )
    return result


def median_or_none(values: list[float | None], n: int) -> float | None:
    """Median over ``n`` seeds where ``None`` (never reached) counts as worse than any number."""
    if not values:
        return None
    known = sorted(v for v in values if v is not None)
    padded: list[float] = known + [float("inf")] * (n - len(known))
    med = statistics.median(padded)
    return None if med == float("inf") else med


#: The resolved settings of our runs that must agree for runs of one runner to share a row of the table.
ROW_SETTINGS = ("model", "ppo", "segment_length", "batch_envs", "envs_per_actor", "num_actors")


def resolved_settings(run: dict[str, Any]) -> dict[str, Any]:
    """One of our runs' resolved settings, flattened (``model.r``); empty for Sample Factory's runs."""
    cfg = run.get("config") or {}
    flat: dict[str, Any] = {}
    for section in ROW_SETTINGS:
        value = cfg.get(section)
        if isinstance(value, dict):
            if section == "model":  # what the model kind reads; a setting added later reads as the older run's value
                value = ModelConfig.from_saved(value).used()
            elif section == "ppo":
                value = ppo_from_saved(value)
            flat.update({f"{section}.{k}": v for k, v in value.items()})
        elif value is not None:
            flat[section] = value
    return flat


def row_labels(runs: dict[str, Any]) -> dict[str, str]:
    """The table row of each run: its runner, and where that runner's runs were made at different settings, the
    settings that differ.

    A runner such as ``ours-agalite`` means "the defaults of the run's commit", and results files grow over sessions:
    when a default changes, new seeds would silently share a row (and a median) with seeds of the old default. Here
    they form their own row, named by what differs (``ours-agalite (model.frequencies distinct)``).
    """
    by_runner: dict[str, list[str]] = {}
    for key, r in runs.items():
        by_runner.setdefault(r["runner"], []).append(key)
    labels: dict[str, str] = {}
    for runner, keys in by_runner.items():
        settings = {k: resolved_settings(runs[k]) for k in keys}
        known = [s for s in settings.values() if s]
        varying = sorted({name for s in known for name in s if any(o.get(name) != s.get(name) for o in known)})
        for k in keys:
            s = settings[k]
            differs = ", ".join(f"{name} {s.get(name, '-')}" for name in varying)
            labels[k] = f"{runner} ({differs})" if varying and s else runner
    return labels


def cut_short(r: dict[str, Any], budget: int) -> bool:
    """Whether a run ended before its budget without reaching the threshold: a time limit, a failure, or a stop from
    outside the harness. The last one exits 0 like a finished run (the learner checkpoints and stops on SIGTERM), so
    it is told by where the curve ends: short of 95% of the budget (Sample Factory's own runs stop
    up to ~1.5% short)."""
    if r.get("steps_to_threshold") is not None:
        return False
    last = r.get("last_step")
    return bool(r.get("timed_out") or r.get("returncode")) or (last is not None and last < 0.95 * budget)


def lowest_after(curve: list[list[float]] | None, reached_at: int | None) -> float | None:
    """The curve's lowest point after the threshold was reached: how far a run fell back in the window the harness
    ran after it (``--stop-after-threshold``); None when it never reached it or nothing was logged after."""
    if not curve or reached_at is None:
        return None
    after = [value for step, value in curve if step > reached_at]
    return min(after) if after else None


def summarise(task: Task, runs: dict[str, Any]) -> dict[str, Any]:
    by_runner: dict[str, list[dict[str, Any]]] = {}
    labels = row_labels(runs)
    for run_key, r in runs.items():
        by_runner.setdefault(labels[run_key], []).append(r)
    out: dict[str, Any] = {}
    for runner, rs in sorted(by_runner.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        finals = [r["final"] for r in rs if r["final"] is not None]
        rates = [r["env_steps_per_s"] for r in rs if r["env_steps_per_s"]]
        evals = [r["eval"].get(task.measure if task.measure == "success" else "mean_return") for r in rs if r["eval"]]
        evals = [e for e in evals if e is not None]
        out[runner] = {
            "seeds": [r["seed"] for r in rs],
            "steps_to_threshold": [r["steps_to_threshold"] for r in rs],
            "median_steps_to_threshold": median_or_none([r["steps_to_threshold"] for r in rs], len(rs)),
            "reached": sum(r["steps_to_threshold"] is not None for r in rs),
            "lowest_after_threshold": [lowest_after(r.get("curve"), r["steps_to_threshold"]) for r in rs],
            "median_final": statistics.median(finals) if finals else None,
            "median_eval": statistics.median(evals) if evals else None,
            "median_env_steps_per_s": statistics.median(rates) if rates else None,
            "median_wall_s": statistics.median(r["wall_s"] for r in rs),
            "mean_load1": statistics.fmean(r["load1_mean"] for r in rs),
        }
    sf = {k: v for k, v in out.items() if family(k) == "sf"}
    if sf:

        def key(item: tuple[str, dict[str, Any]]) -> tuple[float, float]:
            med = item[1]["median_steps_to_threshold"]
            return (med if med is not None else float("inf"), -(item[1]["median_final"] or -1e9))

        out["sf_better"] = min(sf.items(), key=key)[0]
    return out


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.{digits}f}"
    return f"{int(x):,}"


def _run_span(data: dict[str, Any]) -> str:
    """When the runs of a results file were made: files grow over sessions, so the header must not name one run's
    commit and time as if they were everyone's (each of our runs' commit is listed under the table)."""
    starts = sorted(r["started_utc"] for r in data["runs"].values() if r.get("started_utc"))
    commits = "each of our runs' commit is listed under the table"
    if not starts:
        machine = data["machine"]
        return (
            f"run starts not recorded; the harness last ran at commit `{machine.get('git_commit')}`, "
            f"{machine.get('timestamp_utc')}; {commits}"
        )
    span = starts[0] if starts[0] == starts[-1] else f"{starts[0]} to {starts[-1]}"
    unrecorded = len(data["runs"]) - len(starts)
    older = f" ({unrecorded} earlier runs did not record their start)" if unrecorded else ""
    return f"{len(starts)} runs started {span}{older}; {commits}"


def write_report(task: Task, data: dict[str, Any]) -> None:
    for r in data["runs"].values():  # from the stored curve, so results saved by an earlier rule are read by this one
        if r.get("curve"):
            r["steps_to_threshold"] = first_at_or_above(r["curve"], task.threshold)
    summary = summarise(task, data["runs"])
    data["summary"] = summary
    base = RESULTS / f"peer_{task.name}"
    base.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    plot(task, data, base.with_suffix(".png"))
    measure = "success rate" if task.measure == "success" else "normalised return"
    lines = [
        f"# Side by side with Sample Factory: {task.name}",
        "",
        f"Env `{task.env_id}` with kwargs `{json.dumps(task.env_kwargs)}`; memory horizon: {task.horizon}. Measure: "
        f"{measure} over the last 100 episodes; threshold {task.threshold}"
        + (f" (a memoryless agent: {task.chance})" if task.chance is not None else "")
        + f". Budget {task.budget:,} env steps, 2 workers/actors x 8 envs, GRU-128 in every runner. "
        "Written by `python -m bench.peer.run` (see `bench/peer/README.md` for the method).",
        "",
        machine_markdown(data["machine"]) + "; " + _run_span(data),
        "",
        "The 2 cores were shared with other work while these ran (other trainings and test runs): the load column is "
        "the mean 1-minute load average during each runner's runs. Env steps/s is therefore a lower bound for both "
        "stacks, comparable only between runs made at a similar load.",
        "",
        f"| runner | seeds | reached {task.threshold} | env steps to {task.threshold} (per seed) | median | "
        "lowest after reaching it (per seed) | median final | median eval (200 ep.) | median env steps/s | "
        "median wall s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for runner, s in summary.items():
        if runner == "sf_better":
            continue
        per_seed = ", ".join(_fmt(v) for v in s["steps_to_threshold"])
        lines.append(
            f"| {runner} | {', '.join(map(str, s['seeds']))} | {s['reached']}/{len(s['seeds'])} | {per_seed} | "
            f"{_fmt(s['median_steps_to_threshold'])} | {', '.join(_fmt(v) for v in s['lowest_after_threshold'])} | "
            f"{_fmt(s['median_final'])} | {_fmt(s['median_eval'])} | "
            f"{_fmt(s['median_env_steps_per_s'], 0)} | {_fmt(s['median_wall_s'], 0)} | {s['mean_load1']:.1f} |"
        )
    if "sf_better" in summary:
        lines += ["", f"Sample Factory's better config on this task: **{summary['sf_better']}**."]
    lines += [
        "",
        "A `-` in the steps column: the run never reached the threshold within the budget (the median counts it as "
        "worse than any number). Lowest after reaching it: the curve's lowest point after its first at or above the "
        "threshold, up to the run's end (the window below), so a run that fell back shows here though its final "
        "value recovered. Runner settings: `sf-default` is Sample Factory's defaults (lr 1e-4, rollout 32, "
        "batch 1024, 1 epoch, clip 0.1, entropy 0.003, its MLP-512x2 ELU encoder, input and return normalisation "
        "on); `sf-tuned` is lr 1e-3 with rollout 64; "
        "`ours-*` are `python -m learner.launch` at the defaults of the code listed below, with the model "
        "flags of `bench/peer/run.py`; every run's resolved config is in the .json. Runs of one runner made at "
        "different settings (a default that changed between them) stand in separate rows, named by what differs.",
        "",
        f"![curves](peer_{task.name}.png)",
        "",
    ]
    stops = sorted({r.get("stop_after_threshold") for r in data["runs"].values()} - {None})
    if stops:
        lines += [
            f"Runs that reached the threshold were ended {' / '.join(f'{x:,}' for x in stops)} env steps after it "
            "(`--stop-after-threshold`): their curves stop there, and their final values and evaluations are at that "
            "point; runs that did not reach it had the whole budget.",
            "",
        ]
    cut = [
        f"`{key}` (at {r['last_step']:,} env steps{': ' + r['note'] if r.get('note') else ''})"
        for key, r in sorted(data["runs"].items())
        if r.get("last_step") is not None and r["last_step"] < task.budget and cut_short(r, task.budget)
    ]
    if cut:
        lines += [f"Stopped before the budget without reaching the threshold: {', '.join(cut)}.", ""]
    notes = [
        f"`{key}`: {r['note']}" for key, r in sorted(data["runs"].items()) if r.get("note") and key not in str(cut)
    ]
    if notes:
        lines += ["Notes: " + "; ".join(notes) + ".", ""]
    code_lines = []
    for key, r in sorted(data["runs"].items()):
        if family(r["runner"]) == "ours":
            code = r.get("code")
            if not code:
                code_lines.append(f"- `{key}`: not recorded (run before the runner recorded it)")
                continue
            changed = code.get("modified")
            modified = "not recorded" if changed is None else ", ".join(f"`{m}`" for m in changed) or "none"
            note = f" ({code['note']})" if code.get("note") else ""
            code_lines.append(
                f"- `{key}`: commit `{code.get('commit')}`{note}; uncommitted changes in the stack: {modified}"
            )
    if code_lines:
        lines += [
            "Our runs were made from (the runs themselves are not reproducible from a commit where files were "
            "modified; their resolved configs are in the .json):",
            "",
            *code_lines,
            "",
        ]
    write_with_notes(base.with_suffix(".md"), "\n".join(lines))


def plot(task: Task, data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    labelled: set[str] = set()
    rows = row_labels(data["runs"])
    for key, r in sorted(data["runs"].items(), key=lambda kr: (rows[kr[0]], kr[1]["seed"])):
        if not r["curve"]:
            continue
        xs, ys = zip(*r["curve"], strict=True)
        row = rows[key]
        label = None if row in labelled else row
        labelled.add(row)
        ax.plot(xs, ys, color=COLORS.get(r["runner"], "black"), alpha=0.8, lw=1.2, label=label)
    ax.axhline(task.threshold, color="red", ls="--", lw=0.8, label=f"threshold {task.threshold}")
    if task.chance is not None:
        ax.axhline(task.chance, color="black", ls=":", lw=0.8, label="memoryless")
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate" if task.measure == "success" else "return (normalised)")
    ax.set_title(f"{task.name}: {task.env_id} {json.dumps(task.env_kwargs)}")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load(task: Task, results: Path | None = None) -> dict[str, Any]:
    """A task's stored runs from ``results`` (default: the results folder this run writes to), empty if none."""
    path = (results or RESULTS) / f"peer_{task.name}.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"task": task.name, "runs": {}}


def stop_like_ctrl_c() -> None:
    """SIGTERM, and SIGINT even where a background shell started the harness with it ignored, stop the harness the
    way Ctrl-C in a terminal does: run_process then stops the running run's whole group. Without this, ``kill`` on
    the harness ended it at once and left the run (its own process group) training on, unrecorded."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def main(argv: list[str] | None = None) -> int:
    global RESULTS, RUNS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["delayed_recall_k4_d20"], help="task names (see --list)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--runners", nargs="+", choices=SF_RUNNERS + OURS_RUNNERS, default=list(DEFAULT_RUNNERS))
    parser.add_argument("--only", choices=("ours", "sf"), help="run only our runners, or only Sample Factory's")
    parser.add_argument("--budget", type=int, help="override every task's env-step budget")
    parser.add_argument("--rerun", action="store_true", help="run again even where a result is saved")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md/.png from the .json")
    parser.add_argument("--ours-args", default="", help="extra learner.launch flags for our runners, one string")
    parser.add_argument(
        "--label",
        help="store our runs as <runner>-<LABEL> (e.g. --runners ours-gru --label sfppo --ours-args=...: rows "
        "'ours-gru-sfppo'), so that a variant stands apart from the runner's default runs",
    )
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="stop a run that takes longer than this")
    parser.add_argument(
        "--stop-after-threshold",
        type=int,
        metavar="STEPS",
        help="end a run this many env steps after its curve reached the threshold (saves the rest of the budget; "
        "steps to the threshold are unaffected)",
    )
    parser.add_argument("--list", action="store_true", help="print the task suite and exit")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where peer_<task>.* go")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS, help="where the run directories go")
    args = parser.parse_args(argv)
    RESULTS, RUNS = args.results_dir.resolve(), args.runs_dir.resolve()
    if not RUNS.is_relative_to(ROOT):
        # the runs are recorded by their path relative to the repository, so that results name no machine's paths
        parser.error(f"--runs-dir must lie inside the repository {ROOT}, got {RUNS}")
    if args.label is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", args.label):
        parser.error(f"--label takes lowercase letters, digits and dashes, got {args.label!r}")
    if args.list:
        for t in TASKS.values():
            print(f"{t.name:28s} {t.env_id:36s} {json.dumps(t.env_kwargs):36s} {t.measure} >= {t.threshold}")
        return 0
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    runners = [r for r in args.runners if args.only is None or family(r) == args.only]
    if args.only == "ours" and not runners:
        runners = ["ours-gru"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        stop_like_ctrl_c()
    for name in args.tasks:
        task = TASKS[name]
        if args.budget:
            task = Task(**{**task.__dict__, "budget": args.budget})
        data = load(task)
        if not args.report_only:
            # seeds outer, runners inner: a sweep stopped early still has every runner at the first seeds
            for seed, runner in [(seed, runner) for seed in args.seeds for runner in runners]:
                name = f"{runner}-{args.label}" if args.label and family(runner) == "ours" else runner
                key = f"{name}/s{seed}"
                if key in data["runs"] and not args.rerun:
                    continue
                data["machine"] = machine_info()
                data["runs"][key] = run_one(
                    task, runner, seed, args.ours_args.split(), args.timeout_s, args.stop_after_threshold, name
                )
                data["runs"][key]["budget"] = task.budget
                write_report(task, data)
        if data["runs"]:
            data.setdefault("machine", machine_info())
            write_report(task, data)
            print(f"[peer] wrote {RESULTS / f'peer_{task.name}.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Learning curves under a fixed wall-clock budget: the whole local stack (learner + actor processes), as users run it.

    python -m bench.learning_curve [--which paper|small|both] [--minutes 60] [--small-minutes 4]

``paper``: AGaLiTe at the paper's size and A2C settings (``configs/tmaze-agalite-paper.toml``: L4, d_model 128,
8 envs x 256 steps, corridor 120). ``small``: the default preset (``tmaze-agalite``: L2 d_model 64, corridor 10).
Each run is ``python -m learner.launch`` in a fresh run directory, stopped with SIGTERM when its budget is spent
(the learner then checkpoints and exits cleanly). The curves come from the run's TensorBoard scalars
(``charts/success_rate`` and ``charts/episodic_return``, both over the last 100 episodes) and are plotted against
env steps and against wall time since the launch. Writes ``learning_curve_<which>.json`` / ``.png`` and a Markdown
summary ``learning_curve.md`` covering whichever curves exist.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.machine import machine_info, machine_markdown
from bench.report import write_with_notes

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

PRESETS = {
    "paper": "tmaze-agalite-paper",
    "small": "tmaze-agalite",
}
TAGS = (
    "charts/success_rate",
    "charts/episodic_return",
    "charts/SPS",
    "charts/policy_version",
    "charts/update_seconds",
    "lag/mean",
    "lag/max",
)


def read_scalars(tb_dir: Path, tags: tuple[str, ...] | None = None) -> dict[str, list[dict[str, float]]]:
    """Every scalar series in a TensorBoard directory: tag -> [{step, wall_time, value}] sorted by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    out: dict[str, list[dict[str, float]]] = {}
    for tag in acc.Tags().get("scalars", []):
        if tags is not None and tag not in tags:
            continue
        events = sorted(acc.Scalars(tag), key=lambda e: (e.step, e.wall_time))
        out[tag] = [{"step": int(e.step), "wall_time": float(e.wall_time), "value": float(e.value)} for e in events]
    return out


#: TensorBoard keeps scalars as float32, so a mean of exactly 0.9 (90 of 100 episodes) reads back as 0.89999998:
#: compared with ``>=`` it would not count as reaching 0.9, while the float64 mean the run itself saw did (Sample
#: Factory's stop observer compares that one). Levels are compared with this much slack instead.
LEVEL_SLACK = 1e-6


def at_or_above(value: float, level: float) -> bool:
    """``value >= level`` for a value read back from a float32 summary (see :data:`LEVEL_SLACK`)."""
    return value >= level - LEVEL_SLACK


def first_at_or_above(curve: Iterable[Sequence[float]], level: float) -> int | None:
    """The env step of the first ``(step, value)`` point at or above ``level`` (see :func:`at_or_above`)."""
    return next((int(s) for s, v in curve if at_or_above(v, level)), None)


def stays_at_or_above_from(values: Sequence[float], level: float) -> int | None:
    """The index of the first value from which the curve stays at or above ``level`` to its end (early windows
    hold few episodes, so a single early crossing means little); None when the last value is below it."""
    since = None
    for i, v in enumerate(values):
        if not at_or_above(v, level):
            since = None
        elif since is None:
            since = i
    return since


#: The curves are means over the last 100 finished episodes; before 100 have finished they rest on a few, and one or
#: two lucky early episodes put a T-Maze run "at 0.9" after 2,560 steps. Points before a full window are left out.
WINDOW_EPISODES = 100


def windowed_curve(summary_dir: Path, tag: str) -> list[dict[str, float]]:
    """The logged ``tag`` from the first point whose window holds WINDOW_EPISODES episodes (our runs log the count as
    ``charts/episodes``; curves without it, Sample Factory's, are kept whole)."""
    scalars = read_scalars(summary_dir, (tag, "charts/episodes")) if summary_dir.exists() else {}
    points = scalars.get(tag, [])
    counts = scalars.get("charts/episodes")
    if not counts:
        return points
    full = next((c["step"] for c in counts if c["value"] >= WINDOW_EPISODES), None)
    return [] if full is None else [p for p in points if p["step"] >= full]


def free_ports(n: int = 3) -> list[int]:
    """``n`` distinct TCP ports free on loopback right now (so a benchmark never collides with a test's stack)."""
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def default_log_path(run_dir: Path) -> Path:
    """Where ``launch`` writes a run's output unless told otherwise: beside the run directory, not inside it."""
    return run_dir.parent / f"{run_dir.name}.log"


def launch(
    preset: str,
    run_dir: Path,
    num_actors: int | None = None,
    extra: list[str] | None = None,
    log_path: Path | None = None,
) -> subprocess.Popen:
    """Start ``python -m learner.launch`` for ``preset`` in ``run_dir`` (which must not hold a run yet)."""
    cmd = [
        sys.executable,
        "-m",
        "learner.launch",
        "--preset",
        preset,
        "--run-dir",
        str(run_dir.relative_to(ROOT)),  # relative (cwd is ROOT): results hold no machine's paths
        "--total-steps",
        str(10**12),
        "--checkpoint-interval-s",
        "100000",
    ]
    traj, pol, ctl = free_ports(3)
    cmd += ["--net.trajectory-port", str(traj), "--net.policy-port", str(pol), "--net.control-port", str(ctl)]
    if num_actors is not None:
        cmd += ["--num-actors", str(num_actors)]
    cmd += list(extra or [])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out = (log_path or default_log_path(run_dir)).open("wb")
    try:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    finally:
        out.close()


def stop(proc: subprocess.Popen, timeout: float = 120.0) -> int:
    """SIGTERM (the learner checkpoints, exports and stops its actors), then wait; kill only if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def fresh_run_dir(name: str) -> Path:
    run_dir = ROOT / "runs" / "bench" / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return run_dir


def run_curve(which: str, minutes: float) -> dict[str, Any]:
    preset = PRESETS[which]
    run_dir = fresh_run_dir(f"learning-curve-{which}")
    load_before = os.getloadavg()
    t0 = time.time()
    proc = launch(preset, run_dir)
    deadline = time.monotonic() + minutes * 60.0
    print(f"[learning_curve] {which}: {preset} for {minutes:g} min in {run_dir}", flush=True)
    last_print = 0.0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(2.0)
        if time.monotonic() - last_print > 60.0:
            last_print = time.monotonic()
            try:
                st = json.loads((run_dir / "status.json").read_text())
                print(
                    f"  {time.time() - t0:6.0f} s  steps {st['env_steps']:,}  success {st['success_rate']}  "
                    f"return {st['mean_return']}  v{st['policy_version']}",
                    flush=True,
                )
            except (OSError, ValueError, KeyError):
                pass
    wall = time.time() - t0
    rc = stop(proc)
    load_after = os.getloadavg()
    scalars = read_scalars(run_dir / "tb", TAGS)
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}

    def series(tag: str) -> list[dict[str, float]]:
        return [
            {"env_steps": e["step"], "wall_s": round(e["wall_time"] - t0, 2), "value": e["value"]}
            for e in scalars.get(tag, [])
        ]

    sps = [e["value"] for e in scalars.get("charts/SPS", [])]
    return {
        "which": which,
        "preset": preset,
        "budget_minutes": minutes,
        "wall_s": round(wall, 1),
        "exit_code": rc,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "summary": summary,
        "mean_sps": (sum(sps) / len(sps)) if sps else None,
        "success_rate": series("charts/success_rate"),
        "episodic_return": series("charts/episodic_return"),
        "sps": series("charts/SPS"),
        "lag_mean": series("lag/mean"),
        "config": json.loads((run_dir / "config.json").read_text()),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharey="row")
    rows = (("success_rate", "success rate (last 100 episodes)"), ("episodic_return", "return (last 100 episodes)"))
    for r, (key, label) in enumerate(rows):
        pts = result[key]
        x_steps = [p["env_steps"] for p in pts]
        x_wall = [p["wall_s"] / 60.0 for p in pts]
        y = [p["value"] for p in pts]
        axes[r][0].plot(x_steps, y, lw=1.2)
        axes[r][1].plot(x_wall, y, lw=1.2, color="tab:orange")
        axes[r][0].set_ylabel(label)
        for ax in axes[r]:
            ax.grid(alpha=0.3)
    axes[1][0].set_xlabel("env steps")
    axes[1][1].set_xlabel("wall time since launch (min)")
    cfg = result["config"]
    m = cfg["model"]
    fig.suptitle(
        f"{result['preset']}: {m['kind']} L{m['num_layers']} d_model {m['d_model']}, T-Maze {cfg['env']['kwargs']}, "
        f"{cfg['num_actors']} actor(s) x {cfg['envs_per_actor']} envs, T={cfg['segment_length']}; "
        f"{result['wall_s'] / 60:.1f} min on a shared 2-core CPU",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _last(pts: list[dict[str, float]]) -> str:
    return "n/a" if not pts else f"{pts[-1]['value']:.3f}"


def _first_reaching(pts: list[dict[str, float]], level: float) -> str:
    """Where the curve reaches ``level`` for good, in env steps and minutes."""
    i = stays_at_or_above_from([p["value"] for p in pts], level)
    return "not reached" if i is None else f"{pts[i]['env_steps']:,} steps / {pts[i]['wall_s'] / 60:.1f} min"


def write_markdown(out: Path) -> None:
    lines = ["# Learning curves (T-Maze, local stack: learner + actor processes)", ""]
    info = None
    rows = []
    for which in PRESETS:
        p = out / f"learning_curve_{which}.json"
        if not p.exists():
            continue
        res = json.loads(p.read_text())
        info = res.get("machine", info)
        s = res.get("summary", {})
        rows.append(
            f"| {which} | `{res['preset']}` | {res['budget_minutes']:g} | {s.get('env_steps', 0):,} | "
            f"{s.get('updates', 0):,} | {res['mean_sps'] or float('nan'):.0f} | {_last(res['success_rate'])} | "
            f"{_last(res['episodic_return'])} | {_first_reaching(res['success_rate'], 0.9)} | "
            f"{res['loadavg_before'][0]:.2f} / {res['loadavg_after'][0]:.2f} | `learning_curve_{which}.png` |"
        )
    if info:
        lines += [machine_markdown(info), ""]
    lines += [
        "Each run: `python -m learner.launch --preset P` in a fresh run directory, stopped (SIGTERM) when its "
        "wall-clock budget is spent; curves from the TensorBoard scalars (success rate and return over the last "
        "100 episodes), against env steps and against wall time since the launch (which includes start-up and "
        "the first ONNX export). The machine has 2 cores shared with other people's tests, so wall-time axes "
        "and SPS are only indicative.",
        "",
        "| curve | preset | budget (min) | env steps | updates | mean SPS | final success | final return | "
        "success >= 0.9 from | load 1-min before / after | plot |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    write_with_notes(out / "learning_curve.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--which", choices=("paper", "small", "both"), default="both")
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget of the paper-size run")
    ap.add_argument("--small-minutes", type=float, default=4.0, help="wall-clock budget of the small-preset run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    todo = ["small", "paper"] if args.which == "both" else [args.which]
    for which in todo:
        minutes = args.minutes if which == "paper" else args.small_minutes
        result = run_curve(which, minutes)
        result["machine"] = machine_info()
        (args.out / f"learning_curve_{which}.json").write_text(json.dumps(result, indent=1, default=_json_default))
        plot(result, args.out / f"learning_curve_{which}.png")
        s = result["summary"]
        print(
            f"[learning_curve] {which}: {s.get('env_steps', 0):,} steps in {result['wall_s']:.0f} s, final success "
            f"{_last(result['success_rate'])}, return {_last(result['episodic_return'])}",
            flush=True,
        )
    write_markdown(args.out)
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput of AGaLiTe and GaLiTe at the paper's size: the parallel (training) form vs the model's own
single-step form called T times (forward + backward samples/s, T=128, B=16, CPU, 1 torch thread).

Run: ``python -m bench.agalite_scan [--reps 3]``. Writes bench/results/agalite_scan.{json,md}.
The sequence model alone is timed (input 128 features, paper sizes L4, d_model 128, H4 x 64, eta 4, r 2), starting
from a non-trivial state as truncated BPTT does, with ~1% episode resets; the loss is a fixed random projection of
the outputs. GaLiTe's step loop keeps every C state for backward (~50 MB per step at B=16), so it is timed over
T=32 (its per-sample cost does not depend on T); everything else uses T=128.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bench.machine import machine_info, machine_markdown
from models.agalite import AGaLiTe
from models.config import ModelConfig
from models.galite import GaLiTe

RESULTS = Path(__file__).resolve().parent / "results"
IN = 128


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name.startswith("AGaLiTe"):
        model = AGaLiTe(IN, ModelConfig(kind="agalite"))
        for block in model.stack.blocks:
            block.attention.scan_method = "doubling" if "doubling" in name else "chunked"
        return model
    chunk = 32 if "chunk 32" in name else 16
    model = GaLiTe(IN, ModelConfig(kind="galite"), chunk_size=chunk)
    model.set_form("scan" if "scan" in name else "pairwise")
    return model


def _iteration(model, x, reset, state, w, stepwise: bool) -> float:
    t0 = time.perf_counter()
    if stepwise:
        ys, s = [], state
        for t in range(x.shape[0]):
            y, s = model(x[t : t + 1], reset[t : t + 1], s)
            ys.append(y)
        y = torch.cat(ys)
    else:
        y, _ = model(x, reset, state)
    (y * w).sum().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def bench(name: str, stepwise: bool, t_len: int, batch: int, reps: int) -> dict:
    model = _model(name)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(t_len, batch, IN, generator=g)
    reset = torch.rand(t_len, batch, generator=g) < 0.01
    w = torch.randn(t_len, batch, model.output_dim, generator=g)
    with torch.no_grad():
        _, state = model(torch.randn(16, batch, IN, generator=g), torch.zeros(16, batch, dtype=torch.bool),
                         model.initial_state(batch))
    _iteration(model, x, reset, state, w, stepwise)  # warm-up
    times = [_iteration(model, x, reset, state, w, stepwise) for _ in range(reps)]
    sec = statistics.median(times)
    return {"model": name, "form": "step loop" if stepwise else "parallel", "T": t_len, "B": batch,
            "seconds_per_iteration": sec, "samples_per_s": t_len * batch / sec, "times": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--t-len", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    galite_reps = max(1, args.reps // 2)  # GaLiTe iterations take several seconds each
    plan = [
        ("AGaLiTe (chunked scan)", False, args.t_len, args.reps),
        ("AGaLiTe (doubling scan)", False, args.t_len, args.reps),
        ("AGaLiTe (chunked scan)", True, args.t_len, args.reps),
        ("GaLiTe paper, pairwise chunk 16", False, args.t_len, galite_reps),
        ("GaLiTe paper, scan chunk 16", False, args.t_len, galite_reps),
        ("GaLiTe paper, pairwise chunk 16", True, min(32, args.t_len), galite_reps),
    ]
    for name, stepwise, t_len, reps in plan:
        row = bench(name, stepwise, t_len, args.batch, reps)
        rows.append(row)
        print(f"{name:34s} {row['form']:9s} T={t_len:3d}: {row['samples_per_s']:8.0f} samples/s "
              f"({row['seconds_per_iteration']:.3f} s/iteration)", flush=True)

    def rate(name: str, form: str) -> float:
        return next(r["samples_per_s"] for r in rows if r["model"] == name and r["form"] == form)

    speedups = {
        "AGaLiTe": rate("AGaLiTe (chunked scan)", "parallel") / rate("AGaLiTe (chunked scan)", "step loop"),
        "GaLiTe": max(rate(n, "parallel") for n, s, _, _ in plan if n.startswith("GaLiTe") and not s)
        / rate("GaLiTe paper, pairwise chunk 16", "step loop"),
    }
    info = machine_info()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "agalite_scan.json").write_text(
        json.dumps({"machine": info, "rows": rows, "speedup_parallel_vs_step_loop": speedups}, indent=2) + "\n"
    )
    lines = [
        f"# AGaLiTe / GaLiTe training form vs step loop (forward + backward), B={args.batch}, CPU, 1 thread",
        "",
        machine_markdown(info),
        "",
        "Paper sizes (L4, d_model 128, H4 x 64, eta 4, r 2), sequence model only, median of "
        f"{args.reps} (AGaLiTe) / {galite_reps} (GaLiTe) iterations after a warm-up. The step loop calls the T=1 "
        "acting path T times. The machine is shared with other jobs: compare rows of one run, not across runs.",
        "",
        "| model | form | T | samples/s | s / iteration |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['form']} | {r['T']} | {r['samples_per_s']:,.0f} | "
                     f"{r['seconds_per_iteration']:.3f} |")
    lines += ["", f"Speed-up of the parallel form over the step loop: AGaLiTe {speedups['AGaLiTe']:.1f}x, "
              f"GaLiTe (best parallel form) {speedups['GaLiTe']:.1f}x (target >= 5x).", ""]
    (RESULTS / "agalite_scan.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

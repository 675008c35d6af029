"""How far back a loss can reach at initialisation: |d y[D] / d x[0]| / |d y[D] / d x[D]| per model and init.

Run: ``python -m bench.gradient_flow``. Writes bench/results/gradient_flow.{json,md}. Seconds on a CPU.

Why: on memory tasks the policy's loss at the query step must move the weights that wrote the cue D steps
earlier. If the gradient shrinks geometrically with D at initialisation, learning such a task waits for the
gates to drift open by chance; this table is the diagnosis behind ``ModelConfig.memory_init = "chrono"``
(docs/models.md, "Memory initialisation"). Sequence models only (no encoder or heads), 6-dim Gaussian inputs,
batch 32, the mean over 3 seeds; float64.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from bench.machine import machine_info, machine_markdown
from bench.report import write_with_notes
from models.config import ModelConfig
from models.sequence_models import build_sequence_model

RESULTS = Path(__file__).resolve().parent / "results"
DELAYS = (10, 20, 40, 100)
SMALL = {"num_layers": 2, "d_model": 64, "num_heads": 2, "d_head": 32, "d_ffc": 64}
MODELS: dict[str, dict] = {
    "GRU 128": {"kind": "gru", "rnn_hidden": 128},
    "LSTM 128": {"kind": "lstm", "rnn_hidden": 128},
    "AGaLiTe small (L2 d64)": {"kind": "agalite", **SMALL},
    "GaLiTe small (L2 d64)": {"kind": "galite", **SMALL},
    "AGaLiTe paper size": {"kind": "agalite"},
    "GTrXL small (L2 d64, M64)": {"kind": "gtrxl", **SMALL, "memory_len": 64},
}


def gradient_flow(cfg: ModelConfig, delay: int, seeds: int = 3, batch: int = 32, din: int = 6) -> float:
    """|d y[D] / d x[0]| / |d y[D] / d x[D]| of a fresh sequence model, mean over ``seeds`` (also the tests' probe)."""
    ratios = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = build_sequence_model(cfg, din).double()
        x = torch.randn(delay + 1, batch, din, dtype=torch.float64, requires_grad=True)
        reset = torch.zeros(delay + 1, batch, dtype=torch.bool)
        reset[0] = True
        state = {k: v.double() if v.is_floating_point() else v for k, v in model.initial_state(batch).items()}
        y, _ = model(x, reset, state)
        (grad,) = torch.autograd.grad(y[-1].pow(2).sum(), x)
        ratios.append(float(grad[0].norm() / grad[-1].norm()))
    return sum(ratios) / len(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gradient_flow.{json,md}")
    out: Path = parser.parse_args().out
    rows: list[dict[str, Any]] = []
    for label, kw in MODELS.items():
        inits = ("default", "chrono") if kw["kind"] != "gtrxl" else ("default",)
        for init in inits:
            cfg = ModelConfig(memory_init=init, **kw)  # type: ignore[arg-type]  # kind is a Literal
            flows = {str(d): gradient_flow(cfg, d) for d in DELAYS}
            rows.append({"model": label, "memory_init": init, "flow": flows})
            print(label, init, {d: f"{v:.1e}" for d, v in flows.items()}, flush=True)
    info = machine_info()
    out.mkdir(parents=True, exist_ok=True)
    (out / "gradient_flow.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    lines = [
        "# Gradient flow through time at initialisation",
        "",
        "|d y[D] / d x[0]| / |d y[D] / d x[D]|: the share of the last step's input gradient that reaches the first "
        "input D steps back (float64, mean of 3 seeds). `chrono` is the default `memory_init` (GTrXL has no gates "
        "that decay memory: its window is `memory_len`). Written by `python -m bench.gradient_flow`.",
        "",
        machine_markdown(info),
        "",
        "| model | memory_init | " + " | ".join(f"D={d}" for d in DELAYS) + " |",
        "|---|---|" + "---|" * len(DELAYS),
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['memory_init']} | " + " | ".join(f"{r['flow'][str(d)]:.1e}" for d in DELAYS) + " |"
        )
    write_with_notes(out / "gradient_flow.md", "\n".join(lines))


if __name__ == "__main__":
    main()

"""State floats and MACs per step of every model kind, checked against the paper's table (docs/models.md#costs).

Run: ``python -m bench.model_costs``. Writes bench/results/model_costs.{json,md}. Pure arithmetic plus one model
construction per row (to read the real state size), so it takes seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.machine import machine_info, machine_markdown
from bench.report import write_with_notes
from models import build_sequence_model, paper_config
from models.config import ModelConfig
from models.macs import PAPER_TABLE, GTrXLCount, model_cost

RESULTS = Path(__file__).resolve().parent / "results"
OBS_DIM = 16  # T-Maze-like vector observation: the LSTM/GRU input size (flatten encoder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for model_costs.{json,md}")
    out: Path = parser.parse_args().out
    check = []
    for label, cfg, count, macs, floats in PAPER_TABLE:
        c = model_cost(cfg, gtrxl_count=count)
        check.append({"model": label, "macs_per_layer": c.macs_per_layer, "paper_macs_per_layer": macs,
                      "state_floats": c.state_floats, "paper_state_floats": floats,
                      "match": c.macs_per_layer == macs and c.state_floats == floats})  # fmt: skip
    rows = []
    configs: list[tuple[str, ModelConfig, GTrXLCount]] = [
        ("AGaLiTe eta=4 r=2", paper_config("agalite", eta=4), "as_coded"),
        ("AGaLiTe eta=8 r=2", paper_config("agalite", eta=8), "as_coded"),
        ("GaLiTe paper form eta=4", paper_config("galite", eta=4, galite_variant="paper"), "as_coded"),
        ("GaLiTe code form eta=2", paper_config("galite", eta=2, galite_variant="code"), "as_coded"),
        ("GTrXL M=128 inputs (as coded)", paper_config("gtrxl", memory_form="inputs"), "as_coded"),
        ("GTrXL M=128 kv cache (this repo)", paper_config("gtrxl", memory_form="kv"), "implemented"),
        ("LSTM 600", paper_config("lstm"), "as_coded"),
        ("GRU 680", paper_config("gru"), "as_coded"),
    ]
    for label, cfg, count in configs:
        c = model_cost(cfg, input_dim=OBS_DIM, gtrxl_count=count)
        try:
            real = build_sequence_model(cfg, OBS_DIM if cfg.kind in ("lstm", "gru") else cfg.d_model)
            real_floats: int | None = real.state_floats_per_env()
        except NotImplementedError:
            real_floats = None
        rows.append({"model": label, "kind": cfg.kind, "macs_per_layer": c.macs_per_layer, "layers": c.num_layers,
                     "macs_per_step": c.macs_per_step, "state_floats_formula": c.state_floats,
                     "state_floats_model": real_floats, "state_bools": c.state_bools})  # fmt: skip
    info = machine_info()
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_costs.json").write_text(json.dumps({"machine": info, "paper_check": check, "models": rows},
                                                         indent=2) + "\n")  # fmt: skip
    md = ["# Model costs per env and step (analytic; encoder and heads excluded)", "", machine_markdown(info), "",
          "Convention (docs/models.md#costs): dense products and recurrence/attention arithmetic only.",
          "AGaLiTe's paper count includes a float tick per layer; this repository keeps an integer counter, so the",
          "model's float state is L smaller. LSTM/GRU MACs assume a 16-float observation.", "",
          "## Check against the paper's table", "", "| model | MACs/layer | paper | state floats | paper | match |",
          "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in check:
        md.append(f"| {r['model']} | {r['macs_per_layer']:,} | {r['paper_macs_per_layer']:,} | {r['state_floats']:,} "
                  f"| {r['paper_state_floats']:,} | {'yes' if r['match'] else '**NO**'} |")  # fmt: skip
    md += ["", "## Paper-size models in this repository", "",
           "| model | MACs/layer | layers | MACs/step | state floats (formula) | state floats (model) | bools |",
           "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        model_floats = f"{r['state_floats_model']:,}" if r["state_floats_model"] is not None else "n/a"
        md.append(f"| {r['model']} | {r['macs_per_layer']:,} | {r['layers']} | {r['macs_per_step']:,} | "
                  f"{r['state_floats_formula']:,} | {model_floats} | {r['state_bools']} |")  # fmt: skip
    write_with_notes(out / "model_costs.md", "\n".join(md))
    print("\n".join(md))
    if not all(r["match"] for r in check):
        raise SystemExit("the analytic counts no longer reproduce the paper's table (models.macs.PAPER_TABLE)")


if __name__ == "__main__":
    main()

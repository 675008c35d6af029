"""bench.peer.phases: a run's curve split into finding the junction and learning the memory."""

from __future__ import annotations

import json
from pathlib import Path

from bench.peer.phases import main, phases


def test_a_curve_splits_at_the_first_regular_arrival() -> None:
    steps = (10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000)
    curve = list(zip(steps, (0.0, 0.02, 0.31, 0.55, 0.89, 0.9, 1.0), strict=True))
    assert phases(curve, 0.9) == (30_000, 30_000)
    assert phases(curve[:5], 0.9) == (30_000, None)  # arrived, never reached the threshold
    assert phases([(10_000, 0.0), (20_000, 0.29)], 0.9) == (None, None)  # never arrived
    assert phases([], 0.9) == (None, None)


def test_the_page_lists_each_runner_with_its_seeds(tmp_path: Path) -> None:
    def run(runner: str, seed: int, curve: list[list[float]]) -> dict:
        return {"runner": runner, "seed": seed, "curve": curve}

    runs = {
        "ours-gru/s2": run("ours-gru", 2, [[5_000, 0.5], [25_000, 0.95]]),
        "ours-gru/s1": run("ours-gru", 1, [[8_000, 0.1], [9_000, 0.4], [19_000, 0.9]]),
        "sf-tuned/s1": run("sf-tuned", 1, [[1_000, 1.0]]),
    }
    (tmp_path / "peer_tmaze_50.json").write_text(json.dumps({"task": "tmaze_50", "runs": runs}))
    out = tmp_path / "phases.md"
    argv = ["--tasks", "tmaze_50", "--runners", "ours-gru,ours-agalite", "--results-dir", str(tmp_path)]
    assert main([*argv, "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| tmaze_50")]
    assert rows == ["| tmaze_50 | `ours-gru` | 1, 2 | 9k / 5k | 10k / 20k | 7k (2/2) | 15k (2/2) |"]

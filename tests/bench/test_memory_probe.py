"""The memory probe's episodes are real T-Maze episodes, and its training run learns a corridor a GRU can hold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.memory_probe import episodes, main, probe, save_row
from envs.tmaze import CUE_BITS, POSITION_BITS, decode_gray


def test_episodes_walk_from_the_cue_to_the_junction() -> None:
    obs, turns, at = episodes(corridor=6, count=8, seed=3)
    assert (at == 5).all()  # walked straight: the junction at the last step
    assert obs.shape[:2] == (6, 8) and set(turns) <= {0, 1} and len(set(turns)) == 2
    for i in range(8):
        cue = obs[0, i, :CUE_BITS]
        assert int(np.argmax(cue)) == 1 - turns[i]  # up = (0, 1), down = (1, 0)
        assert not obs[1:, i, :CUE_BITS].any()  # shown only at the start
        positions = [decode_gray(obs[t, i, CUE_BITS : CUE_BITS + POSITION_BITS]) for t in range(6)]
        assert positions == list(range(6))  # walked straight to the junction


def test_a_short_corridor_is_learned_and_reported() -> None:
    run = probe("gru", "--model.rnn-hidden 32", corridor=3, seed=1, max_updates=400, every=25)
    assert run["updates_to_target"] is not None, run["curve"]
    assert run["final_accuracy"] >= 0.95 and run["curve"][-1][0] == run["updates_to_target"]


def test_wandering_episodes_reach_the_junction_at_different_steps() -> None:
    obs, _, at = episodes(corridor=6, count=32, seed=1, wander=0.3)
    assert obs.shape[:2] == (18, 32) and len(set(at.tolist())) > 2 and (at >= 5).all()
    for i in range(32):
        assert decode_gray(obs[at[i], i, CUE_BITS : CUE_BITS + POSITION_BITS]) == 5  # the junction, first reached
        assert all(decode_gray(obs[t, i, CUE_BITS : CUE_BITS + POSITION_BITS]) < 5 for t in range(at[i]))


def test_a_row_keeps_the_rows_another_probe_wrote_meanwhile(tmp_path) -> None:
    def row(label: str, seeds: list[int], updates: int) -> dict:
        runs = [{"seed": s, "updates_to_target": updates, "final_accuracy": 1.0, "curve": []} for s in seeds]
        return {"label": label, "corridor": 20, "wander": 0.0, "max_updates": 100, "runs": runs}

    save_row(tmp_path, "a | 20 | 0.0", row("a", [1, 2], 50))
    save_row(tmp_path, "b | 20 | 0.0", row("b", [1], 75))  # another probe's row, written after the first started
    save_row(tmp_path, "a | 20 | 0.0", row("a", [2, 3], 25))  # seeds 2-3 again: seed 2 replaced, seed 1 kept
    rows = json.loads((tmp_path / "memory_probe.json").read_text())["rows"]
    assert sorted(rows) == ["a | 20 | 0.0", "b | 20 | 0.0"]
    assert [(r["seed"], r["updates_to_target"]) for r in rows["a | 20 | 0.0"]["runs"]] == [(1, 50), (2, 25), (3, 25)]
    report = (tmp_path / "memory_probe.md").read_text()
    assert "| a | 20 | 0 | 50 / 25 / 25 (25;" in report and "| b | 20 | 0 | 75 (75;" in report


def test_a_label_that_now_builds_another_model_is_refused_before_training(tmp_path) -> None:
    # Written before the default preset's AGaLiTe changed its frequency grid: the plain label "agalite" meant the
    # reference grid then, and its runs recorded no model.
    old = {"seed": 1, "updates_to_target": 900, "final_accuracy": 1.0, "curve": []}
    row = {"label": "agalite", "corridor": 20, "wander": 0.0, "max_updates": 1200, "runs": [old]}
    (tmp_path / "memory_probe.json").write_text(json.dumps({"machine": {}, "rows": {"agalite | 20 | 0.0": row}}))
    with pytest.raises(SystemExit, match="holds runs of another model; pass --label"):
        main(["--kinds", "agalite", "--corridors", "20", "--seeds", "1", "--out", str(tmp_path)])
    recorded = {**old, "model": {"kind": "agalite", "frequencies": "reference"}}
    with pytest.raises(SystemExit, match="another model"):
        save_row(tmp_path, "agalite | 20 | 0.0", {**row, "runs": [{**recorded, "model": {"kind": "agalite"}}]})

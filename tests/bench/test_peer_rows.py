"""Runs of one runner made at different resolved settings never share a row (and a median) of a peer report.

``ours-agalite`` means "the defaults of the run's commit"; results files grow over sessions, so when a default
changes, later seeds must not be pooled with earlier ones. The configs here are the learner's own resolved configs.
"""

from __future__ import annotations

from typing import Any

from bench.peer.run import row_labels, summarise
from bench.peer.tasks import TASKS
from learner.cli import parse_config


def _run(runner: str, seed: int, steps: int | None, flags: list[str]) -> dict[str, Any]:
    config = parse_config(["--model.kind", "agalite", "--seed", str(seed), *flags], "test").to_dict()
    return {"runner": runner, "seed": seed, "config": config, "steps_to_threshold": steps, "final": 1.0,
            "env_steps_per_s": 4000.0, "eval": None, "wall_s": 60.0, "load1_mean": 1.0}  # fmt: skip


def test_a_changed_default_splits_a_runner_into_rows_named_by_what_differs() -> None:
    runs = {
        "ours-agalite/s1": _run("ours-agalite", 1, 100, ["--model.frequencies", "reference"]),
        "ours-agalite/s2": _run("ours-agalite", 2, 300, ["--model.frequencies", "reference"]),
        "ours-agalite/s3": _run("ours-agalite", 3, 50, ["--model.frequencies", "distinct"]),
        # a GRU does not read the AGaLiTe's grid: its runs at either default stay one row
        "ours-gru/s1": _run("ours-gru", 1, 100, ["--model.kind", "gru", "--model.frequencies", "reference"]),
        "ours-gru/s2": _run("ours-gru", 2, 100, ["--model.kind", "gru", "--model.frequencies", "distinct"]),
        "sf-tuned/s1": {**_run("sf-tuned", 1, 200, []), "config": {"sf_argv": ["--seed", "1"]}},
        "sf-tuned/s2": {**_run("sf-tuned", 2, 400, []), "config": {"sf_argv": ["--seed", "2"]}},
    }
    labels = row_labels(runs)
    assert labels["ours-agalite/s1"] == labels["ours-agalite/s2"] == "ours-agalite (model.frequencies reference)"
    assert labels["ours-agalite/s3"] == "ours-agalite (model.frequencies distinct)"
    assert labels["sf-tuned/s1"] == labels["sf-tuned/s2"] == "sf-tuned"  # seeds and run dirs are not settings
    assert labels["ours-gru/s1"] == labels["ours-gru/s2"] == "ours-gru"
    summary = summarise(TASKS["tmaze_20"], runs)
    assert summary["ours-agalite (model.frequencies reference)"]["seeds"] == [1, 2]
    assert summary["ours-agalite (model.frequencies distinct)"]["median_steps_to_threshold"] == 50
    assert summary["sf-tuned"]["median_steps_to_threshold"] == 300


def test_a_setting_an_older_run_did_not_record_reads_as_the_value_that_reproduces_it() -> None:
    older = _run("ours-agalite-noepstart", 1, 100, ["--model.no-episode-start-input"])
    del older["config"]["model"]["episode_start_input"]  # written before the setting existed (it was off then)
    runs = {
        "ours-agalite-noepstart/s1": older,
        "ours-agalite-noepstart/s2": _run("ours-agalite-noepstart", 2, 100, ["--model.no-episode-start-input"]),
        "ours-gru/s1": _run("ours-gru", 1, 100, ["--model.kind", "gru"]),
    }
    assert set(row_labels(runs).values()) == {"ours-agalite-noepstart", "ours-gru"}


def test_a_ppo_setting_an_older_run_did_not_record_reads_as_the_value_it_trained_with() -> None:
    older = _run("ours-agalite", 1, 100, [])
    del older["config"]["ppo"]["preserve_values"]  # written before the setting existed (off then, on by default now)
    runs = {
        "ours-agalite/s1": older,
        "ours-agalite/s2": _run("ours-agalite", 2, 100, ["--ppo.no-preserve-values"]),
        "ours-agalite/s3": _run("ours-agalite", 3, 100, []),
    }
    labels = row_labels(runs)
    assert labels["ours-agalite/s1"] == labels["ours-agalite/s2"] == "ours-agalite (ppo.preserve_values False)"
    assert labels["ours-agalite/s3"] == "ours-agalite (ppo.preserve_values True)"


def test_the_lowest_point_after_the_threshold_shows_a_fall_the_final_value_hides() -> None:
    fell = {**_run("ours-gru", 1, 300, []), "curve": [[100, 0.5], [300, 0.92], [400, 0.61], [500, 0.95]]}
    steady = {**_run("ours-gru", 2, 200, []), "curve": [[200, 0.9], [300, 0.97]]}
    never = {**_run("ours-gru", 3, None, []), "curve": [[100, 0.5], [200, 0.6]]}
    summary = summarise(TASKS["tmaze_20"], {"ours-gru/s1": fell, "ours-gru/s2": steady, "ours-gru/s3": never})
    assert summary["ours-gru"]["lowest_after_threshold"] == [0.61, 0.97, None]

"""The scoreboard counts only runs at today's defaults, so an old default is never quoted as today's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.peer.run import RUNS, ours_command
from bench.peer.scoreboard import Side, ahead_share, main, runs_at_defaults, side, todays_settings
from bench.peer.tasks import TASKS
from learner.cli import parse_config

TASK = TASKS["tmaze_20"]


def _run(runner: str, seed: int, steps: int | None, extra: list[str], as_runner: str | None = None) -> dict[str, Any]:
    """A stored run as bench.peer.run saves it, with the config the learner resolves for that command line."""
    config = parse_config(ours_command(TASK, runner, seed, RUNS / "x", extra)[3:], "test").to_dict()
    return {"runner": as_runner or runner, "seed": seed, "config": config, "steps_to_threshold": steps,
            "final": 0.95 if steps else 0.5, "env_steps_per_s": 1.0, "eval": None, "wall_s": 1.0,
            "load1_mean": 1.0, "curve": [], "last_step": TASK.budget, "timed_out": False, "returncode": 0}  # fmt: skip


def test_only_runs_at_todays_defaults_count() -> None:
    runs = {
        "ours-agalite/s1": _run("ours-agalite", 1, 900_000, ["--model.frequencies", "reference"]),  # an old default
        "ours-agalite/s2": _run("ours-agalite", 2, 80_000, []),
        "ours-agalite-r2distinct/s3": _run("ours-agalite", 3, 60_000, [], as_runner="ours-agalite-r2distinct"),
        "ours-agalite-seg64/s1": _run("ours-agalite", 1, 10_000, ["--segment-length", "64"], "ours-agalite-seg64"),
        "ours-gru/s1": _run("ours-gru", 1, 70_000, ["--model.frequencies", "reference"]),  # not read by a GRU
        "ours-gru/s2": _run("ours-gru", 2, None, ["--ppo.ent-coef", "0.03"]),  # another PPO setting
    }
    agalite = runs_at_defaults(runs, "ours-agalite", todays_settings(TASK, "ours-agalite"))
    assert sorted(agalite) == ["ours-agalite-r2distinct/s3", "ours-agalite/s2"]
    gru = runs_at_defaults(runs, "ours-gru", todays_settings(TASK, "ours-gru"))
    assert sorted(gru) == ["ours-gru/s1"]
    assert side(agalite, TASK.budget).median == 70_000 and side(gru, TASK.budget).median == 70_000


def test_the_page_states_each_target(tmp_path: Path) -> None:
    sf = {f"sf-tuned/s{s}": {**_run("ours-gru", s, steps, []), "runner": "sf-tuned", "config": {"sf_argv": []}}
          for s, steps in ((1, 150_000), (2, 170_000), (3, None))}  # fmt: skip
    runs = {
        **sf,
        "ours-gru/s1": _run("ours-gru", 1, 60_000, []),
        "ours-gru/s2": _run("ours-gru", 2, 80_000, []),
        "ours-agalite/s1": _run("ours-agalite", 1, None, []),
    }
    (tmp_path / f"peer_{TASK.name}.json").write_text(json.dumps({"task": TASK.name, "runs": runs}))
    assert main(["--results-dir", str(tmp_path)]) == 0
    page = (tmp_path / "peer_scoreboard.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith(f"| [{TASK.name}]"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:] == ["20", "170k (2/3), `sf-tuned`", "70k (2/2)", "never (0/1; final 0.50)", "yes", "no",
                         "0.00 of 2 pairs"]  # fmt: skip


def test_the_ahead_share_counts_seed_pairs_with_never_as_worst() -> None:
    def of(*steps: float | None) -> Side:
        return Side(steps, None, 0)

    assert ahead_share(of(100, 300), of(200, None)) == 0.75  # 100 beats both; 300 beats only never
    assert ahead_share(of(None), of(None)) == 0.5
    assert ahead_share(of(), of(100)) is None


def test_a_candidate_default_counts_runs_made_with_its_flags_under_any_of_our_names(tmp_path: Path) -> None:
    seg = ["--segment-length", "128"]
    runs = {
        "ours-gru/s1": _run("ours-gru", 1, 60_000, []),  # today's default: counts on today's page only
        "ours-gru-seg128/s1": _run("ours-gru", 1, 40_000, seg, as_runner="ours-gru-seg128"),
        "ours-gru-seg128/s2": _run("ours-gru", 2, 50_000, seg, as_runner="ours-gru-seg128"),
        "ours-agalite-seg128/s1": _run("ours-agalite", 1, 30_000, seg, as_runner="ours-agalite-seg128"),
    }
    (tmp_path / f"peer_{TASK.name}.json").write_text(json.dumps({"task": TASK.name, "runs": runs}))
    assert main(["--results-dir", str(tmp_path)]) == 0
    assert main(["--results-dir", str(tmp_path), f"--candidate={' '.join(seg)}"]) == 0

    def cells(page: str) -> list[str]:
        row = next(line for line in (tmp_path / page).read_text().splitlines() if line.startswith(f"| [{TASK.name}]"))
        return [c.strip() for c in row.strip("|").split("|")]

    assert cells("peer_scoreboard.md")[3:5] == ["60k (1/1)", "no run"]
    assert cells("peer_scoreboard_candidate.md")[3:5] == ["45k (2/2)", "30k (1/1)"]
    assert "if `--segment-length 128` were the default" in (tmp_path / "peer_scoreboard_candidate.md").read_text()


def test_a_run_stopped_from_outside_counts_as_stopped_early() -> None:
    """A learner stopped by hand exits 0 like a finished run; where its curve ends tells them apart."""
    finished = _run("ours-gru", 1, None, [])
    by_hand = {**finished, "last_step": TASK.budget // 3}
    timed_out = {**by_hand, "timed_out": True}
    reached = {**by_hand, "steps_to_threshold": 50_000}
    short_by_a_batch = {**finished, "last_step": int(TASK.budget * 0.985)}  # how Sample Factory's runs end
    assert [side({"a": r}, TASK.budget).stopped_early for r in (finished, by_hand, timed_out, reached)] == [0, 1, 1, 0]
    assert side({"a": short_by_a_batch}, TASK.budget).stopped_early == 0

"""The side-by-side harness's command line: a variant run under a label stands in its own row, and bad input is one
line, not a traceback."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from bench.peer.run import ROOT, main


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_runs_outside_the_repository_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # runs are recorded by their path relative to the repository; one outside it was a ValueError after the start
    err = _usage_error(["--tasks", "delayed_recall_k4_d10", "--runs-dir", str(tmp_path)], capsys)
    assert "--runs-dir must lie inside the repository" in err, err


def test_a_label_must_be_a_plain_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["--label", "a b/c", "--results-dir", str(tmp_path)], capsys)
    assert "--label takes lowercase letters" in err, err


def test_a_labelled_variant_gets_its_own_row_run_directory_and_log(tmp_path: Path) -> None:
    runs = ROOT / "runs" / f"test-label-{uuid.uuid4().hex[:8]}"
    try:
        argv = ["--tasks", "delayed_recall_k4_d10", "--seeds", "1", "--runners", "ours-gru", "--label", "tiny"]
        argv += ["--ours-args=--ppo.ent-coef 0.02", "--budget", "1024", "--timeout-s", "300"]
        assert main([*argv, "--runs-dir", str(runs), "--results-dir", str(tmp_path)]) == 0
        data = json.loads((tmp_path / "peer_delayed_recall_k4_d10.json").read_text())
        assert list(data["runs"]) == ["ours-gru-tiny/s1"]
        run = data["runs"]["ours-gru-tiny/s1"]
        assert run["runner"] == "ours-gru-tiny" and run["returncode"] == 0, run
        assert run["config"]["ppo"]["ent_coef"] == 0.02  # the extra flags reached the learner
        assert (runs / "delayed_recall_k4_d10" / "ours-gru-tiny-s1" / "policy.onnx").exists()
        assert (runs / "delayed_recall_k4_d10" / "ours-gru-tiny-s1.log").exists()
        assert "ours-gru-tiny" in (tmp_path / "peer_delayed_recall_k4_d10.md").read_text()
    finally:
        shutil.rmtree(runs, ignore_errors=True)

"""Rewriting a results report keeps the notes people added to it by hand."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bench.report import hand_notes, write_with_notes

REPO = Path(__file__).resolve().parents[2]


def test_a_rewrite_keeps_the_hand_notes_after_the_new_table(tmp_path: Path) -> None:
    path = tmp_path / "r.md"
    write_with_notes(path, "# R\n\n| a |\n|---|\n| 1 |\n")
    assert path.read_text() == "# R\n\n| a |\n|---|\n| 1 |\n"
    path.write_text(
        path.read_text() + "\nFirst note (added by hand, day 1): row 1 ran at load 2.\nSecond line.\n\nLater: more.\n"
    )
    write_with_notes(path, "# R\n\n| a |\n|---|\n| 2 |\n")
    text = path.read_text()
    assert text.startswith("# R\n\n| a |\n|---|\n| 2 |\n\nFirst note (added by hand, day 1)")
    assert "| 1 |" not in text and text.endswith("Second line.\n\nLater: more.\n")
    write_with_notes(path, "# R\n\n| a |\n|---|\n| 3 |\n")  # twice: the notes once, not doubled
    assert path.read_text().count("First note") == 1 and path.read_text().count("Later: more.") == 1


def test_notes_the_generator_writes_itself_are_not_repeated(tmp_path: Path) -> None:
    path = tmp_path / "r.md"
    generated = "# R\n\nNotes (added by hand):\n\nfrom the json.\n"
    write_with_notes(path, generated)
    path.write_text(path.read_text() + "\nA later hand note.\n")
    write_with_notes(path, generated)
    assert path.read_text() == generated + "\nA later hand note.\n"
    assert hand_notes("no notes here\n") == ""


def test_the_peer_report_rewrite_keeps_a_stored_reports_notes(tmp_path: Path) -> None:
    """The real writer on a stored result: ``bench.peer.run --report-only`` rewrites the .md from the .json."""
    for suffix in (".json", ".md"):
        shutil.copy(REPO / "bench/results" / f"peer_tmaze_20{suffix}", tmp_path / f"peer_tmaze_20{suffix}")
    before = (tmp_path / "peer_tmaze_20.md").read_text()
    notes = hand_notes(before)
    assert notes.count("\n") > 3  # the stored report has hand notes to lose
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.peer.run",
            "--tasks",
            "tmaze_20",
            "--report-only",
            "--results-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    after = (tmp_path / "peer_tmaze_20.md").read_text()
    assert after.endswith(notes) and after.count(notes.splitlines()[0]) == 1

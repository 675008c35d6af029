"""Threshold crossings read from real TensorBoard summaries: a level reached exactly counts as reached.

TensorBoard stores scalars as float32, so a success rate of 90 in 100 episodes comes back as 0.89999998. The
benchmarks once compared that with ``>= 0.9`` and missed the crossing (and Sample Factory's stop observer, comparing
its float64 mean, ended a run that the report then called "never reached").
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from bench.learning_curve import at_or_above, read_scalars
from bench.memory_sweep import first_at_or_above as sweep_first
from bench.memory_sweep import stays_from_step
from bench.peer.run import curve_stats, first_at_or_above, past_threshold

TAG = "charts/success_rate"


def _write(tb: Path, values: list[tuple[int, float]]) -> None:
    writer = SummaryWriter(log_dir=str(tb))
    for step, value in values:
        writer.add_scalar(TAG, value, step)
    writer.close()


def test_a_mean_of_exactly_the_level_reads_back_below_it_and_still_counts(tmp_path: Path) -> None:
    _write(tmp_path, [(100, 0.5), (200, 90 / 100), (300, 0.95)])
    points = read_scalars(tmp_path, (TAG,))[TAG]
    assert points[1]["value"] < 0.9  # the float32 round trip this is about
    assert at_or_above(points[1]["value"], 0.9)
    assert not at_or_above(0.89, 0.9)
    assert curve_stats(points, 0.9)["steps_to_threshold"] == 200
    assert first_at_or_above([(p["step"], p["value"]) for p in points], 0.9) == 200
    assert sweep_first([[p["step"], p["value"]] for p in points], 0.9) == 200
    assert stays_from_step([[p["step"], p["value"]] for p in points], 0.9) == 200


def test_the_stop_rule_counts_the_crossing_from_the_exact_level(tmp_path: Path) -> None:
    _write(tmp_path, [(100, 0.9), (150, 0.91), (250, 0.92)])
    assert past_threshold(tmp_path, TAG, 0.9, extra_steps=150)
    assert not past_threshold(tmp_path, TAG, 0.9, extra_steps=151)


def test_a_curve_below_the_level_never_reaches_it(tmp_path: Path) -> None:
    _write(tmp_path, [(100, 0.5), (200, 0.89), (300, 0.899)])
    points = read_scalars(tmp_path, (TAG,))[TAG]
    assert curve_stats(points, 0.9)["steps_to_threshold"] is None
    assert not past_threshold(tmp_path, TAG, 0.9, extra_steps=0)

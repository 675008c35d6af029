"""The segment length follows the env's memory horizon unless the command line names one: a segment shorter than
the span between a cue and the step that needs it never shows the two together (docs/learning.md, D = 40)."""

from __future__ import annotations

import logging

import pytest

from learner.cli import parse_config
from learner.config import MAX_HORIZON_SEGMENT, load_preset, segment_length_for


@pytest.mark.parametrize(
    ("horizon", "configured", "expect"),
    [
        (None, 32, 32),  # the env does not say: the preset's
        (10, 32, 32),  # a short memory keeps the preset's
        (32, 32, 32),
        (33, 32, 64),
        (42, 32, 64),
        (64, 32, 64),
        (65, 32, 128),
        (416, 32, MAX_HORIZON_SEGMENT),  # capped
        (100, 256, 256),  # never lowered
        (5, 16, 16),
    ],
)
def test_segment_length_for(horizon: int | None, configured: int, expect: int) -> None:
    assert segment_length_for(horizon, configured) == expect


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        ([], 32),  # the default preset: T-Maze corridor 10
        (["--env.kwargs", '{"corridor_length": 20}'], 32),
        (["--env.kwargs", '{"corridor_length": 50}'], 64),
        (["--env.kwargs", '{"corridor_length": 100}'], 128),
        (["--env.id", "agalite/DelayedRecall-v0", "--env.kwargs", '{"delay": 20}'], 32),
        (["--env.id", "agalite/DelayedRecall-v0", "--env.kwargs", '{"delay": 40}'], 64),
        (["--env.id", "CartPole-v1"], 32),  # no declared horizon
    ],
)
def test_the_default_segment_covers_the_envs_memory(flags: list[str], expect: int) -> None:
    assert load_preset("tmaze-agalite").segment_length == 32
    assert parse_config(flags, "test").segment_length == expect


def test_a_segment_length_on_the_command_line_is_kept_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    flags = ["--env.kwargs", '{"corridor_length": 50}']
    with caplog.at_level(logging.INFO, logger="learner"):
        cfg = parse_config([*flags, "--segment-length", "32"], "test")
    assert cfg.segment_length == 32
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "50 steps back" in warned[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="learner"):
        assert parse_config([*flags, "--segment-length=16"], "test").segment_length == 16
        assert parse_config(flags, "test").segment_length == 64
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("segment length 64 (the preset's 32") for m in said), said


def test_popgym_horizons_follow_the_task() -> None:
    pytest.importorskip("popgym")
    first = parse_config(["--env.id", "agalite/PopGym-RepeatFirstEasy-v0"], "test")
    assert first.segment_length == 64  # 52 observations, the first card needed at the last
    previous = parse_config(["--env.id", "agalite/PopGym-RepeatPreviousEasy-v0"], "test")
    assert previous.segment_length == 32  # the card 4 observations back
    flags = ["--env.id", "agalite/PopGym-RepeatPreviousEasy-v0", "--env.kwargs", '{"k": 40, "num_decks": 2}']
    assert parse_config(flags, "test").segment_length == 64

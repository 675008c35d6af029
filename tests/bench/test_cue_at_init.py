"""bench.cue_at_init: the linear probe tells a carried cue from an absent one, on real models and env episodes."""

from __future__ import annotations

import numpy as np

from bench.cue_at_init import linear_probe, measure


def test_linear_probe_finds_a_cue_that_is_there_and_not_one_that_is_not() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 3000)
    noise = rng.normal(size=(3000, 16))
    carried = noise.copy()
    carried[:, 3] += 0.5 * (2 * labels - 1)  # the cue in one feature, under unit noise
    acc, share = linear_probe(carried[:2000], labels[:2000], carried[2000:], labels[2000:])
    assert acc > 0.65 and share > 0.005
    acc, share = linear_probe(noise[:2000], labels[:2000], noise[2000:], labels[2000:])
    assert 0.4 < acc < 0.6 and share < 0.005


def test_a_fresh_gru_carries_a_short_corridors_cue_and_the_agalite_taps_are_probed() -> None:
    gru = measure("gru", "", corridor=4, seeds=1)
    assert set(gru) == {"trunk output"}
    assert gru["trunk output"]["mean_accuracy"] > 0.9  # 1.0 at corridors 20 and 50 (bench/results/cue_at_init.md)
    agalite = measure("agalite", "", corridor=4, seeds=1)
    assert set(agalite) == {"layer 1 read-out", "block 1 output", "layer 2 read-out", "trunk output"}
    for tap in agalite.values():
        assert 0.0 <= tap["mean_accuracy"] <= 1.0 and tap["mean_share"] >= 0.0


def test_the_full_first_write_brings_the_cue_to_a_fresh_agalites_output() -> None:
    """At corridor 20 the gated write leaves the output at chance,
    the full write carries the cue there (0.52 against 0.99 over 3 seeds, bench/results/cue_at_init.md)."""
    gated = measure("agalite", "--model.first-write gated", corridor=20, seeds=1)["trunk output"]["mean_accuracy"]
    full = measure("agalite", "--model.first-write full", corridor=20, seeds=1)["trunk output"]["mean_accuracy"]
    assert gated < 0.7 and full > 0.9

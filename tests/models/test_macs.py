"""The analytic cost model reproduces the paper's table (docs/models.md#costs), agrees with the models' state sizes."""

from __future__ import annotations

import pytest

from models import build_sequence_model, paper_config
from models.macs import PAPER_TABLE, model_cost


@pytest.mark.parametrize("label,cfg,count,macs,floats", PAPER_TABLE, ids=[row[0] for row in PAPER_TABLE])
def test_paper_table(label: str, cfg, count, macs: int, floats: int) -> None:
    cost = model_cost(cfg, gtrxl_count=count)
    assert cost.macs_per_layer == macs
    assert cost.state_floats == floats
    assert cost.macs_per_step == 4 * macs


def test_paper_headline_ratios() -> None:
    """docs/models.md#costs: AGaLiTe(eta 4) state is 82.5% below GTrXL-128's, compute >95% below the coded GTrXL's."""
    ag = model_cost(paper_config("agalite", eta=4))
    gt = model_cost(paper_config("gtrxl", memory_len=128))
    assert round(1 - ag.state_floats / gt.state_floats, 3) == 0.825
    assert ag.macs_per_layer / gt.macs_per_layer < 0.05


def test_gtrxl_state_floats_equal_the_model_and_counts_are_ordered() -> None:
    for form in ("inputs", "kv"):
        cfg = paper_config("gtrxl", memory_form=form, memory_len=16)
        model = build_sequence_model(cfg, 10)
        assert model_cost(cfg).state_floats == model.state_floats_per_env()
    cfg = paper_config("gtrxl")
    coded, cached, ours = (
        model_cost(cfg, gtrxl_count=c).macs_per_layer for c in ("as_coded", "kv_cached", "implemented")
    )
    assert cached < ours < coded


def test_rnn_costs_need_the_input_size() -> None:
    cfg = paper_config("lstm")
    assert model_cost(cfg, input_dim=16).macs_per_layer == 4 * 600 * (16 + 600)
    assert model_cost(cfg, input_dim=16).state_floats == 1200
    assert model_cost(paper_config("gru"), input_dim=16).state_floats == 680
    with pytest.raises(ValueError, match="input_dim"):
        model_cost(cfg)

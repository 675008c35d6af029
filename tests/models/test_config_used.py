"""``ModelConfig.used()`` names every setting a model kind reads: any other field, changed, builds the same model.

Resumes and benchmark rows compare ``used()`` instead of the whole config, so a changed default of an AGaLiTe field
does not make a GRU run "another model". If a model started reading a field its kind's ``KIND_SETTINGS`` lacks, a
change of that field would slip through those checks; this test finds it (same seed, same weights and outputs).
"""

from __future__ import annotations

import typing
from dataclasses import fields

import numpy as np
import pytest
import torch
from gymnasium import spaces

from models.config import KIND_SETTINGS, ModelConfig
from models.registry import build_actor_critic, small_config

OBS = spaces.Box(0.0, 1.0, shape=(5,), dtype=np.float32)
ACT = spaces.Discrete(3)


def _other_value(name: str, value: object) -> object:
    """A valid value other than ``value`` for the field ``name``."""
    hint = typing.get_type_hints(ModelConfig)[name]
    if typing.get_origin(hint) is typing.Literal:
        return next(v for v in typing.get_args(hint) if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2
    if isinstance(value, float):
        return value + 1.0
    raise AssertionError(f"no alternative value for {name}={value!r}")


def _outputs(cfg: ModelConfig) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    ac = build_actor_critic(cfg, OBS, ACT)
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(6, 2, 5, generator=g)
    reset = torch.zeros(6, 2, dtype=torch.bool)
    reset[0] = True
    with torch.no_grad():
        params, value, _ = ac(obs, reset, ac.initial_state(2))
    return ac.state_dict(), params, value


@pytest.mark.parametrize("kind", sorted(KIND_SETTINGS))
def test_a_field_the_kind_does_not_read_leaves_its_model_unchanged(kind: str) -> None:
    base = small_config(kind)
    weights, params, value = _outputs(base)
    unused = [f.name for f in fields(ModelConfig) if f.name not in KIND_SETTINGS[kind]]
    assert unused, kind
    for name in unused:
        changed = ModelConfig.from_dict({**base.to_dict(), name: _other_value(name, getattr(base, name))})
        assert changed.used() == base.used(), name
        other_weights, other_params, other_value = _outputs(changed)
        assert other_weights.keys() == weights.keys(), name
        for key, tensor in weights.items():
            assert torch.equal(other_weights[key], tensor), (name, key)
        assert torch.equal(other_params, params) and torch.equal(other_value, value), name


def test_a_field_the_kind_reads_is_part_of_what_it_used() -> None:
    agalite = small_config("agalite")
    assert ModelConfig.from_dict({**agalite.to_dict(), "frequencies": "distinct"}).used() != agalite.used()
    assert set(KIND_SETTINGS["gru"]) < {f.name for f in fields(ModelConfig)}

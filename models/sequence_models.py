"""The sequence-model registry: model kind -> class, imported lazily.

Its own module so that ``models.actor_critic`` (which builds its core from a config) and ``models.registry``
(which builds actor-critics from gymnasium spaces) do not import each other.
"""

from __future__ import annotations

import importlib

from models.base import SequenceModel
from models.config import ModelConfig

#: kind -> (module, class). Imported lazily so one model's absence or import error does not break the others.
SEQUENCE_MODELS: dict[str, tuple[str, str]] = {
    "agalite": ("models.agalite", "AGaLiTe"),
    "galite": ("models.galite", "GaLiTe"),
    "gtrxl": ("models.gtrxl", "GTrXL"),
    "lstm": ("models.rnn", "LSTM"),
    "gru": ("models.rnn", "GRU"),
}


def check_kind(kind: str) -> None:
    """Refuse an unknown model kind with the list of known ones."""
    if kind not in SEQUENCE_MODELS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(SEQUENCE_MODELS)}")


def build_sequence_model(cfg: ModelConfig, input_dim: int) -> SequenceModel:
    """Instantiate the sequence model ``cfg.kind`` taking ``input_dim`` features per step."""
    check_kind(cfg.kind)
    module_name, class_name = SEQUENCE_MODELS[cfg.kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise NotImplementedError(f"model kind {cfg.kind!r} is not available: {module_name} is missing") from e
    return getattr(module, class_name)(int(input_dim), cfg)

"""One typed configuration for every model kind; the presets in ``configs/`` and the command line fill it in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

ModelKind = Literal["agalite", "galite", "gtrxl", "lstm", "gru"]
GaLiTeForm = Literal["auto", "pairwise", "scan"]


#: Settings added after checkpoints were first written, with the value that matches those older checkpoints.
LEGACY_DEFAULTS: dict[str, Any] = {"episode_start_input": False, "first_write": "gated"}


@dataclass
class ModelConfig:
    """Sizes default to the paper's (L4, d_model 128, 4 heads of 64, d_ffc 128, eta 4, r 2; GTrXL M 128)."""

    kind: ModelKind = "agalite"
    # transformer trunk (AGaLiTe, GaLiTe, GTrXL)
    num_layers: int = 4
    d_model: int = 128
    num_heads: int = 4
    d_head: int = 64
    d_ffc: int = 128
    gru_bias: float = 2.0
    # AGaLiTe / GaLiTe
    eta: int = 4
    r: int = 2
    frequencies: Literal["reference", "distinct"] = "reference"
    """reference: linspace(-pi, pi, r) as in the paper's code (r=2 is rank 1); distinct: r frequencies in [0, pi]."""
    first_write: Literal["gated", "full", "mixed"] = "gated"
    """AGaLiTe's write at an episode start. gated: as at every step, scaled by the write gates (the paper); full: the
    gates are 1 there, so the emptied state is filled with the first step, which then fades at each memory's own
    decay; mixed: full in the first half of each layer's heads (rounded up), gated in the rest (docs/models.md, "The
    first write")."""
    reset_counter: bool = True
    """Restart AGaLiTe's time counter at each episode start; False keeps the reference's never-reset counter."""
    galite_variant: Literal["paper", "code"] = "paper"
    feature_map: Literal["pp_relu", "elu1", "relu", "dpfp"] = "pp_relu"
    gating: Literal["vector", "scalar", "none"] = "vector"
    memory_init: Literal["chrono", "default"] = "chrono"
    """Initial biases of the gates that decide how long memories last (GRU update / LSTM forget gates, AGaLiTe and
    GaLiTe decay gates). chrono: each unit's initial time constant is drawn from U(1, memory_horizon), so the
    gradient of a late loss still reaches inputs that many steps back when training starts (docs/models.md,
    "Memory initialisation"); default: zero biases (PyTorch's uniform for GRU/LSTM), as in the paper."""
    memory_horizon: int = 64
    """Longest initial time constant of the chrono initialisation, in steps."""
    agalite_scan: Literal["chunked", "doubling"] = "chunked"
    """AGaLiTe's training form: the two-level chunked scan, or the log-depth Hillis-Steele doubling scan
    (docs/models.md, "Training forms"); both equal the step loop."""
    galite_form: GaLiTeForm = "auto"
    """GaLiTe's training form per chunk: pairwise decay-weighted attention, a materialised scan, or auto (pairwise
    where it applies and autograd runs, else the scan)."""
    # GTrXL
    memory_len: int = 128
    memory_form: Literal["inputs", "kv"] = "inputs"
    """inputs: the reference's memory of layer inputs (K/V recomputed every step); kv: a key/value cache."""
    # LSTM / GRU
    rnn_hidden: int = 256
    # observation encoder and heads
    encoder: Literal["auto", "flatten", "mlp", "cnn"] = "auto"
    """auto: flatten vector observations, Nature-CNN for images (H, W, C)."""
    encoder_hidden: int = 256
    head_hidden: int = 128
    episode_start_input: bool = True
    """Give the sequence model the reset flag as one more input feature: whether this observation is an episode's
    first. A state that starts at zero tells a recurrent cell this only indirectly, and an attention layer's
    input-driven gates not at all, yet "remember what came first" needs it: on POPGym RepeatFirst the small AGaLiTe
    learned nothing in 1M env steps without it (docs/learning.md). The paper presets turn it off."""
    normalize_obs: bool = True
    """Standardise vector observations with running statistics kept inside the model (and so inside the exported
    graph); image observations too when ``normalize_images`` is set."""
    normalize_images: bool = False
    """With ``normalize_obs``: standardise image observations per pixel and channel as well (the CNN then takes
    them as they come); without it the CNN only scales uint8 pixels to [0, 1]."""
    normalize_value: bool = True
    """The value head predicts standardised returns; running return statistics inside the model map it back, so
    the value output is in reward units while the value loss stays O(1) whatever the reward scale."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def used(self) -> dict[str, Any]:
        """The settings this config's model kind reads (``KIND_SETTINGS``): two configs that agree here build the same
        model. A GRU's config still carries AGaLiTe's fields, and a changed default among those must not make a GRU
        run "another model" (resume) or another experiment (benchmark rows)."""
        return {k: v for k, v in asdict(self).items() if k in KIND_SETTINGS[self.kind]}

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> ModelConfig:
        """A config saved with a checkpoint: settings added since it was written take the value that reproduces the
        model it saved, not today's default."""
        return cls.from_dict({**LEGACY_DEFAULTS, **data})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


_HEADS = {
    "kind", "encoder", "encoder_hidden", "head_hidden", "episode_start_input",
    "normalize_obs", "normalize_images", "normalize_value",
}  # fmt: skip
_TRUNK = {"num_layers", "d_model", "num_heads", "d_head", "gru_bias"}
_MEMORY_GATES = {"memory_init", "memory_horizon"}
_LINEAR_ATTENTION = _TRUNK | _MEMORY_GATES | {"d_ffc", "eta", "feature_map", "gating"}
_RNN = _HEADS | _MEMORY_GATES | {"rnn_hidden"}
#: The ModelConfig fields each model kind reads (tests/models/test_config_used.py checks that every other field leaves
#: the model unchanged).
KIND_SETTINGS: dict[str, frozenset[str]] = {
    "agalite": frozenset(
        _HEADS | _LINEAR_ATTENTION | {"r", "frequencies", "first_write", "reset_counter", "agalite_scan"}
    ),
    "galite": frozenset(_HEADS | _LINEAR_ATTENTION | {"galite_variant", "galite_form"}),
    "gtrxl": frozenset(_HEADS | _TRUNK | {"memory_len", "memory_form"}),
    "lstm": frozenset(_RNN),
    "gru": frozenset(_RNN),
}

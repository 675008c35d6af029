"""The run's typed configuration: one dataclass tree, filled from a preset in ``configs/`` and the command line.

Presets are TOML files (``configs/<name>.toml``) holding only the values that differ from the defaults below, so
a preset reads as "what the paper changed". The resolved config is saved as ``config.json`` in the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from envs.kwargs import parse_env_kwargs
from models.config import ModelConfig
from policy.files import write_atomically
from protocol import DEFAULT_CONTROL_PORT, DEFAULT_POLICY_PORT, DEFAULT_TRAJECTORY_PORT

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_PRESET = "tmaze-agalite"


@dataclass
class EnvConfig:
    """The env the actors step and the learner sizes its model for."""

    # Kwargs belong to one env: none by default (the env's own defaults), a preset sets them next to its id, and
    # learner.cli drops the preset's kwargs when --env.id names another env and --env.kwargs is not given, so
    # `--env.id CartPole-v1` alone works from any preset.
    id: str = "agalite/TMaze-v0"
    """Gymnasium id; the module-import form ``some.module:EnvId`` works too."""
    kwargs: str = "{}"
    """Env keyword arguments, a JSON object. With another --env.id and no --env.kwargs: none (the env's defaults)."""

    def kwargs_dict(self) -> dict[str, Any]:
        return parse_env_kwargs(self.kwargs, "env.kwargs")


# Constant Adam step sizes for a preset without the KL-adaptive rate, when its own model or task is left
# (docs/learning.md): at the same rate the attention models move their policy ~5x further per step than the
# recurrent ones (at 1e-3 the answer froze before the memory formed), so they take a lower one.
DEFAULT_LR: dict[str, float] = {"lstm": 1e-3, "gru": 1e-3, "agalite": 3e-4, "galite": 3e-4, "gtrxl": 3e-4}


#: The entropy bonus's weight a model kind takes when a run leaves the preset's kind without ``--ppo.ent-coef``: the
#: preset's value was measured for its own kind. The AGaLiTe's 0.03 (the default preset's since 2026-12-04) ended
#: MiniGrid Memory S7's stall (8 of 8 seeds reached 0.9 against 2 of 5 at 0.01) and cost 1.3-1.5x the env steps on
#: T-Maze 50 and 100, where a larger bonus holds a policy that no reward has reached yet at uniform for longer
#: (docs/learning.md, "A larger entropy bonus"). The other kinds keep the 0.01 they were measured with.
DEFAULT_ENT_COEF: dict[str, float] = {"agalite": 0.03, "galite": 0.01, "gtrxl": 0.01, "gru": 0.01, "lstm": 0.01}


#: Model kinds that train without the value head's output preservation unless ``--ppo.preserve-values`` asks for it
#: (docs/learning.md, "Preservation variants"). Measured on the GRU-128, it gave nothing on T-Maze 100 (668k against
#: 702k env steps to 0.9) and cost 1.6x on delayed recall D = 40 and on POPGym RepeatPrevious Easy (733k against
#: 459k, past Sample Factory's 488k), where for the AGaLiTe it turned T-Maze 100 (264k against 1,556k). The LSTM,
#: the other recurrent kind, follows the GRU unmeasured.
PRESERVE_VALUES_OFF_FOR: frozenset[str] = frozenset({"gru", "lstm"})


#: PPO settings added after runs were saved, with the value that reproduces how those runs trained: a run directory
#: or a stored result written before a setting existed reads as this value, not as today's default.
PPO_LEGACY_DEFAULTS: dict[str, Any] = {
    "preserve_values": False,
    "preserve_values_loss_power": 0.0,
    "lr_kl_rise": "minibatch",
    "lr_kl_reading": "policy",
    "update_kl_limit": None,
    "update_kl_max_limit": None,
}


def ppo_from_saved(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved PPO section with the settings added since it was written filled in as those runs trained."""
    return {**PPO_LEGACY_DEFAULTS, **saved}


@dataclass
class PPOConfig:
    """Recurrent PPO; ``epochs=1, minibatches=1`` is A2C (the paper's T-Maze runs)."""

    lr: float = 2.5e-4
    """Adam learning rate (the start value when annealed)."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over total_steps."""
    adam_eps: float = 1e-5
    """Adam's epsilon (CleanRL's 1e-5 rather than torch's 1e-8)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE's lambda (1: Monte-Carlo returns, 0: one-step TD)."""
    epochs: int = 3
    """Passes over each batch per update."""
    minibatches: int = 4
    """Minibatches of whole env sequences per epoch."""
    clip_coef: float = 0.2
    """PPO's ratio clipping range (and the value clipping range with clip_vloss)."""
    clip_vloss: bool = False
    """Clip the value loss around the values computed before the update."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    adv_std_floor: float = 0.1
    """With norm_adv, advantages are divided by max(their std, this x the running std of the returns) (x 1 without
    value normalisation): once a task is solved the advantages are only value-error noise, and dividing by their
    own tiny std turned that noise into full-size updates that wiped a learned memory (docs/learning.md)."""
    preserve_values: bool = True
    """With value normalisation, rescale the value head's last layer whenever the return statistics move, so that no
    state's value changes with them (PopArt's output preservation). Without it, states missing from recent batches
    keep values fitted under old statistics: on T-Maze 100 the values became uneven where the walks thin out and runs
    learned to stay near the start (the AGaLiTe: 1,556k env steps to 0.9 without it, 264k with it; docs/learning.md).
    The recurrent kinds (PRESERVE_VALUES_OFF_FOR) leave it off unless a flag turns it on: it cost the GRU on short
    tasks and gave it nothing on T-Maze 100."""
    preserve_values_loss_power: float = 0.0
    """With preserve_values (refused without it), weight the value loss by the returns' running std to this power
    (0: no weight; 2: the loss in the returns' own units). The preservation scales the value head's last layer by
    1 / that std (the statistics start at std 1), so where rewards are bounded (std 0.05-0.3) the head grows 3-18x,
    and with it the value fit's pull on its own output through the shared core: on delayed recall D = 40 the GRU
    then took 1.5x the env steps, with power 1 or 2 as many as without the preservation, and T-Maze 100 kept the
    arrival the preservation buys. Off by default: on RepeatPrevious Easy it recovered only part of the cost
    (docs/learning.md, "Why the preservation costs")."""
    ent_coef: float = 0.001
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Gradients are clipped to this global norm."""
    target_kl: float | None = None
    """Stop the epochs of an update early when the approximate KL exceeds this."""
    lr_kl_target: float | None = None
    """Adapt the learning rate to the policy's movement: after every minibatch it is divided by 1.5 when the
    approximate KL exceeds 2x this and multiplied by 1.5 when it is below half of it (or once per update:
    ``lr_kl_rise``), within [lr_min, lr_max];
    None keeps ``lr`` (or its annealing). The adapted rate is saved with the optimiser and resumed."""
    lr_kl_rise: Literal["minibatch", "update"] = "minibatch"
    """When the KL-adapted rate may rise. minibatch: after any minibatch whose KL is below half the target (x1.5, up
    to 25x over an update of eight); update: at most once per update, after one whose every KL reading was below half
    the target, while it still falls after any minibatch above twice the target. Why the second: the readings are
    taken before each step, so the last step of an update is never read, and a rate that climbs within an update
    takes its largest unread step last (docs/learning.md, "MiniGrid Memory S7 at today's defaults")."""
    lr_kl_reading: Literal["policy", "logits"] = "policy"
    """What the KL-adapted rate reads after each minibatch. policy: the KL of the acting policy from the current one
    on the actions taken. logits: the larger of that and the KL the logits' change since the update began would make
    to a uniform policy over the same actions (discrete actions only; the same reading for Gaussian ones). Why the
    second: a near-deterministic softmax hides how far its logits move (the KL shrinks with p (1 - p)), so the first
    reads ~0 whatever the step and the rate climbs to its ceiling, where solved runs drifted until a rare decision
    flipped. Near a uniform policy both read alike. Measured: no cost and no steadier; on solved runs the logits
    hardly move either (docs/learning.md, "The logits' movement as the rate's reading")."""
    update_kl_limit: float | None = None
    """Bound the policy's movement over a whole update: after the update's last step, the KL from the learner's
    policy before the update to the one after it is computed exactly on the batch; above this limit the update's
    weight change is halved (up to four times, then undone) until it is within, and the KL-adapted rate is scaled by
    the same factor. Why: the per-minibatch readings are taken before each step, so the step that moves a
    near-deterministic policy far is read only on the next batch, after the actors have played it (docs/learning.md,
    "A bound on the update's KL"). Costs one forward pass over the batch per update; None: off."""
    update_kl_max_limit: float | None = None
    """Like ``update_kl_limit``, on the largest KL at any one (t, env) of the batch instead of the mean: a decision
    taken at one step in fifty can flip (a per-step KL of 1-6) while the mean stays near 0.005, and that is how solved
    T-Maze runs fell (docs/learning.md, "A bound on the update's KL"). Either limit, or both, may be set; the update
    is shrunk until both hold. None: off."""
    lr_min: float = 1e-5
    """Lower bound of the KL-adapted learning rate."""
    lr_max: float | None = None
    """Upper bound of the KL-adapted learning rate; None: ``lr`` itself, so the rate is only lowered while the policy
    moves too far and restored after. A higher bound lets a solved, near-deterministic policy (KL ~0 whatever the
    step) drift at the bound until it breaks: an AGaLiTe T-Maze run at 3e-3 fell from 1.0 to 0.0 (docs/learning.md)."""

    @property
    def bounds_update(self) -> bool:
        """Whether an update's KL is read after its last step and bounded (either update limit set)."""
        return self.update_kl_limit is not None or self.update_kl_max_limit is not None

    @property
    def lr_ceiling(self) -> float:
        """The bound the KL-adapted rate never exceeds: ``lr_max``, or ``lr`` when that is None."""
        return self.lr if self.lr_max is None else self.lr_max


@dataclass
class NetConfig:
    host: str = "127.0.0.1"
    """Learner: the address to bind (0.0.0.0 for every interface). Actor: the learner's address."""
    trajectory_port: int = DEFAULT_TRAJECTORY_PORT
    """Segments from the actors (PULL)."""
    policy_port: int = DEFAULT_POLICY_PORT
    """New weights to the actors (PUB)."""
    control_port: int = DEFAULT_CONTROL_PORT
    """Hello, Heartbeat, ... (ROUTER)."""
    curve_dir: str | None = None
    """Directory with CurveZMQ keys (server.key_secret, authorized_clients/); None: no authentication."""


@dataclass
class RunConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    """The environment every actor runs."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The sequence model and its sizes."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO settings."""
    net: NetConfig = field(default_factory=NetConfig)
    """The learner's sockets."""
    run_dir: str = "runs/tmaze-agalite"
    """Where config, checkpoints, metrics and the exported policy go; an existing run is resumed."""
    total_steps: int = 300_000
    """Environment steps (summed over all actors) after which training stops."""
    segment_length: int = 64
    """T: steps per trajectory segment, also the truncated-BPTT length. When not given on the command line it is
    raised to cover the env's declared memory horizon (a power of two, at most 128; docs/learning.md): a cue further
    back than T steps reaches the loss only through the stored state."""
    envs_per_actor: int = 8
    """Envs an actor steps in lockstep when it does not choose its own --num-envs."""
    batch_envs: int = 16
    """Env sequences (segment rows) per PPO update; segments are gathered until at least this many arrived."""
    max_policy_lag: int = 4
    """Segments produced by a policy older than this many versions are dropped."""
    seed: int = 1
    """Seed of the model initialisation and PPO; actors derive theirs from it and their actor id."""
    device: str = "auto"
    """auto: CUDA when available, else CPU; or an explicit torch device such as cpu, cuda, cuda:1."""
    learner_ranks: int = 1
    """Learner processes training together (torch.distributed data parallel; each takes a share of every
    minibatch). learner.launch starts them through torchrun; under torchrun directly, WORLD_SIZE decides."""
    torch_threads: int = 1
    """The learner's torch intra-op threads."""
    checkpoint_interval_s: float = 60.0
    """Seconds between checkpoints (one is also written at the end)."""
    heartbeat_interval_s: float = 1.0
    """How often actors send a Heartbeat (told to them in Welcome)."""
    actor_timeout_s: float = 10.0
    """An actor silent this long is counted as gone."""
    learner_timeout_s: float = 10.0
    """An actor that hears nothing from the learner this long says Hello again (sent to actors in Welcome)."""
    weights_only_updates: bool = True
    """Publish new weights for the exported graph instead of a full ONNX file after each update."""
    log_interval_s: float = 5.0
    """Seconds between progress lines (without a terminal) and steps/s measurements."""
    max_envs_per_segment: int = 1024
    """Largest env count B a segment may carry (bounds what one received message may allocate)."""
    max_queue_segments: int = 0
    """Bound on decoded segments waiting for the learner; beyond it actors block (backpressure). 0: one batch
    worth (ceil(batch_envs / envs_per_actor)); deeper queues only make the data older (policy lag)."""
    num_actors: int = 2
    """Actor processes the local launcher (``make train``) starts; ignored by a bare learner."""
    allow_config_change: bool = False
    """Resume even though the environment, spaces or training settings differ from the checkpoint's (the old
    config.json is kept beside the new one)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def queue_bound(self) -> int:
        if self.max_queue_segments > 0:
            return self.max_queue_segments
        return max(1, -(-self.batch_envs // max(1, self.envs_per_actor)))


#: The longest segment chosen for an env's memory horizon: 16 rows x 128 steps per update already; a memory reaching
#: further back gets to the loss through the stored state, or through --segment-length.
MAX_HORIZON_SEGMENT = 128


def segment_length_for(memory_horizon: int | None, configured: int) -> int:
    """The segment length a run uses: ``configured``, raised to hold the env's whole memory horizon.

    Truncated BPTT cannot teach a model to keep what no segment shows together with the step that needs it (at a
    horizon of 42 with 32-step segments the AGaLiTe never learned; with 64 it did, docs/learning.md). The horizon is
    rounded up to a power of two and capped at :data:`MAX_HORIZON_SEGMENT`; shorter horizons keep ``configured``.
    """
    if memory_horizon is None or memory_horizon <= configured:
        return configured
    covering = 1 << (memory_horizon - 1).bit_length()
    return max(configured, min(MAX_HORIZON_SEGMENT, covering))


def config_problems(cfg: RunConfig) -> list[str]:
    """What makes ``cfg`` unusable or self-contradictory, one sentence each (empty: fine). Checked before anything
    starts, so that a mistake is a message naming the flags instead of a silent clamp or a failure minutes later."""
    p = cfg.ppo
    problems = [
        f"{name} must be >= {low}, got {value}"
        for name, value, low in (
            ("total_steps", cfg.total_steps, 1),
            ("segment_length", cfg.segment_length, 1),
            ("envs_per_actor", cfg.envs_per_actor, 1),
            ("batch_envs", cfg.batch_envs, 1),
            ("max_policy_lag", cfg.max_policy_lag, 0),
            ("max_queue_segments", cfg.max_queue_segments, 0),
            ("ppo.epochs", p.epochs, 1),
            ("ppo.minibatches", p.minibatches, 1),
            ("ppo.preserve_values_loss_power", p.preserve_values_loss_power, 0),
            ("torch_threads", cfg.torch_threads, 1),
            ("learner_ranks", cfg.learner_ranks, 1),
        )
        if value < low
    ]
    problems += [
        f"{name} must be > 0, got {value}"
        for name, value in (
            ("ppo.lr", p.lr),
            ("ppo.clip_coef", p.clip_coef),
            ("ppo.max_grad_norm", p.max_grad_norm),
            ("heartbeat_interval_s", cfg.heartbeat_interval_s),
            ("checkpoint_interval_s", cfg.checkpoint_interval_s),
            ("log_interval_s", cfg.log_interval_s),
        )
        if not value > 0
    ]
    if not 0 < p.gamma <= 1:
        problems.append(f"ppo.gamma must be in (0, 1], got {p.gamma}")
    if not 0 <= p.gae_lambda <= 1:
        problems.append(f"ppo.gae_lambda must be in [0, 1], got {p.gae_lambda}")
    if p.lr_kl_target is not None:
        if not p.lr_kl_target > 0:
            problems.append(f"ppo.lr_kl_target must be > 0, got {p.lr_kl_target}")
        if not 0 < p.lr_min <= p.lr_ceiling:
            problems.append(
                "with ppo.lr_kl_target, need 0 < ppo.lr_min <= ppo.lr_max (None: ppo.lr), "
                f"got {p.lr_min}, {p.lr_ceiling}"
            )
        if p.anneal_lr:
            problems.append("ppo.anneal_lr and ppo.lr_kl_target both set the learning rate: choose one")
    for name in ("update_kl_limit", "update_kl_max_limit"):
        limit = getattr(p, name)
        if limit is not None and not limit > 0:
            problems.append(f"ppo.{name} must be > 0 (or None: off), got {limit}")
    if p.preserve_values_loss_power and not p.preserve_values:
        problems.append(
            f"ppo.preserve_values_loss_power ({p.preserve_values_loss_power}) weights the value loss only under the "
            "output preservation, which is off (the GRU's and LSTM's default): add --ppo.preserve-values"
        )
    if p.minibatches > cfg.batch_envs:
        problems.append(
            f"ppo.minibatches ({p.minibatches}) exceeds batch_envs ({cfg.batch_envs}): minibatches split a batch's "
            "env sequences, so some would be empty; lower --ppo.minibatches or raise --batch-envs"
        )
    if cfg.learner_ranks > 1 and cfg.batch_envs // max(1, p.minibatches) < cfg.learner_ranks:
        problems.append(
            f"batch_envs ({cfg.batch_envs}) / ppo.minibatches ({p.minibatches}) gives fewer env rows per minibatch "
            f"than learner_ranks ({cfg.learner_ranks}): every rank needs at least one; raise --batch-envs or lower "
            "--ppo.minibatches or --learner-ranks"
        )
    if cfg.envs_per_actor > cfg.max_envs_per_segment:
        problems.append(
            f"envs_per_actor ({cfg.envs_per_actor}) exceeds max_envs_per_segment ({cfg.max_envs_per_segment}): "
            "the learner would refuse every segment"
        )
    for name, timeout in (("actor_timeout_s", cfg.actor_timeout_s), ("learner_timeout_s", cfg.learner_timeout_s)):
        if timeout <= cfg.heartbeat_interval_s:
            problems.append(
                f"{name} ({timeout}) must exceed heartbeat_interval_s ({cfg.heartbeat_interval_s}): a peer would be "
                "given up between two heartbeats"
            )
    ports = {"trajectory": cfg.net.trajectory_port, "policy": cfg.net.policy_port, "control": cfg.net.control_port}
    bound = [v for v in ports.values() if v != 0]  # 0: any free port
    if len(set(bound)) != len(bound):
        problems.append(f"net ports must differ, got {ports}")
    return problems


def check_config(cfg: RunConfig) -> None:
    """Raise ``ValueError`` listing every problem of :func:`config_problems`."""
    problems = config_problems(cfg)
    if problems:
        raise ValueError("; ".join(problems))


_SECTIONS: dict[str, type] = {"env": EnvConfig, "model": ModelConfig, "ppo": PPOConfig, "net": NetConfig}


def _fill(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build a dataclass from a nested dict, refusing unknown keys so a typo in a preset is an error."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in {where}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        sub = _SECTIONS.get(name) if cls is RunConfig else None
        if sub is not None:
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{name} must be a table, got {value!r}")
            values[name] = _fill(sub, value, f"{where}.{name}")
        elif name == "kwargs" and isinstance(value, dict):
            values[name] = json.dumps(value)
        else:
            values[name] = value
    return cls(**values)


def config_from_dict(data: dict[str, Any], where: str = "config") -> RunConfig:
    return _fill(RunConfig, data, where)


def available_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_preset(name: str) -> RunConfig:
    path = CONFIG_DIR / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"no preset {name!r}; available: {', '.join(available_presets())}")
    with path.open("rb") as f:
        return config_from_dict(tomllib.load(f), where=f"configs/{name}.toml")


def save_config(cfg: RunConfig, path: Path) -> None:
    write_atomically(path, json.dumps(cfg.to_dict(), indent=2, sort_keys=True))


def load_config(path: Path) -> RunConfig:
    return config_from_dict(json.loads(path.read_text()), where=str(path))

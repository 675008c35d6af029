"""Command-line parsing shared by ``python -m learner`` and the local launcher: a preset, then overrides."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

import gymnasium
import tyro

from envs import EnvInfo, EnvSetupError, check_env
from learner.config import (
    DEFAULT_ENT_COEF,
    DEFAULT_LR,
    DEFAULT_PRESET,
    PRESERVE_VALUES_OFF_FOR,
    RunConfig,
    available_presets,
    check_config,
    load_preset,
    segment_length_for,
)
from models.encoders import resolve_encoder_kind

log = logging.getLogger("learner")


def parse_config(argv: list[str] | None, description: str) -> RunConfig:
    """``--preset NAME`` picks a file in configs/ (default: tmaze-agalite); every other flag overrides it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=os.environ.get("AGALITE_PRESET", DEFAULT_PRESET))
    known, rest = pre.parse_known_args(argv)
    try:
        base = load_preset(known.preset)
    except ValueError as err:
        usage_error(str(err))  # a command-line mistake like any other: exit status 2
    text = (
        f"{description}\n\n"
        f"--preset NAME  start from configs/NAME.toml (default: {DEFAULT_PRESET}; now: {known.preset}); "
        f"available: {', '.join(available_presets())}. The flags below override the preset; the defaults shown "
        "are the preset's."
    )
    cfg = tyro.cli(RunConfig, default=base, args=rest, description=text)
    if cfg.env.id != base.env.id:
        if not _given(rest, "--env.kwargs"):
            # The preset's kwargs belong to the preset's env (corridor_length to the T-Maze): another env starts
            # from its own defaults unless --env.kwargs says otherwise.
            cfg.env.kwargs = "{}"
        if not _given(rest, "--run-dir") and cfg.run_dir == base.run_dir:
            # Nor does the preset's run directory: resuming the preset's run with another env cannot work.
            cfg.run_dir = str(Path(base.run_dir).parent / re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.env.id))
    left_the_preset = cfg.model.kind != base.model.kind or cfg.env.id != base.env.id
    if left_the_preset and not _given(rest, "--ppo.lr") and cfg.ppo.lr_kl_target is None:
        # Likewise a constant learning rate was tuned for the preset's own model and task: another model kind or
        # another env takes the model kind's default. An adapted rate needs no such change (its KL target does the
        # per-model part; the preset's lr is only its ceiling).
        cfg.ppo.lr = DEFAULT_LR[cfg.model.kind]
    # the entropy bonus too was measured for the preset's own kind; another kind takes its own (DEFAULT_ENT_COEF)
    ent_rule = cfg.model.kind != base.model.kind and not _given(rest, "--ppo.ent-coef")
    ent_rule = ent_rule and cfg.ppo.ent_coef != DEFAULT_ENT_COEF[cfg.model.kind]
    if ent_rule:
        cfg.ppo.ent_coef = DEFAULT_ENT_COEF[cfg.model.kind]
    # measured per kind, like the learning rate: the value preservation pays for the AGaLiTe and costs the GRU
    explicit = any(_given(rest, f) for f in ("--ppo.preserve-values", "--ppo.no-preserve-values"))
    kind_rule = cfg.model.kind in PRESERVE_VALUES_OFF_FOR and cfg.ppo.preserve_values and not explicit
    if kind_rule:
        cfg.ppo.preserve_values = False
    info = check_env_config(cfg)
    setup_logging()  # here, not in the commands: the segment length chosen below is logged
    if ent_rule:
        log.info(
            "entropy coefficient %g for the %s (its default; the preset's %g is the %s's); --ppo.ent-coef sets it",
            cfg.ppo.ent_coef,
            cfg.model.kind,
            base.ppo.ent_coef,
            base.model.kind,
        )
    if kind_rule:
        log.info("value preservation off for the %s (its default); --ppo.preserve-values turns it on", cfg.model.kind)
    fit_segment_to_memory(cfg, info.memory_horizon, typed=_given(rest, "--segment-length"))
    images = encoder_takes_images(cfg, info)
    if images and cfg.env.id != base.env.id:
        one_pass_for_images(cfg, typed=any(_given(rest, f) for f in ("--ppo.epochs", "--ppo.minibatches")))
    try:
        check_config(cfg)
    except ValueError as err:
        usage_error(str(err))
    return cfg


def _given(args: list[str], flag: str) -> bool:
    """Whether ``flag`` is on the command line, as ``FLAG VALUE`` or ``FLAG=VALUE`` (tyro takes no abbreviations)."""
    return any(a == flag or a.startswith(flag + "=") for a in args)


def usage_error(message: str) -> NoReturn:
    """One line on stderr and exit status 2, as for any other command-line mistake; no traceback."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def check_env_config(cfg: RunConfig) -> EnvInfo:
    """Build the env once and check its kwargs and spaces, so a mistake is one line before any process starts."""
    try:
        kwargs = cfg.env.kwargs_dict()
    except ValueError as err:
        usage_error(str(err))
    try:
        return check_env(cfg.env.id, kwargs)
    except EnvSetupError as err:
        usage_error(str(err))


def encoder_takes_images(cfg: RunConfig, info: EnvInfo) -> bool:
    """Whether the encoder ``cfg.model.encoder`` resolves to for this env's observations is the CNN; an encoder that
    cannot take them (``auto`` on a 2-D array) is a command-line mistake, said in one line before any process starts."""
    space = info.observation_space
    if not isinstance(space, gymnasium.spaces.Box):
        return False
    try:
        return resolve_encoder_kind(cfg.model.encoder, space.shape) == "cnn"
    except ValueError as err:
        usage_error(str(err))


def one_pass_for_images(cfg: RunConfig, *, typed: bool) -> None:
    """Image observations take one gradient pass over each batch (one epoch, one minibatch; Sample Factory's
    default) unless ``--ppo.epochs`` or ``--ppo.minibatches`` is given, saying so.

    A pass through the CNN costs far more than one through a vector encoder, and on a CPU learner it bounds the whole
    stack: on MiniGrid Memory S7 seen as pixels the default preset's two epochs of four minibatches stepped 0.9x
    Sample Factory's env steps/s, one pass 1.2x (medians of three pairs of runs), and one pass learned that task no
    worse (docs/learning.md). Only where the env is not the preset's own: a preset for an image task states its
    own passes."""
    if typed:
        return
    if (cfg.ppo.epochs, cfg.ppo.minibatches) != (1, 1):
        log.info(
            "one gradient pass per batch for image observations (the preset's %d epochs x %d minibatches; a pass "
            "through the CNN is the learner's main cost); --ppo.epochs / --ppo.minibatches set it",
            cfg.ppo.epochs,
            cfg.ppo.minibatches,
        )
        cfg.ppo.epochs, cfg.ppo.minibatches = 1, 1


def fit_segment_to_memory(cfg: RunConfig, memory_horizon: int | None, *, typed: bool) -> None:
    """Raise the preset's segment length to the env's memory horizon (``segment_length_for``), saying so.

    A length the user ``typed`` (``--segment-length``) is kept as typed, with a warning when it is shorter.
    """
    chosen = cfg.segment_length if typed else segment_length_for(memory_horizon, cfg.segment_length)
    if chosen != cfg.segment_length:
        log.info(
            "segment length %d (the preset's %d is shorter than the env's memory horizon, %d steps); "
            "--segment-length N sets it",
            chosen,
            cfg.segment_length,
            memory_horizon,
        )
        cfg.segment_length = chosen
    if memory_horizon is not None and memory_horizon > cfg.segment_length:
        log.warning(
            "the env's memory reaches %d steps back, further than a segment (%d): the loss reaches that far only "
            "through the stored state; --segment-length N trains on longer segments",
            memory_horizon,
            cfg.segment_length,
        )


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("AGALITE_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )

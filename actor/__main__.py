"""``python -m actor``: one actor process. Every flag has an environment variable twin (AGALITE_<FLAG>), which
is how the compose file configures actors."""

from __future__ import annotations

import logging
import os
import sys

import tyro

from actor.client import Actor, ActorConfig

_ENV_PREFIX = "AGALITE_"


def _defaults_from_environment() -> ActorConfig:
    """Environment variables (e.g. AGALITE_LEARNER_HOST=learner) give the defaults; flags still override."""
    cfg = ActorConfig()
    for name, value in vars(cfg).items():
        raw = os.environ.get(_ENV_PREFIX + name.upper())
        if raw is None or raw == "":
            continue
        if isinstance(value, bool):
            setattr(cfg, name, raw.lower() in ("1", "true", "yes"))
        elif isinstance(value, int) or name in ("num_envs", "seed", "max_segments"):
            setattr(cfg, name, int(raw))
        elif isinstance(value, float):
            setattr(cfg, name, float(raw))
        else:
            setattr(cfg, name, raw)
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = tyro.cli(
        ActorConfig,
        default=_defaults_from_environment(),
        args=argv,
        description="An actor: steps environments with the learner's ONNX policy and streams "
        "trajectory segments to it over ZeroMQ (no torch).",
    )
    logging.basicConfig(
        level=os.environ.get("AGALITE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )
    actor = Actor(cfg)
    actor.install_signal_handlers()
    return actor.run()


if __name__ == "__main__":
    sys.exit(main())

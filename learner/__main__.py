"""``python -m learner``: the learner alone (binds its sockets; actors connect from anywhere)."""

from __future__ import annotations

import sys

from learner.checkpoint import CheckpointError
from learner.cli import parse_config, setup_logging
from learner.resume_check import ResumeConfigError
from learner.train import Learner


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(
        argv,
        "The learner: receives trajectory segments from actors, trains with recurrent PPO "
        "and publishes ONNX policies. Actors join with `python -m actor --learner-host HOST`.",
    )
    setup_logging()
    learner = Learner(cfg)
    try:
        learner.setup()  # resumes from the run directory and binds the sockets
    except (CheckpointError, ResumeConfigError) as err:
        learner.close()
        raise SystemExit(f"error: {err}") from None
    try:
        summary = learner.run()
    finally:
        learner.close()
    print(summary.text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

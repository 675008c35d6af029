"""``python -m learner``: the learner alone (binds its sockets; actors connect from anywhere).

Under ``torchrun --nproc-per-node N -m learner ...`` it is one of N learner ranks (``learner.distributed``): rank 0
binds the sockets and owns the run directory, the others train on their share of every batch.
"""

from __future__ import annotations

import sys

from protocol.stop_signal import StopSignal

# Before the imports below (torch takes seconds): a stop from then on is kept, not lost (protocol.stop_signal).
STOP = StopSignal()
if __name__ == "__main__":
    STOP.install()

from learner import distributed  # noqa: E402
from learner.checkpoint import CheckpointError  # noqa: E402
from learner.cli import parse_config  # noqa: E402
from learner.resume_check import ResumeConfigError  # noqa: E402
from learner.train import Learner, RankSetupFailed  # noqa: E402
from learner.trainer import resolve_device  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(
        argv,
        "The learner: receives trajectory segments from actors, trains with recurrent PPO "
        "and publishes ONNX policies. Actors join with `python -m actor --learner-host HOST`. "
        "Several learner ranks: `torchrun --nproc-per-node N -m learner ...`.",
    )
    try:
        ranks = distributed.rank_from_env()
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if cfg.learner_ranks > 1 and not ranks.distributed:
        raise SystemExit(
            f"error: --learner-ranks {cfg.learner_ranks} needs the ranks started together: use "
            f"`torchrun --nproc-per-node {cfg.learner_ranks} -m learner ...` or `python -m learner.launch`"
        )
    distributed.init(ranks, resolve_device(cfg.device))
    try:
        learner = Learner(cfg, ranks)
        if not ranks.is_main:
            try:
                learner.follow()
            except RankSetupFailed:
                return 1  # rank 0 printed the one-line reason
            return 0
        try:
            learner.setup()  # resumes from the run directory and binds the sockets
        except (CheckpointError, ResumeConfigError) as err:
            learner.close()
            raise SystemExit(f"error: {err}") from None
        try:
            summary = learner.run(STOP)
        finally:
            learner.close()
        print(summary.text(), flush=True)
        if learner.rank_failure is not None:
            print(f"error: a learner rank failed ({learner.rank_failure}); run again to resume", file=sys.stderr)
            return 1
        return 0
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())

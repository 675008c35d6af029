"""``python -m learner.torchrun``: torchrun (``torch.distributed.run``) for ``learner.launch --learner-ranks N``.

The same launcher with the same arguments, ending differently: when a rank fails, torchrun raises its
``ChildFailedError`` out of ``main`` and Python prints that error's traceback and a boxed report, although the rank
has already printed its own one-line reason (a run directory of another model, say). Here that becomes one line
naming the rank and its exit code, and exit status 1.
"""

from __future__ import annotations

import logging
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun


def main(argv: list[str] | None = None) -> int:
    # its "failed (exitcode: 1) local_rank: 0 ..." log line says what the line below says
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    try:
        torchrun(sys.argv[1:] if argv is None else argv)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        print(f"error: learner rank {rank} exited with code {failure.exitcode} (its reason is above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

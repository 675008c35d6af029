"""``make train``: the whole stack on one machine, the learner in this process and N actor processes.

Actors are started by command line, exactly as on another machine or in the compose file, never imported: the
actor side must stay torch-free and independent. Their logs go to ``<run_dir>/logs/`` so the console shows the
learner's progress. Ctrl-C stops everything and leaves a resumable checkpoint; run the same command to resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from protocol.stop_signal import StopSignal

# Before the imports below (torch takes seconds): Ctrl-C or SIGTERM from then on is a clean stop (protocol.stop_signal).
STOP = StopSignal()
if __name__ == "__main__":
    STOP.install()

from learner.checkpoint import CheckpointError  # noqa: E402
from learner.cli import parse_config  # noqa: E402
from learner.config import RunConfig  # noqa: E402
from learner.resume_check import ResumeConfigError  # noqa: E402
from learner.train import Learner  # noqa: E402


def actor_command(cfg: RunConfig, index: int) -> list[str]:
    host = "127.0.0.1" if cfg.net.host in ("0.0.0.0", "*", "") else cfg.net.host
    cmd = [
        sys.executable,
        "-m",
        "actor",
        "--learner-host",
        host,
        "--trajectory-port",
        str(cfg.net.trajectory_port),
        "--policy-port",
        str(cfg.net.policy_port),
        "--control-port",
        str(cfg.net.control_port),
        "--actor-id",
        f"local-{index}",
    ]
    if cfg.net.curve_dir:
        cmd += ["--curve-dir", cfg.net.curve_dir]
    return cmd


def start_actors(cfg: RunConfig, log_dir: Path) -> list[subprocess.Popen]:
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(cfg.num_actors):
        log_file = (log_dir / f"actor-{i}.log").open("ab")
        procs.append(subprocess.Popen(actor_command(cfg, i), stdout=log_file, stderr=subprocess.STDOUT))
        log_file.close()
    return procs


def stop_actors(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def learner_ranks_command(argv: list[str], ranks: int) -> list[str]:
    """The learner as ``ranks`` processes on this machine: torchrun (``learner.torchrun``, which ends a rank's
    failure in one line) starts them and stops them all when one fails; ``--standalone`` picks a free rendezvous
    port."""
    return [
        sys.executable, "-m", "learner.torchrun", "--standalone", "--nproc-per-node", str(ranks),
        "-m", "learner", *argv,
    ]  # fmt: skip


def run_learner_ranks(cfg: RunConfig, argv: list[str]) -> int:
    """``--learner-ranks N``: actors here, the N learner ranks under torchrun; Ctrl-C or SIGTERM stops the ranks
    (rank 0 checkpoints and exports), then the actors."""
    print(
        f"run directory {cfg.run_dir}; {cfg.learner_ranks} learner ranks; {cfg.num_actors} actors x "
        f"{cfg.envs_per_actor} envs on {cfg.env.id}; model {cfg.model.kind}; actor logs in "
        f"{Path(cfg.run_dir) / 'logs'}",
        flush=True,
    )
    # torchrun sets OMP_NUM_THREADS=1 for its ranks and prints a banner about it unless it is set; each rank sets
    # its own thread count (--torch-threads) anyway
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(cfg.torch_threads))}
    ranks = subprocess.Popen(learner_ranks_command(argv, cfg.learner_ranks), env=env)
    procs = start_actors(cfg, Path(cfg.run_dir) / "logs")

    def forward(signum: int, frame: object) -> None:
        if ranks.poll() is None:
            ranks.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return ranks.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if ranks.poll() is None:
            ranks.terminate()
            ranks.wait()
        stop_actors(procs)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_config(
        argv,
        "Train locally: one learner plus --num-actors actor processes on this machine "
        "(the default: AGaLiTe on a short T-Maze). An existing --run-dir is resumed.",
    )
    if cfg.learner_ranks > 1:
        if STOP.is_set():
            print(f"{STOP.received} before the learner ranks started: nothing to stop", flush=True)
            return 0
        STOP.restore()  # from here on the launcher forwards stops to torchrun
        return run_learner_ranks(cfg, argv)
    learner = Learner(cfg)
    try:
        learner.setup()  # resumes from the run directory and binds the sockets
    except (CheckpointError, ResumeConfigError) as err:
        learner.close()
        raise SystemExit(f"error: {err}") from None
    print(
        f"run directory {cfg.run_dir}: {'resuming' if learner.resumed else 'new run'}; "
        f"{cfg.num_actors} actors x {cfg.envs_per_actor} envs on {cfg.env.id}; model {cfg.model.kind} "
        f"on {learner.device}; actor logs in {Path(cfg.run_dir) / 'logs'}",
        flush=True,
    )
    procs = [] if STOP.is_set() else start_actors(cfg, Path(cfg.run_dir) / "logs")
    try:
        summary = learner.run(STOP)
    finally:
        stop_actors(procs)
        learner.close()
    print(summary.text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The learner's run loop: receive segments, update, publish, log, checkpoint.

The parts: ``learner.trainer.Trainer`` (model, optimiser, counters, the state a checkpoint holds),
``learner.publisher.PolicyPublisher`` (the graph exported once, then weights), ``learner.server.LearnerServer``
(sockets and flow control). ``Learner`` wires them to a run directory: constructing one has no side effects (no
files written, no sockets bound, nothing exported); :meth:`Learner.setup` resumes from the run directory's
checkpoint, exports the graph and binds the sockets, and :meth:`Learner.run` (which sets up when needed) loops:
gather ``batch_envs`` env sequences, update, publish the new weights, log, checkpoint when due. At the end the
final ``policy.onnx`` is the published graph with the final weights patched in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import json
import logging
import math
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from envs import env_spaces
from learner import distributed
from learner.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    remove_orphaned_tmp,
    save_checkpoint,
)
from learner.config import RunConfig, check_config
from learner.distributed import RankInfo
from learner.fs_faults import WriteGuard
from learner.metrics import EpisodeWindow, Metrics
from learner.publisher import PolicyPublisher
from learner.resume_check import ResumeConfigError, check_resume, write_run_config
from learner.server import LearnerServer, RunSettings
from learner.trainer import Trainer, resolve_device
from policy.files import json_text, write_atomically
from policy.metadata import space_to_dict
from protocol import Segment, SegmentSpec
from protocol.spec import space_bounds
from protocol.stop_signal import StopSignal

log = logging.getLogger("learner")

# A stop (SIGTERM, Ctrl-C) that has not finished after this long prints every thread's stack to stderr: Docker
# kills the learner at its grace period (60 s in docker-compose.yml), and a stack in the log says where it hung.
STOP_STACKS_AFTER_S = 30.0

#: The key of the state rank 0 broadcasts instead of its weights when it cannot start (a user's mistake in the
#: run directory): the other ranks then end without a traceback of their own.
SETUP_FAILED = "setup_failed"


class RankSetupFailed(RuntimeError):
    """Raised on a following rank when rank 0 could not start; rank 0 has printed why."""


def _per_actor_spread(segments_per_actor: dict[str, int]) -> dict[str, float]:
    """How evenly the actors feed the learner, in a fixed number of tags: one tag per actor id would grow with
    every actor that ever joined (hundreds on a scaled-out run) and bury the curves that matter."""
    counts = list(segments_per_actor.values())
    if not counts:
        return {"actors/contributing": 0.0}
    return {
        "actors/contributing": float(len(counts)),
        "actors/segments_min": float(min(counts)),
        "actors/segments_max": float(max(counts)),
    }


@dataclass
class Summary:
    env_steps: int
    updates: int
    policy_version: int
    seconds: float
    success_rate: float
    mean_return: float
    episodes: int
    run_dir: Path
    policy_path: Path | None
    interrupted: bool
    env_id: str = ""
    env_kwargs: dict[str, Any] | None = None

    def text(self) -> str:
        sr = "n/a" if math.isnan(self.success_rate) else f"{self.success_rate:.3f}"
        ret = "n/a" if math.isnan(self.mean_return) else f"{self.mean_return:.3f}"
        lines = [
            "training " + ("interrupted (resumable)" if self.interrupted else "finished"),
            f"  env steps      {self.env_steps:,}",
            f"  updates        {self.updates:,} (policy version {self.policy_version})",
            f"  wall time      {self.seconds:.1f} s",
            f"  episodes       {self.episodes:,}",
            f"  success rate   {sr} (last 100 episodes)",
            f"  mean return    {ret} (last 100 episodes)",
            f"  run directory  {self.run_dir}",
        ]
        if self.policy_path is not None:
            lines.append(f"  policy         {self.policy_path} (+ .json metadata)")
            lines.append(
                f"  try it         .venv/bin/python -m actor.play {self.policy_path} --env {self.env_id} "
                f"--env-kwargs '{json.dumps(self.env_kwargs)}' --episodes 10"
            )
        lines.append(f"  curves         .venv/bin/tensorboard --logdir {self.run_dir / 'tb'}")
        if self.interrupted:
            lines.append("  resume         run the same command again")
        return "\n".join(lines)


class Learner:
    """A learner bound to a run directory. ``Learner(cfg)`` only builds the model; ``setup()`` touches the world."""

    def __init__(self, cfg: RunConfig, ranks: RankInfo | None = None) -> None:
        """``ranks``: this process's place among several learner ranks (``learner.distributed``; the process group
        joined first). Rank 0 does everything a single learner does; the others only train (``follow``)."""
        self.ranks = ranks or RankInfo()
        check_config(dataclasses.replace(cfg, learner_ranks=self.ranks.world_size))
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.device = resolve_device(cfg.device)
        if self.ranks.distributed and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.ranks.local_rank)  # one GPU per rank on a machine
            torch.cuda.set_device(self.device)
        self.rank_failure: str | None = None
        """Set when another learner rank failed during training; the run stopped with a resumable checkpoint."""
        self._stopping_since: float | None = None  # monotonic time of a stop signal, while the stop runs
        self.run_id = uuid.uuid4().hex[:12]
        self.env_kwargs = cfg.env.kwargs_dict()
        self.observation_space, self.action_space = env_spaces(cfg.env.id, **self.env_kwargs)
        torch.set_num_threads(max(1, cfg.torch_threads))
        self.trainer = Trainer(cfg, self.observation_space, self.action_space, self.device, ranks=self.ranks)
        self.episodes = EpisodeWindow(100)
        self.fs = WriteGuard()  # checkpoint, status, summary and policy writes: a full disk is logged, not fatal
        self.resumed = False
        self._last_status = 0.0
        self._last_ckpt = 0.0
        self.publisher: PolicyPublisher | None = None
        self.server: LearnerServer | None = None

    # ---- counters (the trainer's) ------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self.trainer.version

    @property
    def env_steps(self) -> int:
        return self.trainer.env_steps

    @property
    def updates(self) -> int:
        return self.trainer.updates

    # ---- setting up ---------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Resume from the run directory (when it holds a checkpoint), save the config, export the graph once and
        bind the sockets. Idempotent; ``run`` calls it when needed."""
        if self.server is not None:
            return
        if not self.ranks.is_main:
            raise RuntimeError("only learner rank 0 binds sockets and owns the run directory; other ranks follow()")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.resumed = self._resume()
        except (CheckpointError, ResumeConfigError) as err:
            if self.ranks.distributed:  # the other ranks wait for the state: tell them to end instead
                distributed.broadcast_state({SETUP_FAILED: str(err)})
            raise
        if self.ranks.distributed:  # every rank continues from rank 0's checkpoint (or its fresh weights)
            distributed.broadcast_state(self.trainer.state_dict())
        write_run_config(self.cfg, self.run_dir)
        # The graph is exported once; afterwards only weights travel (docs/architecture.md#weights-only-updates).
        self.publisher = PolicyPublisher.export(
            self.trainer.model,
            version=self.trainer.version,
            observation_space=self.observation_space,
            action_space=self.action_space,
            extra_metadata={"env_id": self.cfg.env.id, "env_kwargs": self.env_kwargs},
            weights_only_updates=self.cfg.weights_only_updates,
        )
        self.server = self._bind(self.publisher)

    def _segment_spec(self, metadata: dict[str, Any]) -> SegmentSpec:
        continuous = self.trainer.model.action_kind == "continuous"
        low, high = space_bounds(self.observation_space)
        obs_shape = self.observation_space.shape
        assert obs_shape is not None  # a Box: build_actor_critic accepts nothing else
        return SegmentSpec(
            obs_shape=tuple(obs_shape),
            obs_dtype=str(np.dtype(self.observation_space.dtype)),
            num_actions=None if continuous else int(getattr(self.action_space, "n")),  # noqa: B009 - a Discrete
            action_shape=(self.trainer.model.num_actions,) if continuous else (),
            action_dtype="float32" if continuous else "int64",
            segment_length=self.cfg.segment_length,
            state={s["name"]: (tuple(s["shape"]), s["dtype"]) for s in metadata["state"]},
            max_envs=self.cfg.max_envs_per_segment,
            obs_low=low,
            obs_high=high,
        )

    def _bind(self, publisher: PolicyPublisher) -> LearnerServer:
        cfg = self.cfg
        settings = RunSettings(
            env_id=cfg.env.id,
            env_kwargs=self.env_kwargs,
            segment_length=cfg.segment_length,
            envs_per_actor=cfg.envs_per_actor,
            seed=cfg.seed,
            heartbeat_interval_s=cfg.heartbeat_interval_s,
            learner_timeout_s=cfg.learner_timeout_s,
        )
        return LearnerServer(
            host=cfg.net.host,
            trajectory_port=cfg.net.trajectory_port,
            policy_port=cfg.net.policy_port,
            control_port=cfg.net.control_port,
            spec=self._segment_spec(publisher.exported.metadata),
            settings=settings,
            run_id=self.run_id,
            current_version=lambda: self.trainer.version,
            welcome_policy=publisher.welcome_policy,
            max_policy_lag=cfg.max_policy_lag,
            actor_timeout_s=cfg.actor_timeout_s,
            max_queue_segments=cfg.queue_bound(),
            batch_envs=cfg.batch_envs,
            curve_dir=cfg.net.curve_dir,
        )

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def _resume(self) -> bool:
        remove_orphaned_tmp(self.run_dir)
        ckpt = load_checkpoint(self.run_dir, map_location=self.device)
        if ckpt is None:
            return False
        check_resume(
            ckpt,
            self.cfg,
            space_to_dict(self.observation_space),
            space_to_dict(self.action_space),
            checkpoint_path(self.run_dir),
        )
        self.trainer.load_state_dict(ckpt)
        log.info("resumed %s at policy version %d, %d env steps", self.run_dir, self.version, self.env_steps)
        return True

    def checkpoint(self, elapsed: float) -> Path | None:
        """Save a checkpoint; None when the file system refused it (logged once; the previous one stays valid)."""
        payload = self.trainer.state_dict(elapsed_s=elapsed)
        return self.fs.attempt(
            "checkpoint", checkpoint_path(self.run_dir), lambda: save_checkpoint(self.run_dir, payload)
        )

    # ---- status -------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """A snapshot for people and tests: what the learner is doing right now."""
        return {
            "learner_run_id": self.run_id,
            "policy_version": self.version,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "success_rate": self.episodes.success_rate,  # NaN before the first episode: null in the file
            "mean_return": self.episodes.mean_return,
            "episodes": self.episodes.total,
            "resumed": self.resumed,
            "write_failures": self.fs.failures,
            "skipped_gradient_steps": self.trainer.ppo.skipped_steps,
            **(self.server.snapshot() if self.server is not None else {}),
            "time": time.time(),
        }

    def write_status(self) -> None:
        path = self.run_dir / "status.json"
        self.fs.attempt(
            "status", path, lambda: write_atomically(path, json_text(self.status(), indent=2, sort_keys=True))
        )

    def export_final(self) -> Path:
        """The final ``policy.onnx``: the published graph with the final weights patched in (not traced again)."""
        assert self.publisher is not None
        return self.publisher.save_final(self.run_dir / "policy.onnx")

    def _publish(self) -> None:
        assert self.publisher is not None and self.server is not None
        self.server.publish(self.publisher.set_weights(self.trainer.model, self.trainer.version))

    # ---- the loop -------------------------------------------------------------------------------------------------
    def _housekeeping(self, now: float, start: float) -> None:
        """status.json about every second, a checkpoint every checkpoint_interval_s (also while waiting for data)."""
        if now - self._last_status >= 1.0:
            self._last_status = now
            self.write_status()
        if now - self._last_ckpt >= self.cfg.checkpoint_interval_s:
            self._last_ckpt = now
            if self.checkpoint(self.trainer.elapsed_s + now - start) is None:  # retried in a few seconds
                self._last_ckpt = now - self.cfg.checkpoint_interval_s + min(5.0, self.cfg.checkpoint_interval_s)

    def _gather_batch(self, stop: StopSignal, start: float) -> list[Segment]:
        """Segments until at least ``batch_envs`` env rows, then whatever else already arrived (up to twice that):
        when the actors' envs do not divide the batch, whole-segment shares overshoot, and leftovers would age
        into drops."""
        server = self.server
        assert server is not None
        segments: list[Segment] = []
        rows = 0
        while rows < self.cfg.batch_envs and not stop.is_set():
            seg = server.next_segment(timeout=0.5)
            if seg is None:
                self._housekeeping(time.monotonic(), start)
                continue
            segments.append(seg)
            rows += seg.num_envs
        while rows < 2 * self.cfg.batch_envs:
            seg = server.next_segment(timeout=0.0)
            if seg is None:
                break
            segments.append(seg)
            rows += seg.num_envs
        return segments

    def run(self, stop: StopSignal | None = None) -> Summary:
        """Train until the step budget or a stop. ``stop``: the one the entry point (``python -m learner`` or
        ``learner.launch``) installed before its imports, so that a stop during startup is kept
        (protocol.stop_signal); a fresh one otherwise."""
        stop = stop or StopSignal()
        stop.install()
        try:
            return self._train(stop)
        finally:
            # Restored only at the very end: a second stop signal (torchrun stopping every rank, a second
            # `docker stop`) while the final checkpoint, policy and summary are written must not kill the process
            # half way.
            stop.restore()

    def _train(self, stop: StopSignal) -> Summary:
        cfg = self.cfg
        self.setup()
        assert self.server is not None
        server = self.server
        metrics = Metrics(self.run_dir, self.fs)
        server.start()
        self._publish()
        start = time.monotonic()
        last_log = self._last_ckpt = start
        last_log_steps = self.env_steps
        self._last_status = 0.0
        interrupted = False
        bar = tqdm(
            total=cfg.total_steps,
            initial=min(self.env_steps, cfg.total_steps),
            unit="step",
            dynamic_ncols=True,
            disable=None,
            smoothing=0.1,
        )
        # Log lines go through tqdm.write while the bar is on screen, so they never cut the bar in half.
        redirect = contextlib.nullcontext() if bar.disable else logging_redirect_tqdm()
        redirect.__enter__()
        if stop.is_set():
            log.info("%s arrived during startup: stopping before the first update", stop.received)
        try:
            while self.env_steps < cfg.total_steps and not stop.is_set():
                t_wait = time.monotonic()
                segments = self._gather_batch(stop, start)
                if not segments or stop.is_set():
                    break
                t0 = time.monotonic()
                steps_before = self.env_steps
                try:
                    if self.ranks.distributed:
                        distributed.broadcast_batch(segments)
                    stats = self.trainer.update(segments)
                except RuntimeError as err:
                    if not self.ranks.distributed:
                        raise
                    # another rank died (or its link did): stop here with the weights of the last whole update
                    self.rank_failure = str(err).splitlines()[0][:300]
                    log.error("a learner rank failed, stopping with a checkpoint: %s", self.rank_failure)
                    break
                t_publish = time.monotonic()
                self._publish()
                t_done = time.monotonic()
                update_s = t_done - t0
                stats["timing/wait_for_data_s"] = t0 - t_wait
                stats["timing/publish_s"] = t_done - t_publish
                stats["timing/update_s"] = update_s
                for s in segments:
                    self.episodes.add(s.episodes)
                bar.update(min(self.env_steps - steps_before, max(0, cfg.total_steps - bar.n)))
                bar.set_postfix(
                    success=f"{self.episodes.success_rate:.2f}",
                    ret=f"{self.episodes.mean_return:.2f}",
                    v=self.version,
                    actors=server.live_actors(),
                    refresh=False,
                )

                now = time.monotonic()
                stats.update(
                    {
                        "charts/episodic_return": self.episodes.mean_return,
                        "charts/episodic_length": self.episodes.mean_length,
                        "charts/success_rate": self.episodes.success_rate,
                        # how many episodes the windowed curves above rest on (fewer than 100 early in a run)
                        "charts/episodes": float(self.episodes.total),
                        "charts/policy_version": float(self.version),
                        "charts/update_seconds": update_s,
                        "actors/live": float(server.live_actors()),
                        "actors/lost": float(server.stats.lost_actors),
                        "actors/segments_received": float(server.stats.received_segments),
                        "actors/segments_accepted": float(server.stats.accepted_segments),
                    }
                )
                for reason, count in list(server.stats.dropped.items()):
                    stats[f"dropped/{reason}"] = float(count)
                stats.update(_per_actor_spread(server.stats.segments_per_actor))
                if now - last_log >= cfg.log_interval_s:
                    stats["charts/SPS"] = (self.env_steps - last_log_steps) / (now - last_log)
                    last_log, last_log_steps = now, self.env_steps
                    if bar.disable:  # no terminal: a plain progress line instead of the bar
                        log.info(
                            "step %d/%d (%.0f%%) | %.0f steps/s | success %.2f | return %.2f | version %d | "
                            "actors %d | lag mean %.1f",
                            self.env_steps,
                            cfg.total_steps,
                            100.0 * self.env_steps / cfg.total_steps,
                            stats["charts/SPS"],
                            self.episodes.success_rate,
                            self.episodes.mean_return,
                            self.version,
                            server.live_actors(),
                            stats["lag/mean"],
                        )
                metrics.scalars(stats, self.env_steps)
                self._housekeeping(now, start)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            redirect.__exit__(None, None, None)
        if interrupted or stop.is_set():
            log.info("stopping (%s): the final checkpoint, status and policy come next", stop.received or "SIGINT")
            faulthandler.dump_traceback_later(STOP_STACKS_AFTER_S, exit=False)
            self._stopping_since = time.monotonic()
        return self._finish(start, interrupted or stop.is_set(), metrics)

    def _finish(self, start: float, interrupted: bool, metrics: Metrics) -> Summary:
        """After the loop: tell the other ranks, then the final checkpoint, status, policy and summary."""
        cfg = self.cfg
        if self.ranks.distributed and self.rank_failure is None:
            with contextlib.suppress(RuntimeError):  # the others stop at the next batch: there is none
                distributed.broadcast_batch(None)
        interrupted = interrupted or self.rank_failure is not None
        elapsed = self.trainer.elapsed_s + time.monotonic() - start
        self.checkpoint(elapsed)
        self.write_status()
        policy_path = self.fs.attempt("policy", self.run_dir / "policy.onnx", self.export_final)
        metrics.close()
        summary = Summary(
            env_steps=self.env_steps,
            updates=self.updates,
            policy_version=self.version,
            seconds=elapsed,
            success_rate=self.episodes.success_rate,
            mean_return=self.episodes.mean_return,
            episodes=self.episodes.total,
            run_dir=self.run_dir,
            policy_path=policy_path,
            interrupted=interrupted,
            env_id=cfg.env.id,
            env_kwargs=cfg.env.kwargs_dict(),
        )
        summary_text = json_text(
            {k: (str(v) if isinstance(v, Path) else v) for k, v in summary.__dict__.items()}, indent=2
        )
        self.fs.attempt(
            "summary",
            self.run_dir / "summary.json",
            lambda: write_atomically(self.run_dir / "summary.json", summary_text),
        )
        return summary

    def follow(self) -> int:
        """A rank other than 0: start from rank 0's state, then train on every batch rank 0 broadcasts until it
        sends the end. Returns the number of updates trained. A failed collective (rank 0 gone) raises."""
        if self.ranks.is_main:
            raise RuntimeError("rank 0 runs the loop (run()); follow() is for the other ranks")
        if threading.current_thread() is threading.main_thread():
            # torchrun passes a stop to every rank; this one ends with rank 0's end-of-training broadcast instead,
            # so that the update in hand completes on every rank and rank 0's last checkpoint is a whole one.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
        log.info("rank %d (pid %d) follows rank 0", self.ranks.rank, os.getpid())
        state = distributed.broadcast_state(None)
        if SETUP_FAILED in state:
            raise RankSetupFailed(state[SETUP_FAILED])
        self.trainer.load_state_dict(state)
        updates = 0
        while (segments := distributed.broadcast_batch(None)) is not None:
            self.trainer.update(segments)
            updates += 1
        log.info("rank %d: training over after %d updates", self.ranks.rank, updates)
        return updates

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._stopping_since is not None:
            faulthandler.cancel_dump_traceback_later()
            log.info("stopped in %.1f s", time.monotonic() - self._stopping_since)
            self._stopping_since = None

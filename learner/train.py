"""The learner process: receive segments, run PPO, publish policies, checkpoint, log.

One ``Learner`` owns the model, the optimiser and the counters; the network side lives in ``learner.server``.
The loop is deliberately plain: gather ``batch_envs`` env sequences, update, bump the version, publish the new
weights, log, checkpoint when due. Resuming is the default: an existing run directory with a checkpoint continues
where it stopped (weights, optimiser, version counter, step counters, RNG states).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import random
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
from export import ExportedPolicy, export_step_function, save_policy, weights_for
from learner.checkpoint import checkpoint_path, load_checkpoint, remove_orphaned_tmp, save_checkpoint
from learner.config import RunConfig
from learner.fs_faults import WriteGuard
from learner.metrics import EpisodeWindow, Metrics
from learner.ppo import PPO, batch_from_segments
from learner.resume_check import check_resume, write_run_config
from learner.server import LearnerServer, RunSettings
from models.registry import build_actor_critic
from policy.metadata import space_to_dict
from policy.weights import replace_initializers
from protocol import ModelUpdate, Segment, SegmentSpec
from protocol.spec import space_bounds

log = logging.getLogger("learner")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def _write_atomically(path: Path, text: str) -> None:
    """Write then rename, so readers never see half a file; a failed write leaves no temporary behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


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
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(max(1, cfg.torch_threads))
        self.device = resolve_device(cfg.device)
        self.run_id = uuid.uuid4().hex[:12]
        env_kwargs = cfg.env.kwargs_dict()
        self.observation_space, self.action_space = env_spaces(cfg.env.id, **env_kwargs)

        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.model = build_actor_critic(cfg.model, self.observation_space, self.action_space).to(self.device)
        self.ppo = PPO(self.model, cfg.ppo, seed=cfg.seed)
        self.version = 0
        self.env_steps = 0
        self.updates = 0
        self.elapsed_before = 0.0
        self.episodes = EpisodeWindow(100)
        self.fs = WriteGuard()  # checkpoint, status, summary and policy writes: a full disk is logged, not fatal
        self.resumed = self._resume()
        write_run_config(cfg, self.run_dir)

        # The graph is exported once; afterwards only weights travel (docs/architecture.md#weights-only-updates).
        export_model = copy.deepcopy(self.model).cpu()
        self.exported: ExportedPolicy = export_step_function(
            export_model,
            policy_version=self.version,
            observation_space=self.observation_space,
            action_space=self.action_space,
            extra_metadata={"env_id": cfg.env.id, "env_kwargs": env_kwargs},
        )
        del export_model
        self._welcome_cache: tuple[int, ModelUpdate] | None = None
        self._weights_lock = threading.Lock()
        self._weights = weights_for(self.model, self.exported)
        self._weights_version = self.version

        meta = self.exported.metadata
        continuous = self.model.action_kind == "continuous"
        spec = SegmentSpec(
            obs_shape=tuple(self.observation_space.shape),
            obs_dtype=str(np.dtype(self.observation_space.dtype)),
            num_actions=None if continuous else int(self.action_space.n),
            action_shape=(self.model.num_actions,) if continuous else (),
            action_dtype="float32" if continuous else "int64",
            segment_length=cfg.segment_length,
            state={s["name"]: (tuple(s["shape"]), s["dtype"]) for s in meta["state"]},
            max_envs=1024,
            obs_low=space_bounds(self.observation_space)[0],
            obs_high=space_bounds(self.observation_space)[1],
        )
        self.settings = RunSettings(
            env_id=cfg.env.id,
            env_kwargs=env_kwargs,
            segment_length=cfg.segment_length,
            envs_per_actor=cfg.envs_per_actor,
            seed=cfg.seed,
            heartbeat_interval_s=cfg.heartbeat_interval_s,
            learner_timeout_s=cfg.learner_timeout_s,
        )
        self.server = LearnerServer(
            host=cfg.net.host,
            trajectory_port=cfg.net.trajectory_port,
            policy_port=cfg.net.policy_port,
            control_port=cfg.net.control_port,
            spec=spec,
            settings=self.settings,
            run_id=self.run_id,
            current_version=lambda: self.version,
            welcome_policy=self._welcome_policy,
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
        self.model.load_state_dict(ckpt["model_state"])
        self.ppo.load_state_dict(ckpt["ppo_state"])
        self.version = int(ckpt["policy_version"])
        self.env_steps = int(ckpt["env_steps"])
        self.updates = int(ckpt["updates"])
        self.elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        torch.set_rng_state(ckpt["torch_rng"])
        np.random.set_state(ckpt["numpy_rng"])
        random.setstate(ckpt["python_rng"])
        log.info("resumed %s at policy version %d, %d env steps", self.run_dir, self.version, self.env_steps)
        return True

    def checkpoint(self, elapsed: float) -> Path | None:
        """Save a checkpoint; None when the file system refused it (logged once; the previous one stays valid)."""
        payload = {
            "model_config": self.cfg.model.to_dict(),
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space),
            "model_state": self.model.state_dict(),
            "ppo_state": self.ppo.state_dict(),
            "policy_version": self.version,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "elapsed_s": elapsed,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
            "config": self.cfg.to_dict(),
        }
        return self.fs.attempt(
            "checkpoint", checkpoint_path(self.run_dir), lambda: save_checkpoint(self.run_dir, payload)
        )

    # ---- policies -----------------------------------------------------------------------------------------------
    def _current_weights(self) -> tuple[int, dict[str, np.ndarray]]:
        with self._weights_lock:
            return self._weights_version, self._weights

    def _welcome_policy(self) -> ModelUpdate:
        """The current policy as a whole ONNX file, for actors that (re)join (cached per version)."""
        version, weights = self._current_weights()
        cached = self._welcome_cache
        if cached is None or cached[0] != version:
            onnx_bytes = replace_initializers(self.exported.onnx_bytes, weights)
            cached = (
                version,
                ModelUpdate(
                    version=version,
                    kind="full",
                    onnx=onnx_bytes,
                    weights=None,
                    graph_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
                    metadata=self.exported.metadata,
                ),
            )
            self._welcome_cache = cached
        return cached[1]

    def _publish(self) -> None:
        weights = weights_for(self.model, self.exported)
        with self._weights_lock:
            self._weights, self._weights_version = weights, self.version
        if self.cfg.weights_only_updates:
            # Weights-only updates name their graph by its structure hash (weights excluded), which every actor
            # read from the metadata of the full policy it was welcomed with.
            update = ModelUpdate(
                version=self.version,
                kind="weights",
                onnx=None,
                weights=weights,
                graph_sha256=self.exported.graph_sha256,
                metadata={},
            )
        else:
            update = self._welcome_policy()
        self.server.publish(update)

    def status(self) -> dict[str, Any]:
        """A snapshot for people and tests: what the learner is doing right now."""
        return {
            "learner_run_id": self.run_id,
            "policy_version": self.version,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "success_rate": None if math.isnan(self.episodes.success_rate) else self.episodes.success_rate,
            "mean_return": None if math.isnan(self.episodes.mean_return) else self.episodes.mean_return,
            "episodes": self.episodes.total,
            "resumed": self.resumed,
            "write_failures": self.fs.failures,
            "skipped_gradient_steps": self.ppo.skipped_steps,
            **self.server.snapshot(),
            "time": time.time(),
        }

    def write_status(self) -> None:
        path = self.run_dir / "status.json"
        self.fs.attempt(
            "status", path, lambda: _write_atomically(path, json.dumps(self.status(), indent=2, sort_keys=True))
        )

    def export_final(self) -> Path:
        exported = export_step_function(
            copy.deepcopy(self.model).cpu(),
            policy_version=self.version,
            observation_space=self.observation_space,
            action_space=self.action_space,
            extra_metadata=self.exported.metadata.get("extra", {}),
        )
        return save_policy(exported, self.run_dir / "policy.onnx")

    # ---- the loop -------------------------------------------------------------------------------------------------
    def _housekeeping(self, now: float, start: float) -> None:
        """status.json about every second, a checkpoint every checkpoint_interval_s (also while waiting for data)."""
        if now - self._last_status >= 1.0:
            self._last_status = now
            self.write_status()
        if now - self._last_ckpt >= self.cfg.checkpoint_interval_s:
            self._last_ckpt = now
            if self.checkpoint(self.elapsed_before + now - start) is None:  # retried in a few seconds
                self._last_ckpt = now - self.cfg.checkpoint_interval_s + min(5.0, self.cfg.checkpoint_interval_s)

    def _gather_batch(self, stop: threading.Event, start: float) -> list[Segment]:
        """Segments until at least ``batch_envs`` env rows, then whatever else already arrived (up to twice that):
        when the actors' envs do not divide the batch, whole-segment shares overshoot, and leftovers would age
        into drops."""
        segments: list[Segment] = []
        rows = 0
        while rows < self.cfg.batch_envs and not stop.is_set():
            seg = self.server.next_segment(timeout=0.5)
            if seg is None:
                self._housekeeping(time.monotonic(), start)
                continue
            segments.append(seg)
            rows += seg.num_envs
        while rows < 2 * self.cfg.batch_envs:
            seg = self.server.next_segment(timeout=0.0)
            if seg is None:
                break
            segments.append(seg)
            rows += seg.num_envs
        return segments

    def run(self) -> Summary:
        cfg = self.cfg
        metrics = Metrics(self.run_dir, self.fs)
        self.server.start()
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
        stop = threading.Event()
        previous_term = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while self.env_steps < cfg.total_steps and not stop.is_set():
                segments = self._gather_batch(stop, start)
                if not segments or stop.is_set():
                    break
                t0 = time.monotonic()
                lags = [self.version - s.policy_version for s in segments]
                batch = batch_from_segments(segments, self.device)
                self.ppo.set_lr_fraction(1.0 - self.env_steps / cfg.total_steps)
                stats = self.ppo.update(batch)
                self.version += 1
                self.updates += 1
                self._publish()
                update_s = time.monotonic() - t0
                self.env_steps += batch.num_steps
                for s in segments:
                    self.episodes.add(s.episodes)
                bar.update(min(batch.num_steps, max(0, cfg.total_steps - bar.n)))
                bar.set_postfix(
                    success=f"{self.episodes.success_rate:.2f}",
                    ret=f"{self.episodes.mean_return:.2f}",
                    v=self.version,
                    actors=self.server.live_actors(),
                    refresh=False,
                )

                now = time.monotonic()
                stats.update(
                    {
                        "charts/episodic_return": self.episodes.mean_return,
                        "charts/episodic_length": self.episodes.mean_length,
                        "charts/success_rate": self.episodes.success_rate,
                        "charts/policy_version": float(self.version),
                        "charts/update_seconds": update_s,
                        "lag/min": float(min(lags)),
                        "lag/mean": float(np.mean(lags)),
                        "lag/max": float(max(lags)),
                        "actors/live": float(self.server.live_actors()),
                        "actors/lost": float(self.server.stats.lost_actors),
                        "actors/segments_received": float(self.server.stats.received_segments),
                    }
                )
                for reason, count in list(self.server.stats.dropped.items()):
                    stats[f"dropped/{reason}"] = float(count)
                for actor_id, count in list(self.server.stats.segments_per_actor.items()):
                    stats[f"actors/segments/{actor_id}"] = float(count)
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
                            self.server.live_actors(),
                            float(np.mean(lags)),
                        )
                metrics.scalars(stats, self.env_steps)
                self._housekeeping(now, start)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            redirect.__exit__(None, None, None)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous_term)
        interrupted = interrupted or stop.is_set()
        elapsed = self.elapsed_before + time.monotonic() - start
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
        summary_text = json.dumps(
            {k: (str(v) if isinstance(v, Path) else v) for k, v in summary.__dict__.items()}, indent=2
        )
        self.fs.attempt(
            "summary",
            self.run_dir / "summary.json",
            lambda: _write_atomically(self.run_dir / "summary.json", summary_text),
        )
        return summary

    def close(self) -> None:
        self.server.close()
